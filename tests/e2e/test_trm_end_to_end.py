"""TRM through the whole trainer on the CPU: TRM's own README command line, EMA, evaluate.py, the solve CLI, the
predictions exporter, and its bad inputs as one-line errors."""
import os
import re
import sys

import numpy as np
import pytest
import torch

from tasks.sudoku.codec import sudoku_to_string
from tests.helpers import (
    expect_user_error,
    load_run_outputs,
    run_in_repo,
    run_in_this_process,
    saved_output_files,
    write_tiny_dataset,
)
from tools import export_predictions, solve

# TRM's README line for Sudoku (arch=trm data_paths=... evaluators="[]" ... +run_name=... ema=True), with the
# sizes of a CPU test: hidden 32, one 2-cycle latent loop, a 2-position prefix.
TRM_README = ["arch=trm", "evaluators=[]", "epochs=4", "eval_interval=2", "lr=3e-3", "puzzle_emb_lr=1e-2",
              "weight_decay=0.1", "puzzle_emb_weight_decay=0.1", "arch.L_layers=1", "arch.H_cycles=2",
              "arch.L_cycles=2", "+run_name=trm-e2e", "ema=True"]
SMALL = ["global_batch_size=32", "lr_warmup_steps=5", "lr_min_ratio=0.1", "arch.hidden_size=32", "arch.num_heads=2",
         "arch.puzzle_emb_len=2", "arch.halt_max_steps=2", "arch.pos_encodings=learned", "device=cpu",
         "logger=none", "eval_save_outputs=[inputs,labels,preds,q_halt_logits]"]
FINAL_STEP = 40  # 320 puzzles / 32 per batch x 4 epochs


def pretrain(*overrides):
    return run_in_repo([sys.executable, "pretrain.py", *overrides])


def refused(*overrides):
    """pretrain.py on bad input, which stops it before training: in this process (no torch import)."""
    return run_in_this_process(["pretrain.py", *overrides])


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=320, test_size=16, seed=4)


@pytest.fixture(scope="module")
def run(sudoku4, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trm") / "run"
    result = pretrain(f"data_paths=[{sudoku4}]", f"checkpoint_path={run_dir}", *TRM_README, *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_readme_command_trains_with_ema_and_writes_the_run(run):
    model, state, metrics = load_run_outputs(run, FINAL_STEP)
    config = state["config"]
    assert config["run_name"] == "trm-e2e" and config["arch"]["name"].startswith("recursive_reasoning.trm@")
    assert {"trm.py", "act.py", "losses.py", "all_config.yaml"} <= set(os.listdir(run))
    evals = [r for r in metrics if "eval/all/exact_accuracy" in r]
    assert [r["step"] for r in evals] == [20, 40]
    # With EMA the model file holds the averaged weights, the .state file the raw ones training continues from.
    assert set(model) == set(state["raw_weights"])
    assert not torch.equal(model["model.inner.lm_head.weight"], state["raw_weights"]["model.inner.lm_head.weight"])
    assert "model.inner.L_level.layers.0.self_attn.qkv_proj.weight" in model and not any("H_level" in k for k in model)


@pytest.mark.slow
def test_evaluate_and_solve_reproduce_the_training_evaluation(run, sudoku4, tmp_path, capsys):
    saved = torch.load(run / f"step_{FINAL_STEP}_all_preds.0", weights_only=True)
    result = run_in_repo([sys.executable, "evaluate.py", f"checkpoint={run / f'step_{FINAL_STEP}'}", "device=cpu",
                          "save_outputs=[preds]"])
    assert result.returncode == 0, result.stderr[-3000:]
    (written,) = saved_output_files(result.stdout)  # beside the training's own outputs, never over them
    again = torch.load(written, weights_only=True)
    assert torch.equal(again["preds"], saved["preds"])  # the EMA weights, evaluated the same way

    inputs = saved["inputs"][3].numpy()
    puzzle = sudoku_to_string(np.where(inputs >= 2, inputs - 1, 0))
    assert solve.main([f"checkpoint={run / f'step_{FINAL_STEP}'}", f"puzzle={puzzle}"]) == 0
    answer = re.search(r"^answer string: (\S+)$", capsys.readouterr().out, re.M).group(1)
    preds = saved["preds"][3].numpy()
    assert answer == sudoku_to_string(np.where(preds >= 2, preds - 1, -1))

    out = tmp_path / "preds.npz"
    assert export_predictions.main([str(run / f"step_{FINAL_STEP}_all_preds.0"), "--output", str(out)]) == 0
    with np.load(out) as exported:
        assert np.array_equal(exported["preds"], saved["preds"].numpy())


@pytest.mark.slow
def test_mlp_t_checkpoint_of_another_sequence_length_is_refused(tmp_path):
    for name, seq_len in (("short", 16), ("long", 20)):  # same vocabulary, other sequence lengths
        write_tiny_dataset(str(tmp_path / name), vocab_size=6, seq_len=seq_len, groups=32, puzzles_per_group=1,
                           examples_per_puzzle=1)
    mlp = ["arch.mlp_t=true", "arch.pos_encodings=none", "epochs=1", "eval_interval=1"]
    first = pretrain(f"data_path={tmp_path / 'short'}", f"checkpoint_path={tmp_path / 'a'}", *TRM_README[:1], *SMALL,
                     *mlp)
    assert first.returncode == 0, first.stderr[-3000:]
    second = refused(f"data_path={tmp_path / 'long'}", f"checkpoint_path={tmp_path / 'b'}", *TRM_README[:1], *SMALL,
                     *mlp, f"load_checkpoint={tmp_path / 'a' / 'step_1'}")
    expect_user_error(second, "mlp_t.gate_up_proj.weight of shape (512, 18) but this run builds (512, 22): mlp_t "
                              "mixes the seq_len + puzzle_emb_len positions")
    assert not os.path.exists(tmp_path / "b")


@pytest.mark.parametrize("overrides, fragment", [
    (["arch.H_layers=2"], "arch: H_layers: is 2, but TRM has one network, whose depth is L_layers"),
    (["arch.puzzle_emb_ndim=0"], "puzzle_emb_len is 2 but puzzle_emb_ndim is 0"),
    (["+arch.hidden_sise=8"], "unknown config key 'hidden_sise'"),
    (["+trm_option=1"], "unknown config key 'trm_option'"),
])
def test_bad_input_is_one_line_and_writes_nothing(sudoku4, tmp_path, overrides, fragment):
    run_dir = tmp_path / "run"
    result = refused(f"data_paths=[{sudoku4}]", f"checkpoint_path={run_dir}", *TRM_README, *SMALL, *overrides)
    expect_user_error(result, fragment)
    assert not os.path.exists(run_dir)


def test_data_paths_that_disagree_are_named(sudoku4, tmp_path):
    other = tmp_path / "other"
    write_tiny_dataset(str(other), vocab_size=9, seq_len=16)
    result = refused(f"data_paths=[{sudoku4},{other}]", f"checkpoint_path={tmp_path / 'run'}", *TRM_README, *SMALL)
    expect_user_error(result, f"data_paths: {other} does not agree with {sudoku4}: vocab_size 9 (first: 6)")
    assert not os.path.exists(tmp_path / "run")
    both = refused(f"data_paths=[{sudoku4}]", f"data_path={sudoku4}", *TRM_README, *SMALL)
    expect_user_error(both, "are both set; give one dataset as data_path=... or several as data_paths=[...]")


def test_every_trm_readme_command_composes_and_validates():
    """TRM's published command lines (its README), unchanged apart from the data folder names, are valid here."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.helpers import REPO
    from training.config import validate_config

    common = ["arch=trm", "evaluators=[]", "epochs=50000", "eval_interval=5000", "lr=1e-4", "puzzle_emb_lr=1e-4",
              "weight_decay=1.0", "puzzle_emb_weight_decay=1.0", "arch.L_layers=2", "arch.H_cycles=3"]
    lines = {
        "pretrain_mlp_t_sudoku": ["data_paths=[data/sudoku-extreme-1k-aug-1000]", *common, "arch.mlp_t=True",
                                  "arch.pos_encodings=none", "arch.L_cycles=6", "+run_name=pretrain_mlp_t_sudoku",
                                  "ema=True"],
        "pretrain_att_sudoku": ["data_paths=[data/sudoku-extreme-1k-aug-1000]", *common, "arch.L_cycles=6",
                                "+run_name=pretrain_att_sudoku", "ema=True"],
        "pretrain_att_maze30x30_1gpu": ["data_paths=[data/maze-30x30-hard-1k]", *common, "global_batch_size=128",
                                        "arch.L_cycles=4", "+run_name=pretrain_att_maze30x30_1gpu", "ema=True"],
        "pretrain_att_arc1concept_4": ["arch=trm", "data_paths=[data/arc1concept-aug-1000]", "arch.L_layers=2",
                                       "arch.H_cycles=3", "arch.L_cycles=4", "+run_name=pretrain_att_arc1concept_4",
                                       "ema=True"],
    }
    with initialize_config_dir(config_dir=os.path.join(REPO, "config"), version_base=None):
        for name, overrides in lines.items():
            config = validate_config(OmegaConf.to_container(compose("cfg_pretrain", overrides=overrides),
                                                            resolve=True))
            assert config.run_name == name and config.ema is True
            assert config.arch.name == "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"
            assert config.arch.extra["puzzle_emb_ndim"] == 512 and config.arch.extra["puzzle_emb_len"] == 16
