"""A checkpoint written by an earlier version of the trainer (tests/fixtures/checkpoint_v1: the first layout of the
training-state files) resumes: the resumed run ends with the weights and metrics the earlier version's uninterrupted
run ended with.

Equal up to float rounding, not bit for bit: the order in which a CPU's kernels add depends on its vector width and
thread count, and that moves the last bits. Measured on one CPU, resuming the fixture with torch's AVX2 kernels on two
threads reproduces it bit for bit (the machine that wrote it); with AVX-512 kernels, or one thread, or no vector
kernels, at most 1.1e-7 of a tensor's largest entry moves after 25 steps. A run that differs in earnest moves it by
far more (a learning rate 0.1% off: 4e-4 in the Q head), let alone a piece of state that did not come back (the
optimizer's moments, the EMA, the ACT carry, a random generator, the data position). The bound: 1e-5 of a tensor's
largest entry. Bitwise resume on one machine is tests/e2e/test_resume.py's."""
import os
import shutil
import sys

import pytest
import torch

from tests.helpers import REPO, read_metrics, run_in_repo

FIXTURE = os.path.join(REPO, "tests", "fixtures", "checkpoint_v1")
# The command the fixture was made with (its README), less the folders.
RUN = ["arch=trm", "global_batch_size=8", "epochs=2", "eval_interval=1", "lr=1e-3", "lr_warmup_steps=5",
       "arch.hidden_size=16", "arch.num_heads=2", "arch.L_layers=1", "arch.H_cycles=2", "arch.L_cycles=2",
       "arch.halt_max_steps=3", "arch.puzzle_emb_ndim=16", "arch.puzzle_emb_len=1", "ema=true",
       "checkpoint_interval=15", "checkpoint_in_background=false", "checkpoint_keep_states=10", "logger=none",
       "device=cpu", "log_interval=3"]
# How far float rounding may move a value, as a fraction of the tensor's largest entry (see above).
ROUNDING = 1e-5


def test_a_checkpoint_of_the_first_layout_resumes(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "fixture")
    data, run = tmp_path / "fixture" / "data", tmp_path / "fixture" / "run"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={data}", f"checkpoint_path={run}",
                          f"resume={run / 'step_15'}", *RUN])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {run / 'step_15'} at step 15" in result.stdout

    resumed = torch.load(run / "step_40", weights_only=True)
    expected = torch.load(os.path.join(FIXTURE, "expected", "step_40"), weights_only=True)
    assert resumed.keys() == expected.keys()
    for key, value in expected.items():
        scale = value.abs().max().item()
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=ROUNDING * scale, msg=key)
    # The earlier run's metrics after step 15 are logged again (the fixture's metrics.jsonl has the whole run; the
    # resumed folder had none, so it holds steps 16-40): the same steps and names, the same values up to rounding.
    after = [r for r in read_metrics(os.path.join(FIXTURE, "expected")) if r["step"] > 15]
    logged = read_metrics(run)
    assert [sorted(r) for r in logged] == [sorted(r) for r in after]
    for got, want in zip(logged, after):
        assert got == pytest.approx(want, rel=ROUNDING, abs=ROUNDING), want["step"]
