"""URM through the whole trainer on the CPU: URM's own script line (its `+` keys, Muon, gradient accumulation, EMA)
at a CPU size, then evaluate.py with test-time compute, the solve CLI, the predictions exporter and the visualizer's
server, adaptation to new puzzles, a URM checkpoint in URM's trainer format, and its bad inputs as one-line
errors."""
import json
import os
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch

from tasks.sudoku.codec import sudoku_to_string
from tests.helpers import (REPO, expect_user_error, load_run_outputs, run_in_repo, run_in_this_process,
                           saved_output_files)

# scripts/URM_arcagi2.sh of URM's repository (arch=urm arch.loops=16 arch.H_cycles=2 arch.L_cycles=6
# arch.num_layers=4 ... use_muon=True +run_name=... +checkpoint_path=... +ema=True), with a CPU test's sizes and
# two micro-batches per step.
URM_SCRIPT = ["arch=urm", "arch.loops=3", "arch.H_cycles=2", "arch.L_cycles=2", "arch.num_layers=2", "epochs=2",
              "eval_interval=1", "puzzle_emb_lr=1e-2", "weight_decay=0.1", "use_muon=True", "+run_name=URM-e2e",
              "+ema=True", "grad_accum_steps=2"]
SMALL = ["global_batch_size=32", "lr=3e-3", "lr_warmup_steps=5", "lr_min_ratio=0.1", "arch.hidden_size=32",
         "arch.num_heads=2", "device=cpu", "logger=none", "eval_save_outputs=[inputs,labels,preds,q_halt_logits]"]
FINAL_STEP = 20  # 320 puzzles / 32 per batch x 2 epochs


def command(*args):
    return run_in_repo([sys.executable, *map(str, args)])


def refused(*args):
    """A command that bad input stops before it trains or evaluates: in this process (no torch import)."""
    return run_in_this_process(list(map(str, args)))


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=320, test_size=16, seed=4)


@pytest.fixture(scope="module")
def run(sudoku4, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("urm") / "run"
    result = command("pretrain.py", f"data_path={sudoku4}", f"+checkpoint_path={run_dir}", *URM_SCRIPT, *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_urm_script_trains_with_muon_accumulation_and_ema(run):
    model, state, metrics = load_run_outputs(run, FINAL_STEP)
    config = state["config"]
    assert config["run_name"] == "URM-e2e" and config["arch"]["name"] == "urm.urm@URM"
    assert config["use_muon"] and config["ema"] and config["grad_accum_steps"] == 2
    assert {"urm.py", "act.py", "losses.py", "all_config.yaml"} <= set(os.listdir(run))
    assert [r["step"] for r in metrics if "eval/all/exact_accuracy" in r] == [10, 20]
    assert set(model) == set(state["raw_weights"])  # EMA: the model file holds the averages
    assert "model.inner.layers.1.mlp.dwconv.weight" in model and "model.inner.init_hidden" in model
    # Sparse SignSGD, then Muon (2-D weights), then AdamW (the rest); two carries, one per micro-batch.
    muon, adamw = state["optimizers"][1]["state"], state["optimizers"][2]["state"]
    assert all("momentum_buffer" in s for s in muon.values()) and all("exp_avg" in s for s in adamw.values())
    assert len(state["ranks"][0]["carry"]) == 2


@pytest.mark.slow
def test_evaluate_test_time_solve_export_and_visualizer(run, sudoku4, tmp_path):
    checkpoint = run / f"step_{FINAL_STEP}"
    saved = torch.load(f"{checkpoint}_all_preds.0", weights_only=True)
    plain = command("evaluate.py", f"checkpoint={checkpoint}", "device=cpu", "save_outputs=[preds]")
    assert plain.returncode == 0, plain.stderr[-3000:]
    (written,) = saved_output_files(plain.stdout)
    assert torch.equal(torch.load(written, weights_only=True)["preds"], saved["preds"])  # the training's evaluation

    voted = command("evaluate.py", f"checkpoint={checkpoint}", "device=cpu", "test_time.augmentations=2",
                    "test_time.trajectories=2", "test_time.noise_std=0.3", "global_batch_size=8")
    assert voted.returncode == 0, voted.stderr[-3000:]
    metrics = json.loads(voted.stdout[voted.stdout.index("{"):voted.stdout.rindex("}") + 1])
    assert 0.0 <= metrics["eval/all/exact_accuracy"] <= metrics["eval/all/oracle@4"] <= 1.0

    inputs = saved["inputs"][3].numpy()
    solved = command("-m", "tools.solve", f"checkpoint={checkpoint}",
                     f"puzzle={sudoku_to_string(np.where(inputs >= 2, inputs - 1, 0))}", "device=cpu")
    assert solved.returncode == 0, solved.stderr[-3000:]
    answer = re.search(r"^answer string: (\S+)$", solved.stdout, re.M).group(1)
    preds = saved["preds"][3].numpy()
    assert answer == sudoku_to_string(np.where(preds >= 2, preds - 1, -1))  # what evaluation answered

    npz = tmp_path / "preds.npz"
    assert command("-m", "tools.export_predictions", f"{checkpoint}_all_preds.0", f"output={npz}").returncode == 0
    server = subprocess.Popen([sys.executable, "-m", "tools.serve_visualizer", str(sudoku4), f"preds={npz}",
                               "port=0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = server.stdout.readline().split()[1]
        with urllib.request.urlopen(address.replace("/visualizer.html?", "/preds/preds.npz?").split("?")[0]) as f:
            assert f.read() == npz.read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_adaptation_learns_rows_for_new_puzzles(run, sudoku4, tmp_path):
    result = command("-m", "tools.adapt", f"checkpoint={run / f'step_{FINAL_STEP}'}", f"dataset={sudoku4}",
                     "steps=3", f"output={tmp_path / 'adapted'}", "device=cpu", "global_batch_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    adapted = torch.load(tmp_path / "adapted" / "step_3", weights_only=True)
    table = adapted["model.inner.puzzle_emb.weights"]
    assert table.shape[0] > 1  # the trained rows, then one per new puzzle
    # Training the weights too keeps the run's optimizer family: Muon for the 2-D weights, AdamW for the rest.
    result = command("-m", "tools.adapt", f"checkpoint={run / f'step_{FINAL_STEP}'}", f"dataset={sudoku4}",
                     "steps=3", f"output={tmp_path / 'dense'}", "device=cpu", "global_batch_size=16",
                     "train=[embeddings,dense]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dense optimizer: Muon + AdamW" in result.stdout
    dense = torch.load(tmp_path / "dense" / "step_3", weights_only=True)
    assert not torch.equal(dense["model.inner.lm_head.weight"], adapted["model.inner.lm_head.weight"])


@pytest.mark.slow
def test_a_checkpoint_of_urms_trainer_loads(run, sudoku4, tmp_path):
    """URM's trainer saves {"model_state_dict" (torch.compile's prefix, bfloat16 convolution weights),
    "optimizer_states", ...} in one file: load_checkpoint takes its weights, and its optimizer states too."""
    _, state, _ = load_run_outputs(run, FINAL_STEP)
    weights = {f"_orig_mod.{k}": (v.bfloat16() if ".dwconv." in k else v) for k, v in state["raw_weights"].items()}
    urm_file = tmp_path / f"step_{FINAL_STEP}.pt"
    torch.save({"step": FINAL_STEP, "model_state_dict": weights, "optimizer_states": state["optimizers"]}, urm_file)
    result = command("pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / 'tuned'}",
                     f"load_checkpoint={urm_file}", *URM_SCRIPT[:-2], *SMALL, "epochs=1", "eval_interval=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"optimizer states loaded from {urm_file}" in result.stdout
    adamw = refused("pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / 'adamw'}",
                    f"load_checkpoint={urm_file}", *[a for a in URM_SCRIPT[:-2] if a != "use_muon=True"], *SMALL,
                    "epochs=1", "eval_interval=1")
    expect_user_error(adamw, "holds 3 optimizer states and this run has 2 optimizers", "load_optimizer_state=false")
    loose = command("pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / 'loose'}", "arch=trm",
                    "arch.L_layers=1", "arch.H_cycles=2", "arch.L_cycles=2", "arch.halt_max_steps=2",
                    "arch.puzzle_emb_len=1", f"load_checkpoint={urm_file}", "load_strict=false",
                    "load_optimizer_state=false", *SMALL, "epochs=1", "eval_interval=1")
    assert loose.returncode == 0 and "load_strict=false" in loose.stdout, loose.stderr[-3000:]


@pytest.mark.parametrize("args, fragment", [
    (["arch=urm", "+arch.H_layers=2"], "arch.H_layers"),
    (["arch=urm", "arch.loops=0"], "loops: Input should be greater than 0"),
    (["arch=urm", "arch.H_cycles=0"], "H_cycles: Input should be greater than 0"),
    (["arch=urm", "use_muon=true", "freeze_weights=true"], "use_muon=true optimizes the dense weights"),
    (["arch=urm", "grad_accum_steps=3"], "grad_accum_steps (3) must divide each process's batch (32"),
])
def test_bad_urm_settings_are_one_line_errors(sudoku4, tmp_path, args, fragment):
    run_dir = tmp_path / "run"
    expect_user_error(refused("pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={run_dir}", *args, *SMALL),
                      fragment)
    assert not run_dir.exists()


@pytest.mark.slow
def test_a_urm_checkpoint_in_a_trm_config_is_one_line(run, sudoku4, tmp_path):
    result = command("evaluate.py", f"checkpoint={run / f'step_{FINAL_STEP}'}", "device=cpu")
    assert result.returncode == 0
    config = run / "all_config.yaml"
    trm = tmp_path / "trm"
    trm.mkdir()
    trm_name = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"
    text = config.read_text().replace("name: urm.urm@URM", f"name: {trm_name}")
    text = text.replace("  loops: 3\n", "  halt_max_steps: 3\n  H_layers: 0\n  L_layers: 1\n")
    text = text.replace("  num_layers: 2\n", "")
    (trm / "all_config.yaml").write_text(text)
    os.link(run / f"step_{FINAL_STEP}", trm / f"step_{FINAL_STEP}")
    expect_user_error(refused("evaluate.py", f"checkpoint={trm / f'step_{FINAL_STEP}'}", "device=cpu"),
                      "does not match the model", "is arch.name the one it was trained with?")
