"""pretrain.py end to end on the CPU: learning on a real puzzle task, run outputs, and one-line errors."""
import json
import os
import sys

import pytest
import torch

from tests.helpers import as_trm, as_urm, expect_user_error, read_metrics, run_in_repo, run_in_this_process

# A small HRM that learns 4x4 Sudoku in a few hundred CPU steps (hidden 64, one layer per level, one cycle of each
# level per segment: half the compute of the published 2 x 2 cycles, and after the 624 steps below 0.36 held-out
# exact accuracy against their 0.43).
SMALL_MODEL = ["global_batch_size=64", "lr=3e-3", "lr_warmup_steps=20", "lr_min_ratio=0.1", "arch.hidden_size=64",
               "arch.num_heads=4", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1", "arch.L_cycles=1",
               "arch.puzzle_emb_ndim=0", "arch.pos_encodings=learned", "arch.halt_max_steps=2", "device=cpu"]


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=2000, test_size=200, seed=0)


def run_pretrain(*overrides, home=None, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    if home is not None:
        env["HOME"] = str(home)  # no ~/.netrc: W&B must go offline by itself, without prompting
    return run_in_repo([sys.executable, "pretrain.py", *overrides], env=env, timeout=timeout)


def refused(*overrides):
    """A pretrain.py command line that bad input stops before training (in this process: no torch import)."""
    return run_in_this_process(["pretrain.py", *overrides])


@pytest.mark.slow
def test_learns_held_out_sudoku_and_writes_run_outputs(sudoku4, tmp_path):
    run_dir = tmp_path / "run"
    result = run_pretrain(f"data_path={sudoku4}", "epochs=20", "eval_interval=5", f"checkpoint_path={run_dir}",
                          "checkpoint_every_eval=true", "eval_save_outputs=[preds,labels]", *SMALL_MODEL,
                          home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    records = read_metrics(run_dir, timings=True)
    train = [r for r in records if "train/lm_loss" in r]
    evals = [r for r in records if "eval/all/exact_accuracy" in r]
    # 2000 groups / 64 = 156 full batches per 5-epoch iteration (the partial last batch is dropped).
    assert len(train) == 4 * 156 and len(evals) == 4
    first_loss = sum(r["train/lm_loss"] for r in train[:20]) / 20
    last_loss = sum(r["train/lm_loss"] for r in train[-20:]) / 20
    assert last_loss < 0.8 * first_loss
    # Held-out puzzles (no input shared with training): exact accuracy climbs from ~0 well above it.
    assert evals[0]["eval/all/exact_accuracy"] < 0.1
    assert evals[-1]["eval/all/exact_accuracy"] > 0.25
    assert evals[-1]["eval/all/accuracy"] > 0.85
    assert all(r["eval/wall_time_s"] > 0 for r in evals)  # each evaluation's time is logged

    files = set(os.listdir(run_dir))
    assert {"all_config.yaml", "hrm_act_v1.py", "losses.py", "metrics.jsonl", "step_624"} <= files
    assert {f"step_{s}" for s in (156, 312, 468, 624)} <= files
    state = torch.load(run_dir / "step_624", weights_only=True)
    assert "model.inner.embed_pos.embedding_weight" in state
    preds = torch.load(run_dir / "step_624_all_preds.0", weights_only=True)
    assert preds["preds"].shape == preds["labels"].shape == (200, 16)
    assert (preds["preds"] == preds["labels"]).all(-1).float().mean().item() == pytest.approx(
        evals[-1]["eval/all/exact_accuracy"])
    assert os.path.isdir(run_dir / "wandb")  # offline run, syncable later
    assert "wandb sync" in result.stdout


def test_missing_dataset_says_how_to_build(tmp_path):
    result = refused(f"data_path={tmp_path}/nothing-here", "logger=none", "device=cpu")
    expect_user_error(result, f"{tmp_path}/nothing-here", "build")


def test_unknown_key_is_named(sudoku4):
    result = refused(f"data_path={sudoku4}", "+learning_rate=3", "logger=none")
    expect_user_error(result, "learning_rate")


def test_unknown_arch_key_is_named(sudoku4):
    result = refused(f"data_path={sudoku4}", "+arch.hiden_size=3", "logger=none", "device=cpu")
    expect_user_error(result, "arch", "hiden_size")


def test_eval_interval_must_divide_epochs(sudoku4):
    result = refused(f"data_path={sudoku4}", "epochs=10", "eval_interval=3", "logger=none")
    expect_user_error(result, "eval_interval (3) must divide epochs (10)")


def test_unknown_model_class_lists_the_offer(sudoku4):
    result = refused(f"data_path={sudoku4}", "arch.name=hrm.hrm_act_v1@HRM", "logger=none", "device=cpu")
    expect_user_error(result, "has no class 'HRM'", "HierarchicalReasoningModel_ACTV1")


def test_checkpoint_from_another_dataset_is_refused(sudoku4, tmp_path):
    # A 6x6 checkpoint (vocab 8, seq 36) loaded for the 4x4 dataset (vocab 6, seq 16).
    from models.registry import model_class
    model_cfg = dict(batch_size=4, seq_len=36, num_puzzle_identifiers=1, vocab_size=8, H_cycles=2, L_cycles=2,
                     H_layers=1, L_layers=1, hidden_size=64, expansion=4, num_heads=4, pos_encodings="learned",
                     halt_max_steps=2, halt_exploration_prob=0.1, forward_dtype="float32")
    head = model_class("losses@ACTLossHead")(
        model_class("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1")(model_cfg),
        loss_type="stablemax_cross_entropy")
    ckpt = tmp_path / "step_1"
    torch.save(head.state_dict(), ckpt)
    result = refused(f"data_path={sudoku4}", f"load_checkpoint={ckpt}", "logger=none",
                     f"checkpoint_path={tmp_path / 'run'}", "epochs=1", "eval_interval=1", *SMALL_MODEL)
    expect_user_error(result, str(ckpt), "embed_tokens", "(8, 64)", "(6, 64)")


def test_non_finite_loss_stops_without_saving(sudoku4, tmp_path):
    run_dir = tmp_path / "run"
    result = run_pretrain(f"data_path={sudoku4}", "epochs=2", "eval_interval=1", "logger=none", f"checkpoint_path={run_dir}",
                          *SMALL_MODEL, "lr=1e30", "lr_warmup_steps=0", "arch.loss.loss_type=softmax_cross_entropy")
    expect_user_error(result, "non-finite")
    assert not any(name.startswith("step_") for name in os.listdir(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hrm", "trm", "urm"])
def test_arc_evaluator_runs_inside_training(tmp_path, model):
    """Evaluators configured on the command line run at every evaluation and report through metrics.jsonl."""
    import numpy as np

    from dataset import build_arc_dataset

    rng = np.random.default_rng(0)
    for split, name in (("training", "t1"), ("evaluation", "e1"), ("evaluation", "e2")):
        folder = tmp_path / "src" / split
        folder.mkdir(parents=True, exist_ok=True)
        pair = lambda: {"input": rng.integers(0, 10, (3, 4)).tolist(),  # noqa: E731
                        "output": rng.integers(0, 10, (2, 5)).tolist()}
        (folder / f"{name}.json").write_text(json.dumps({"train": [pair(), pair()], "test": [pair()]}))
    data = tmp_path / "arc-aug-2"
    build_arc_dataset.main(["--dataset-dirs", str(tmp_path / "src"), "--output-dir", str(data), "--num-aug", "2"])

    run_dir = tmp_path / "run"
    small = ["global_batch_size=4", "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1",
             "arch.halt_max_steps=2"]
    result = run_pretrain(f"data_path={data}", f"checkpoint_path={run_dir}", "epochs=2", "eval_interval=1",
                          *{"hrm": small, "trm": as_trm(small), "urm": as_urm(small)}[model], "logger=none",
                          "device=cpu",
                          "evaluators=[{name: arc@ARC, pass_ks: [1, 2]}]")
    assert result.returncode == 0, result.stderr[-3000:]
    evals = [r for r in read_metrics(run_dir) if "eval/ARC/pass@2" in r]
    assert len(evals) == 2
    assert evals[-1]["eval/ARC/num_tasks"] == 2 and evals[-1]["eval/ARC/unmatched_rows"] == 0
    step = evals[-1]["step"]
    with open(run_dir / f"step_{step}_ARC" / "submission.json") as f:
        submission = json.load(f)
    assert set(submission) == {"e1", "e2"} and set(submission["e1"][0]) == {"attempt_1", "attempt_2"}


def test_log_interval_logs_means_over_the_interval(mini_sudoku, tmp_path):
    """log_interval=N logs every N steps the mean of the same losses a per-step log shows, and the same weights."""
    data = mini_sudoku(2, 2, train_size=300, test_size=40, seed=0)
    runs = {}
    for interval in (1, 5):
        run_dir = tmp_path / f"every{interval}"
        result = run_pretrain(f"data_path={data}", "epochs=2", "eval_interval=2", "global_batch_size=32",
                              f"log_interval={interval}", f"checkpoint_path={run_dir}", "logger=none", *SMALL_MODEL[1:])
        assert result.returncode == 0, result.stderr[-3000:]
        runs[interval] = {r["step"]: r for r in read_metrics(run_dir) if "train/lm_loss" in r}
    assert sorted(runs[5]) == [5, 10, 15, 18]  # every 5 steps, and at the last step (18)
    for end, start in ((5, 1), (10, 6), (18, 16)):
        for key in ("train/lm_loss", "train/q_halt_loss"):
            mean = sum(runs[1][s][key] for s in range(start, end + 1)) / (end - start + 1)
            assert runs[5][end][key] == pytest.approx(mean, rel=1e-9)
    final_1 = torch.load(tmp_path / "every1" / "step_18", weights_only=True)
    final_5 = torch.load(tmp_path / "every5" / "step_18", weights_only=True)
    assert all(torch.equal(final_1[k], final_5[k]) for k in final_1)


def test_arch_keys_the_trainer_also_sets(sudoku4, tmp_path):
    """`+arch.forward_dtype=...` and `+arch.seed=...` (the README's and the NaN message's advice) win over the
    trainer's defaults (they crashed with "multiple values for keyword argument"); a size the trainer derives
    from the data is refused by name."""
    run_dir = tmp_path / "run"
    result = run_pretrain(f"data_path={sudoku4}", "epochs=1", "eval_interval=1", "logger=none",
                          f"checkpoint_path={run_dir}", *SMALL_MODEL, "+arch.forward_dtype=float32", "+arch.seed=11")
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(run_dir / "step_31.state", weights_only=True)
    assert state["config"]["arch"]["forward_dtype"] == "float32" and state["config"]["arch"]["seed"] == 11
    derived = refused(f"data_path={sudoku4}", "logger=none", f"checkpoint_path={tmp_path / 'x'}", *SMALL_MODEL,
                      "+arch.seq_len=20")
    expect_user_error(derived, "arch.seq_len is set by the trainer")
