"""Preemption (training/preemption.py) with real signals on the CPU, for 1 and 2 processes, and elastic resume
of the checkpoint it writes on another number of processes."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.e2e.test_resume import assert_same_run
from tests.helpers import REPO, load_run_outputs, run_in_repo

# 3 blocks of 16 steps, EMA on, no periodic checkpoints: what resumes is the checkpoint the signal made.
RUN = ["epochs=3", "eval_interval=1", "global_batch_size=32", "lr=3e-3", "lr_warmup_steps=5", "lr_min_ratio=0.1",
       "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.puzzle_emb_ndim=32",
       "arch.pos_encodings=learned", "arch.halt_max_steps=3", "arch.halt_exploration_prob=0.5", "device=cpu",
       "logger=none", "seed=3", "ema=true", "log_interval=3"]
FINAL_STEP = 3 * (512 // 32)
MESSAGE = re.compile(r"^preempted by (SIGTERM|SIGUSR1) at step (\d+): checkpoint (\S+) written; continue with "
                     r"resume=latest checkpoint_path=\S+$")


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=512, test_size=32, seed=7)


def command(data, run_dir, nproc, *extra):
    launcher = [sys.executable] if nproc == 0 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc-per-node={nproc}"]
    return [*launcher, "pretrain.py", f"data_path={data}", f"checkpoint_path={run_dir}", *RUN, *extra]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def logged_step(run_dir) -> int:
    try:
        with open(run_dir / "metrics.jsonl") as f:
            return max((json.loads(line)["step"] for line in f if line.strip()), default=0)
    except (OSError, ValueError):
        return 0


def preempt(cmd, run_dir, after_step, sig=signal.SIGTERM):
    """Start `cmd`, send `sig` once it has logged `after_step`; (exit code, stderr, step of its checkpoint)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while logged_step(run_dir) < after_step and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    lines = [m for line in stderr.splitlines() if (m := MESSAGE.match(line))]
    assert lines, stderr[-3000:]
    assert lines[0].group(1) == signal.Signals(sig).name
    step = int(lines[0].group(2))
    assert lines[0].group(3) == str(run_dir / f"step_{step}")
    return proc.returncode, stderr, step


@pytest.fixture(scope="module")
def straight(sudoku4, tmp_path_factory):
    """Final states of uninterrupted runs: {processes: outputs}."""
    runs = {}
    for nproc in (0, 2):
        run_dir = tmp_path_factory.mktemp("straight") / f"p{nproc}"
        result = run_in_repo(command(sudoku4, run_dir, nproc), env=env())
        assert result.returncode == 0, result.stderr[-3000:]
        runs[nproc] = load_run_outputs(run_dir, FINAL_STEP)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_one_process_stops_with_a_checkpoint_and_resumes_bitwise(sudoku4, straight, tmp_path, sig):
    run_dir = tmp_path / "run"
    code, _, step = preempt(command(sudoku4, run_dir, 0), run_dir, after_step=21, sig=sig)
    assert code == 75  # training/preemption.PREEMPTED_EXIT_CODE
    assert 21 <= step < FINAL_STEP and not (run_dir / f"step_{FINAL_STEP}").exists()
    resumed = run_in_repo(command(sudoku4, run_dir, 0, "resume=latest"), env=env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {run_dir / f'step_{step}'} at step {step}" in resumed.stdout
    assert_same_run(straight[0], load_run_outputs(run_dir, FINAL_STEP))


@pytest.mark.slow
def test_two_processes_stop_together_then_resume_bitwise_or_elastically(sudoku4, straight, tmp_path):
    run_dir = tmp_path / "run"
    # SIGTERM to torchrun, which passes it on to both workers (as Slurm and Kubernetes signal a job).
    code, stderr, step = preempt(command(sudoku4, run_dir, 2), run_dir, after_step=21)
    assert code != 0
    assert {f"step_{step}", f"step_{step}.state", f"step_{step}.rank0", f"step_{step}.rank1"} <= set(os.listdir(run_dir))
    elastic_dir = tmp_path / "elastic"
    shutil.copytree(run_dir, elastic_dir)

    resumed = run_in_repo(command(sudoku4, run_dir, 2, "resume=latest"), env=env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(straight[2], load_run_outputs(run_dir, FINAL_STEP))

    # The same checkpoint on one process: optimizers, EMA, loader position and step continue; carries restart.
    one = run_in_repo(command(sudoku4, elastic_dir, 0, "resume=latest"), env=env())
    assert one.returncode == 0, one.stderr[-3000:]
    assert "was written by 2 processes, this run has 1" in one.stdout and "the ACT carries restart" in one.stdout
    model, state, metrics = load_run_outputs(elastic_dir, FINAL_STEP)
    assert state["world_size"] == 1 and state["optimizers"][-1]["state"][0]["step"].item() == FINAL_STEP
    assert [r["step"] for r in metrics if "eval/all/accuracy" in r] == [16, 32, 48]


@pytest.mark.slow
def test_elastic_restore_continues_the_shared_state_exactly(sudoku4, tmp_path):
    """In-process: a 2-process checkpoint restored into 1 process, compared field by field with the files."""
    from training.build import create_dataloader, init_train_state, total_train_steps
    from training.checkpoint_files import load_checkpoint
    from training.checkpointing import restore_train_state
    from training.config import validate_config
    from training.distributed import single_process

    run_dir = tmp_path / "run"
    _, _, step = preempt(command(sudoku4, run_dir, 2), run_dir, after_step=13)
    path = str(run_dir / f"step_{step}")
    model_file, saved, ranks = load_checkpoint(path)
    config = validate_config({**saved["config"], "resume": path})
    info = single_process(torch.device("cpu"))
    loader = create_dataloader(config, "train", info)
    state = init_train_state(config, loader.metadata, info, total_train_steps(config, loader))
    restore_train_state(config, state, loader, info)

    assert state.step == step and state.carry.value is None
    assert loader.state_dict()["iters"] == saved["loader"]["iters"]
    assert loader.state_dict()["batches_yielded"] == saved["loader"]["batches_yielded"]
    for key, value in saved["raw_weights"].items():
        assert torch.equal(state.model.state_dict()[key], value), key
    for key, value in state.ema.shadow.items():
        assert torch.equal(value, model_file[key]), key  # the average, from the model file
    adam = state.optimizers[-1].state_dict()["state"]
    for pid, entry in saved["optimizers"][-1]["state"].items():
        assert adam[pid]["step"] == int(entry["step"])
        assert torch.equal(adam[pid]["exp_avg"], entry["exp_avg"]) and torch.equal(adam[pid]["exp_avg_sq"],
                                                                                   entry["exp_avg_sq"])
    # Metric sums not yet logged (log_interval=3) are the two ranks' together, on rank 0.
    pending = [r["metrics"]["sums"] for r in ranks]
    if pending[0] is not None:
        for key in pending[0]:
            assert torch.equal(state.metrics.sums[key], pending[0][key] + pending[1][key]), key
    assert state.metrics.steps == ranks[0]["metrics"]["steps"]
