"""Checkpoints that resume exactly (kill -9 test), survive corruption, and load published-format weights."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO, as_trm, as_urm, load_run_outputs, run_in_repo, run_in_this_process

# Tiny model, puzzle embedding on (so the sparse optimizer's table is part of the state), 2 blocks of 1 epoch,
# a full checkpoint every 10 steps: 2 x 15 = 30 steps.
RUN = ["epochs=2", "eval_interval=1", "global_batch_size=32", "lr=3e-3", "lr_warmup_steps=5", "lr_min_ratio=0.1",
       "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.puzzle_emb_ndim=32",
       "arch.pos_encodings=learned", "arch.halt_max_steps=3", "arch.halt_exploration_prob=0.5", "device=cpu",
       "logger=none", "checkpoint_interval=10", "seed=3"]
FINAL_STEP = 30
EVALUATIONS = list(range(15, FINAL_STEP + 1, 15))  # one per epoch
# EMA resumes from the model file's averages; URM with Muon (its state: momentum buffers) and two micro-batches
# (a carry each) resumes as exactly.
MODELS = {"hrm": RUN, "trm-ema": as_trm(RUN) + ["ema=true"],
          "urm-muon-accum": as_urm(RUN) + ["use_muon=true", "grad_accum_steps=2", "ema=true"]}


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=500, test_size=64, seed=1)


def pretrain_cmd(data, run_dir, *extra, model="hrm"):
    return [sys.executable, "pretrain.py", f"data_path={data}", f"checkpoint_path={run_dir}", *MODELS[model], *extra]


def final_state(run_dir):
    return load_run_outputs(run_dir, FINAL_STEP)


def assert_same_run(a, b):
    model_a, state_a, metrics_a = a
    model_b, state_b, metrics_b = b
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key  # bitwise, on the CPU
    for opt_a, opt_b in zip(state_a["optimizers"], state_b["optimizers"]):
        for pid, s in opt_a["state"].items():
            for name, value in s.items():
                other = opt_b["state"][pid][name]
                assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
    rank_a, rank_b = state_a["ranks"][0], state_b["ranks"][0]
    assert len(rank_a["carry"]) == len(rank_b["carry"])  # one carry per micro-batch
    for carry_a, carry_b in zip(rank_a["carry"], rank_b["carry"]):
        assert carry_a["inner_carry"].keys() == carry_b["inner_carry"].keys()
        for name, value in carry_a["inner_carry"].items():
            assert torch.equal(value, carry_b["inner_carry"][name]), name
        assert torch.equal(carry_a["steps"], carry_b["steps"])
    # Early in training the Q head rarely halts, so exploration may not change the weights yet: compare the
    # generators themselves, which any missed restore leaves in another state.
    assert torch.equal(rank_a["rng"]["model"]["exploration"], rank_b["rng"]["model"]["exploration"])
    assert torch.equal(rank_a["rng"]["torch"], rank_b["rng"]["torch"])
    assert state_a["loader"] == state_b["loader"]
    assert metrics_a == metrics_b


@pytest.fixture(scope="module")
def uninterrupted(sudoku4, tmp_path_factory):
    """uninterrupted(model) -> the final state of a run that was never stopped (run once per model)."""
    runs = {}

    def get(model="hrm"):
        if model not in runs:
            run_dir = tmp_path_factory.mktemp("runs") / f"straight-{model}"
            result = run_in_repo(pretrain_cmd(sudoku4, run_dir, model=model))
            assert result.returncode == 0, result.stderr[-3000:]
            runs[model] = final_state(run_dir)
        return runs[model]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_kill_and_resume_is_bitwise_identical(sudoku4, uninterrupted, tmp_path, model):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(pretrain_cmd(sudoku4, run_dir, model=model), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(run_dir / "step_10") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # in the middle of training, right after the first checkpoint
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not os.path.exists(run_dir / f"step_{FINAL_STEP}")

    result = run_in_repo(pretrain_cmd(sudoku4, run_dir, "resume=latest", model=model))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout
    assert_same_run(uninterrupted(model), final_state(run_dir))


@pytest.mark.slow
def test_corrupt_checkpoint_is_named_and_latest_falls_back(sudoku4, uninterrupted, tmp_path):
    run_dir = tmp_path / "corrupt"
    result = run_in_repo(pretrain_cmd(sudoku4, run_dir))  # checkpoints at steps 10, 20, 30
    assert result.returncode == 0, result.stderr[-3000:]
    newest = run_dir / f"step_{FINAL_STEP}.state"
    with open(newest, "r+b") as f:  # as if the disk filled up while writing (our writes are atomic)
        f.truncate(os.path.getsize(newest) // 2)

    explicit = run_in_this_process(pretrain_cmd(sudoku4, run_dir, f"resume={run_dir / f'step_{FINAL_STEP}'}")[1:])
    assert explicit.returncode == 2
    assert explicit.stderr.strip().splitlines()[-1].startswith(f"error: checkpoint file {newest} is unreadable")

    # resume=latest skips the torn pair, resumes from step_20 and ends exactly where the uninterrupted run did.
    latest = run_in_repo(pretrain_cmd(sudoku4, run_dir, "resume=latest"))
    assert latest.returncode == 0, latest.stderr[-3000:]
    assert "skipping checkpoint" in latest.stderr and str(newest) in latest.stderr
    assert "step_20 at step 20" in latest.stdout
    assert_same_run(uninterrupted(), final_state(run_dir))


def test_resume_refuses_other_architecture(sudoku4, tmp_path):
    run_dir = tmp_path / "arch"
    result = run_in_repo(pretrain_cmd(sudoku4, run_dir, "epochs=1", "checkpoint_interval=5"))
    assert result.returncode == 0, result.stderr[-3000:]
    other = run_in_this_process(pretrain_cmd(sudoku4, run_dir, "resume=latest", "arch.hidden_size=64")[1:])
    assert other.returncode == 2
    message = other.stderr.strip().splitlines()[-1]
    # The differing field alone, with both values (not the whole arch).
    assert message.startswith("error: cannot resume from") and message.endswith(
        "arch.hidden_size is 64, the checkpoint's 32")


def test_published_format_checkpoint_evaluates(sudoku4, tmp_path):
    """A model-only state dict with `_orig_mod.` keys and an all_config.yaml beside it, as published."""
    run_dir = tmp_path / "train"
    result = run_in_repo(pretrain_cmd(sudoku4, run_dir, "epochs=1", "checkpoint_interval=null"))
    assert result.returncode == 0, result.stderr[-3000:]
    published = tmp_path / "published"
    published.mkdir()
    state = torch.load(run_dir / "step_15", weights_only=True)
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, published / "step_15")
    with open(run_dir / "all_config.yaml") as src, open(published / "all_config.yaml", "w") as dst:
        dst.write(src.read() + "min_eval_interval: 0\n")  # a field of a later upstream version

    result = run_in_repo([sys.executable, "evaluate.py", f"checkpoint={published / 'step_15'}", "device=cpu",
                  "save_outputs=[preds,labels]"])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
    assert set(metrics) >= {"eval/all/accuracy", "eval/all/exact_accuracy", "eval/all/lm_loss"}
    saved = torch.load(str(published / "step_15") + "_all_preds.0", weights_only=True)
    assert saved["preds"].shape == (64, 16)
    exact = (saved["preds"] == saved["labels"]).all(-1).float().mean().item()
    assert exact == pytest.approx(metrics["eval/all/exact_accuracy"])


def test_load_checkpoint_reinitialises_puzzle_table_for_new_puzzles(tmp_path):
    from training.checkpoint_files import load_weights
    from models.registry import model_class

    def head(num_puzzles):
        cfg = dict(batch_size=2, seq_len=4, num_puzzle_identifiers=num_puzzles, vocab_size=5, puzzle_emb_ndim=8,
                   H_cycles=1, L_cycles=1, H_layers=1, L_layers=1, hidden_size=8, expansion=2, num_heads=2,
                   pos_encodings="rope", halt_max_steps=2, halt_exploration_prob=0.1, forward_dtype="float32")
        return model_class("losses@ACTLossHead")(
            model_class("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1")(cfg), loss_type="softmax_cross_entropy")

    source = head(3)
    table = torch.arange(24, dtype=torch.float32).view(3, 8)
    state = {k: (table if k.endswith("puzzle_emb.weights") else v) for k, v in source.state_dict().items()}
    target = head(5)
    load_weights(target, state, "step_1", resize_puzzle_emb=True)
    assert torch.equal(target.model.inner.puzzle_emb.weights, table.mean(0).expand(5, 8))
    assert torch.equal(target.model.inner.lm_head.weight, source.model.inner.lm_head.weight)


@pytest.mark.slow
@pytest.mark.parametrize("budget, stop", [("max_steps=25", 25), ("max_time=00:00:00.001", 1)])
def test_a_budget_stops_with_an_evaluation_and_a_checkpoint_and_resume_ends_as_uninterrupted(
        sudoku4, uninterrupted, tmp_path, budget, stop):
    """max_steps / max_time stop after the step that reaches them (max_time of 1 ms: after the first), evaluate,
    write a full checkpoint and exit 0; resume=latest then ends exactly where the uninterrupted run ends (the
    schedule was always that of `epochs`), with one more evaluation in metrics.jsonl: the one at the stop."""
    run_dir = tmp_path / "budget"
    stopped = run_in_repo(pretrain_cmd(sudoku4, run_dir, budget))
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert f"after step {stop} of {FINAL_STEP}: checkpoint {run_dir / f'step_{stop}'} written" in stopped.stdout
    assert (run_dir / f"step_{stop}.state").is_file() and not (run_dir / f"step_{FINAL_STEP}").exists()
    evaluations = [json.loads(line) for line in open(run_dir / "metrics.jsonl") if "eval/all/exact_accuracy" in line]
    assert [row["step"] for row in evaluations] == [s for s in EVALUATIONS if s < stop] + [stop]

    if budget.startswith("max_steps"):  # resumed at its budget: nothing to do, nothing written
        again = run_in_repo(pretrain_cmd(sudoku4, run_dir, budget, "resume=latest"))
        assert again.returncode == 0 and "nothing to train" in again.stdout
    resumed = run_in_repo(pretrain_cmd(sudoku4, run_dir, "resume=latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    model, state, metrics = final_state(run_dir)
    at_stop = [row for row in metrics if row["step"] == stop and "eval/all/exact_accuracy" in row]
    assert len(at_stop) == 1 or stop in EVALUATIONS
    assert_same_run(uninterrupted("hrm"), (model, state, [row for row in metrics if row not in at_stop]))
