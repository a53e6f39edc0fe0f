"""torchrun on the CPU (gloo): two processes train exactly like one, and failures do not hang."""
import os
import sys
import time

import pytest
import torch

from tests.helpers import as_trm, as_urm, load_run_outputs, run_in_repo

# Exploration off: its random draws come from per-rank generators (seed + rank), so with it on, one and two
# processes would make different (equally valid) halting choices. Everything else is deterministic.
RUN = ["epochs=2", "eval_interval=1", "global_batch_size=32", "lr=3e-3", "lr_warmup_steps=3", "lr_min_ratio=0.1",
       "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.puzzle_emb_ndim=32",
       "arch.pos_encodings=learned", "arch.halt_max_steps=3", "arch.halt_exploration_prob=0.0", "device=cpu",
       "logger=none", "seed=5", "eval_save_outputs=[preds]"]
STEPS = 2 * (256 // 32)
# float32 sums in a different order (each rank sums half the batch, then the halves are added) differ in the
# last bits; a few steps of AdamATan2 keep that at the 1e-6 level.
ATOL, RTOL = 2e-5, 1e-4


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=256, test_size=40, seed=2)


def torchrun(nproc, script, *args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", script, *args]
    return run_in_repo(cmd, env=env, timeout=timeout)


# URM with two micro-batches per process (each with its carry): the same equality.
RUNS = {"hrm": RUN, "trm-mlp_t": as_trm(RUN, mlp_t=True), "urm-accum": as_urm(RUN) + ["grad_accum_steps=2"]}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(RUNS))
def test_two_processes_equal_one(sudoku4, tmp_path, model):
    run = RUNS[model]
    one = torchrun(1, "pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / 'one'}", *run)
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(2, "pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / 'two'}", *run)
    assert two.returncode == 0, two.stderr[-3000:]

    model_1, state_1, metrics_1 = load_run_outputs(tmp_path / "one", STEPS)
    model_2, state_2, metrics_2 = load_run_outputs(tmp_path / "two", STEPS)
    assert state_2["world_size"] == 2 and len(state_2["ranks"]) == 2
    # Weights, including the sparse puzzle-embedding table (wrong if its update were rank-local).
    for key in model_1:
        assert torch.allclose(model_1[key], model_2[key], atol=ATOL, rtol=RTOL), key
    assert not torch.equal(model_1["model.inner.puzzle_emb.weights"],
                           torch.zeros_like(model_1["model.inner.puzzle_emb.weights"]))
    # AdamATan2 is invariant to the gradient's scale, so weights alone would not notice a wrong reduction
    # (mean instead of sum); its first moment does.
    adam_1, adam_2 = state_1["optimizers"][-1]["state"], state_2["optimizers"][-1]["state"]
    for pid in adam_1:
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(adam_1[pid][moment], adam_2[pid][moment], atol=1e-7, rtol=RTOL), (pid, moment)
    # Logged metrics: same steps, same values (reduced over ranks on rank 0).
    assert [r["step"] for r in metrics_1] == [r["step"] for r in metrics_2]
    for r1, r2 in zip(metrics_1, metrics_2):
        assert r1.keys() == r2.keys()
        for key in r1:
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), (r1["step"], key)
    # Saved outputs are written per rank, each with its own rows: together they are the single run's.
    preds_1 = torch.load(tmp_path / "one" / f"step_{STEPS}_all_preds.0", weights_only=True)["preds"]
    halves = [torch.load(tmp_path / "two" / f"step_{STEPS}_all_preds.{r}", weights_only=True)["preds"]
              for r in (0, 1)]
    assert sum(h.shape[0] for h in halves) == preds_1.shape[0] == 40


@pytest.mark.slow
def test_one_failing_rank_stops_the_others(sudoku4, tmp_path):
    start = time.time()
    result = torchrun(2, "tests/fixtures/failing_rank_pretrain.py", f"data_path={sudoku4}",
                      f"checkpoint_path={tmp_path / 'fail'}", *RUN, timeout=300)
    assert result.returncode != 0
    assert "simulated crash on rank 1" in result.stderr
    assert time.time() - start < 120


def test_batch_not_divisible_by_processes(sudoku4, tmp_path):
    result = torchrun(2, "pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / 'x'}", *RUN,
                      "global_batch_size=33", timeout=300)
    assert result.returncode != 0
    assert "error: config: global_batch_size (33) must be divisible by the number of processes (2)" in result.stderr


@pytest.mark.slow
def test_two_processes_equal_one_with_muon(sudoku4, tmp_path):
    """Muon rounds each update to bfloat16 before orthogonalising it (as URM does), so the float32
    reduction-order differences of one and two processes can flip a rounding, and a flipped rounding moves a whole
    orthogonalised update: after 16 steps the weights agree to 1% of their size (measured: 0.3% at most), not to
    float32's precision. Muon's update does not depend on the gradients' scale, so a mean in place of a sum over
    ranks would not show in the weights; the momentum buffers (sums of gradients) show it, and agree to 1e-3 of
    their size (measured: 3e-4)."""
    run = as_urm(RUN) + ["use_muon=true"]
    for nproc, name in ((1, "one"), (2, "two")):
        result = torchrun(nproc, "pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={tmp_path / name}", *run)
        assert result.returncode == 0, result.stderr[-3000:]
    model_1, state_1, _ = load_run_outputs(tmp_path / "one", STEPS)
    model_2, state_2, _ = load_run_outputs(tmp_path / "two", STEPS)
    for key in model_1:
        scale = model_1[key].abs().max().item()
        assert torch.allclose(model_1[key], model_2[key], atol=1e-2 * scale, rtol=0), key
    muon_1, muon_2 = state_1["optimizers"][1]["state"], state_2["optimizers"][1]["state"]  # after the sparse one
    assert muon_1.keys() == muon_2.keys() and len(muon_1) > 0
    for pid in muon_1:
        buffer_1, buffer_2 = muon_1[pid]["momentum_buffer"], muon_2[pid]["momentum_buffer"]
        assert (buffer_1 - buffer_2).abs().max() <= 1e-3 * buffer_1.abs().max(), pid

