"""Acceptance tests of issue 23, "Never lose a run": every command is run as a user types it (a subprocess, from the
repository root, on the CPU), and each test states one promise of the issue.

  A. A run folder belongs to one run (a new run never writes into another run's folder; overwrite=true moves the
     old files aside; multirun jobs get their own folders; evaluate.py never replaces a file it did not write;
     the dataset builders refuse an existing dataset without --overwrite).
  B. Generators never hang (more puzzles than exist is refused; large boxes show progress or are refused).
  C. Ctrl-C (SIGINT to the process group, as a terminal sends it) is a preemption in training, 1 and 2 processes,
     and resumes bitwise; a second Ctrl-C exits at once; evaluate.py exits 130 with nothing half-written.
  D. Every bad file or path is one line `error: ...`, exit status 2, no traceback.
  E. Messages that say what is wrong (missing checkpoint, a run folder given as a checkpoint, a batch larger than
     the dataset, a refused resume, an ARC task for a Sudoku model, tools.adapt's leftovers, a text file served as
     predictions). The disk-full case is written elsewhere.

"One line" means exactly one non-empty stderr line once progress-bar output (tqdm's carriage-return frames) is
left out. Every subprocess has a timeout, so a hang fails the test instead of stalling the suite. Set
NEVER_LOSE_LOG=<file> to append one JSON line per command (exit status, stderr lines, traceback, seconds).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import REPO as _REPO
from tests.helpers import load_run_outputs

REPO = Path(_REPO)
PY = sys.executable
TORCHRUN_2 = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]  # = torchrun --nproc-per-node 2
PREEMPTED_EXIT_CODE = 75  # training/preemption.py

# The tiny run every test starts from: the demo's TRM (mlp_t), hidden 32, a 2-position puzzle embedding (so the
# sparse optimizer's table is part of the state), 64 training puzzles of 4x4 Sudoku in batches of 16: 4 steps per
# epoch, 12 epochs = 48 steps (a few seconds of training), an evaluation every 4 epochs saving its predictions, a
# checkpoint at the end, metrics logged every step.
RUN = {"arch.hidden_size": 32, "arch.num_heads": 2, "arch.puzzle_emb_ndim": 32, "arch.puzzle_emb_len": 2,
       "global_batch_size": 16, "epochs": 12, "eval_interval": 4, "log_interval": 1, "eval_save_outputs": "[preds]",
       "logger": "none", "device": "cpu", "seed": 3}
FINAL = 48
SHORT = {"epochs": 4, "eval_interval": 4}  # 16 steps: a shorter run, for the runs a test only needs to exist
SUDOKU_4X4 = "1..4" "...." "...." "4..1"  # a puzzle for the solve CLI (its answer does not matter here)


# ---------------------------------------------------------------------------------------------------------------
# Helpers: commands, one-line stderr, folder checksums, processes signalled as a terminal does
# ---------------------------------------------------------------------------------------------------------------

def env() -> Dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB")}, "OMP_NUM_THREADS": "1"}


def train_cmd(data, run_dir=None, changes: Optional[dict] = None, launcher: Sequence[str] = (PY,),
              flags: Sequence[str] = ()) -> List[str]:
    """`python pretrain.py --config-name demo data_path=... <RUN with changes> [checkpoint_path=run_dir]`."""
    settings = {"data_path": data, **RUN, **(changes or {})}
    if run_dir is not None:
        settings["checkpoint_path"] = run_dir
    return [*launcher, "pretrain.py", *flags, "--config-name", "demo", *(f"{k}={v}" for k, v in settings.items())]


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A tqdm frame: "  40%|####  | 4/10 [00:01<00:02, 2.5it/s]" or, without a total, "12it [00:01, 9.1it/s]".
_PROGRESS = re.compile(r"\d+%\||\[\d+:\d\d(?::\d\d)?[<,\]]")


def message_lines(stderr: str) -> List[str]:
    """The non-empty stderr lines that are not progress-bar frames (tqdm redraws with carriage returns)."""
    lines = []
    for line in stderr.split("\n"):
        for frame in _ANSI.sub("", line).split("\r"):
            frame = frame.strip()
            if frame and not _PROGRESS.search(frame):
                lines.append(frame)
    return lines


@dataclass
class Result:
    cmd: List[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> List[str]:
        return message_lines(self.stderr)

    def describe(self) -> str:
        return (f"$ {short(self.cmd)}\nexit status {self.returncode} after {self.seconds:.1f} s\n--- stdout (end):\n"
                f"{self.stdout[-1500:]}\n--- stderr lines (end, progress bars left out):\n"
                + "\n".join(self.lines[-25:]))


def short(cmd: Sequence[str]) -> str:
    return " ".join(str(c) for c in cmd).replace(PY, "python").replace(str(REPO) + "/", "")


def _record(result: Result, timed_out: bool = False) -> None:
    log = os.environ.get("NEVER_LOSE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                                "cmd": short(result.cmd), "exit": result.returncode, "timed_out": timed_out,
                                "stderr_lines": len(result.lines), "traceback": "Traceback" in result.stderr,
                                "last_line": (result.lines or [""])[-1][:300],
                                "seconds": round(result.seconds, 1)}) + "\n")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd: Sequence, timeout: float = 60, hang: str = "did not end") -> Result:
    """Run `cmd` from the repository root in its own process group; fail the test (and kill the group) when it
    has not ended after `timeout` seconds."""
    cmd = [str(c) for c in cmd]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        result = Result(cmd, proc.returncode, out, err, time.monotonic() - start)
        _record(result, timed_out=True)
        pytest.fail(f"{hang} within {timeout:.0f} s (killed)\n" + result.describe())
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    result = Result(cmd, proc.returncode, out, err, time.monotonic() - start)
    _record(result)
    return result


def assert_one_line(result: Result, returncode: int = 2) -> str:
    """Exit status `returncode`, no traceback, and exactly one stderr line; returns that line."""
    assert result.returncode == returncode, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert len(result.lines) == 1, result.describe()
    return result.lines[0]


def assert_user_error(result: Result, *fragments: str) -> str:
    """A user error: exit status 2, no traceback, one line `error: ...` holding every fragment; returns it."""
    line = assert_one_line(result, 2)
    assert line.startswith("error: "), result.describe()
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in the message\n" + result.describe()
    return line


def tree_digest(folder: Path) -> Dict[str, str]:
    """sha256 of every file under `folder`, by relative path (a new, missing or changed file changes it)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def model_steps(run_dir: Path) -> List[int]:
    return sorted(int(m.group(1)) for n in os.listdir(run_dir) if (m := re.fullmatch(r"step_(\d+)", n)))


def logged_step(run_dir: Path) -> int:
    try:
        with open(run_dir / "metrics.jsonl", encoding="utf-8") as f:
            return max((json.loads(line)["step"] for line in f if line.strip()), default=0)
    except (OSError, ValueError, KeyError):
        return 0


def train_steps(run_dir: Path) -> List[int]:
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as f:
        return [r["step"] for r in map(json.loads, filter(str.strip, f)) if "train/lm_loss" in r]


def as_from_a_terminal() -> None:
    """In the child before it starts: Ctrl-C's default action, as a shell gives a command it runs. A child inherits
    an ignored SIGINT, and Python then installs no KeyboardInterrupt for it: whether a test worker ignores SIGINT
    (depending on what ran in it before) must not decide whether evaluate.py can be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Started:
    """A command started in its own process group (as a shell starts a foreground job), output to files."""

    def __init__(self, cmd: Sequence, folder: Path, default_sigint: bool = False):
        self.cmd = [str(c) for c in cmd]
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / "stdout.txt", folder / "stderr.txt"
        self.start = time.monotonic()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, start_new_session=True,
                                         preexec_fn=as_from_a_terminal if default_sigint else None)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended (exit status {self.proc.returncode}) before {what}; the test needs "
                            f"it running\n" + self.result().describe())
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{what}: not within {timeout:.0f} s\n" + self.result().describe())
            time.sleep(0.02)

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        _kill_group(self.proc)
        self.proc.wait()

    def finish(self, timeout: float, what: str = "did not end") -> Result:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            result = self.result()
            _record(result, timed_out=True)
            pytest.fail(f"{what} within {timeout:.0f} s (killed)\n" + result.describe())
        result = self.result()
        _record(result)
        return result

    def result(self) -> Result:
        return Result(self.cmd, self.proc.returncode if self.proc.returncode is not None else -999,
                      self.out_path.read_text(errors="replace"), self.err_path.read_text(errors="replace"),
                      time.monotonic() - self.start)


def tracebacks_not_from_torchrun(stderr: str) -> List[str]:
    """Tracebacks other than torchrun's own: anything our processes print, with or without torch's `[rankN]:`
    prefix. A worker's traceback always has a frame in this repository (its entry script), torchrun's never does
    (its frames are in torch/distributed and, run as `python -m torch.distributed.run`, Python's runpy)."""
    ours = re.compile(rf'File "{re.escape(str(REPO))}/(?![^"]*site-packages)')  # not a virtual env inside it
    blocks = stderr.split("Traceback (most recent call last):")[1:]
    return [b[:1500] for b in blocks if ours.search(b)]


def without_rank_prefix(lines: List[str]) -> List[str]:
    return [re.sub(r"^\[(?:rank|default)\d+\]:\s*", "", line) for line in lines]


def same_final_state(a_dir: Path, b_dir: Path, step: int) -> None:
    """The runs' step_<step> checkpoints and metrics agree bitwise: model file, optimizer states, data position,
    metrics.jsonl (wall times left out)."""
    model_a, state_a, metrics_a = load_run_outputs(a_dir, step)
    model_b, state_b, metrics_b = load_run_outputs(b_dir, step)
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), f"model weight {key} differs"
    for opt_a, opt_b in zip(state_a["optimizers"], state_b["optimizers"]):
        for pid, entry in opt_a["state"].items():
            for name, value in entry.items():
                other = opt_b["state"][pid][name]
                assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, (pid, name)
    assert state_a["loader"] == state_b["loader"]
    assert metrics_a == metrics_b


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the tiny dataset and the tiny run, built once for the module
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(mini_sudoku) -> str:
    return mini_sudoku(2, 2, train_size=64, test_size=16, seed=11)


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory) -> Path:
    """A finished run (read-only for the tests: copy it before writing): step_48 with .state and .rank0,
    step_{16,32,48}_all_preds.0, metrics.jsonl, all_config.yaml. Also the uninterrupted run of the Ctrl-C tests."""
    run_dir = tmp_path_factory.mktemp("base") / "run"
    result = run(train_cmd(data, run_dir), timeout=120)
    assert result.returncode == 0, result.describe()
    assert {f"step_{FINAL}", f"step_{FINAL}.state", f"step_{FINAL}.rank0", f"step_{FINAL}_all_preds.0"} <= set(
        os.listdir(run_dir))
    return run_dir


@pytest.fixture
def old_run(base_run, tmp_path) -> Path:
    """A copy of the finished run, in this test's own folder."""
    folder = tmp_path / "run"
    shutil.copytree(base_run, folder)
    return folder


@pytest.fixture(scope="module")
def arc_task(tmp_path_factory) -> Path:
    """One small ARC task file (3x3 grids, two demonstrations, one test pair)."""
    rng = np.random.default_rng(0)

    def pair():
        return {"input": rng.integers(0, 10, (3, 3)).tolist(), "output": rng.integers(0, 10, (3, 3)).tolist()}

    path = tmp_path_factory.mktemp("arc") / "task.json"
    path.write_text(json.dumps({"train": [pair(), pair()], "test": [pair()]}))
    return path


# ---------------------------------------------------------------------------------------------------------------
# A. A run folder belongs to one run
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["same-config", "keep-last-1", "metrics-only"])
def test_a1_new_run_into_another_runs_folder_is_refused(case, data, base_run, tmp_path):
    """same-config: the run started again; keep-last-1: a shorter run with checkpoint_keep_last=1 (today it deletes
    its own checkpoints and keeps the old run's newer step_48); metrics-only: a run that was stopped before its
    first checkpoint left only metrics.jsonl."""
    folder = tmp_path / "run"
    if case == "metrics-only":
        folder.mkdir()
        shutil.copy(base_run / "metrics.jsonl", folder)
    else:
        shutil.copytree(base_run, folder)
    changes = {"keep-last-1": {**SHORT, "checkpoint_keep_last": 1}}.get(case, {})
    before = tree_digest(folder)
    result = run(train_cmd(data, folder, changes))
    assert_user_error(result, str(folder), "resume=latest", "overwrite=true")
    assert tree_digest(folder) == before, "the other run's files changed"


@pytest.mark.slow
def test_a1_same_run_name_twice_is_refused(data, tmp_path):
    """A published command rerun (`+run_name=same`, no checkpoint_path): the default folder
    checkpoints/<project_name>/<run_name> is the same; the second run is refused. The project name is an absolute
    path so that the default folder lands under tmp_path, not in the repository."""
    cmd = train_cmd(data, None, {**SHORT, "+project_name": tmp_path / "proj", "+run_name": "same"})
    first = run(cmd)
    assert first.returncode == 0, first.describe()
    folder = tmp_path / "proj" / "same"
    assert folder.is_dir() and model_steps(folder) == [16], first.describe()
    before = tree_digest(folder)
    second = run(cmd)
    assert_user_error(second, str(folder), "resume=latest", "overwrite=true")
    assert tree_digest(folder) == before, "the first run's files changed"


@pytest.mark.slow
def test_a2_overwrite_moves_the_old_run_aside(data, old_run):
    folder = old_run
    old = tree_digest(folder)
    cmd = train_cmd(data, folder, {**SHORT, "overwrite": "true"})  # 16 steps: shorter than the old run's 48
    first = run(cmd)
    assert first.returncode == 0, first.describe()
    replaced_1 = folder.with_name(folder.name + ".replaced-1")
    assert replaced_1.is_dir(), first.describe()
    assert tree_digest(replaced_1) == old, "the old run's files were not moved intact"
    assert model_steps(folder) == [16]  # only the new run: no step_48 left beside it
    assert not any(name.startswith(f"step_{FINAL}") for name in os.listdir(folder))
    assert train_steps(folder) == list(range(1, 17))  # its own metrics only
    assert yaml.safe_load((folder / "all_config.yaml").read_text())["epochs"] == 4

    new = tree_digest(folder)
    second = run(cmd)
    assert second.returncode == 0, second.describe()
    assert tree_digest(folder.with_name(folder.name + ".replaced-2")) == new
    assert tree_digest(replaced_1) == old


@pytest.mark.slow
def test_a3_multirun_gives_each_job_its_own_folder(data, tmp_path):
    """`pretrain.py -m lr=1e-3,2e-3 checkpoint_path=X`: jobs write X-0 and X-1. (hydra.sweep.dir only keeps Hydra's
    own multirun/ folder out of the repository.)"""
    x = tmp_path / "X"
    cmd = train_cmd(data, x, {**SHORT, "lr": "1e-3,2e-3", "hydra.sweep.dir": tmp_path / "sweep"}, flags=["-m"])
    result = run(cmd, timeout=90)
    assert result.returncode == 0, result.describe()
    for job, lr in ((0, 0.001), (1, 0.002)):
        folder = tmp_path / f"X-{job}"
        assert folder.is_dir(), f"no folder {folder}: " + ", ".join(sorted(os.listdir(tmp_path)))
        assert yaml.safe_load((folder / "all_config.yaml").read_text())["lr"] == pytest.approx(lr)
        assert model_steps(folder) == [16]
        assert train_steps(folder) == list(range(1, 17))  # one job's metrics, not both


def test_a4_evaluate_never_replaces_the_training_outputs(old_run):
    checkpoint = old_run / f"step_{FINAL}"
    trained = old_run / f"step_{FINAL}_all_preds.0"
    stat = trained.stat()
    before = (hashlib.sha256(trained.read_bytes()).hexdigest(), stat.st_ino, stat.st_mtime_ns)
    names = set(os.listdir(old_run))
    result = run([PY, "evaluate.py", f"checkpoint={checkpoint}", "save_outputs=[preds]", "device=cpu"])
    assert result.returncode == 0, result.describe()
    stat = trained.stat()
    # The same bytes could be written again (same weights, same data): the file must not be rewritten at all.
    assert (hashlib.sha256(trained.read_bytes()).hexdigest(), stat.st_ino, stat.st_mtime_ns) == before, \
        f"{trained.name} was rewritten"
    new = sorted(n for n in set(os.listdir(old_run)) - names
                 if n.startswith(f"step_{FINAL}") and n.endswith("_all_preds.0"))
    assert len(new) == 1, f"new files: {sorted(set(os.listdir(old_run)) - names)}\n" + result.describe()
    assert new[0] in result.stdout, "evaluate.py does not say which file it wrote\n" + result.describe()
    assert "preds" in torch.load(old_run / new[0], weights_only=True)


# The sudoku --input-dir source: two published-format rows (a valid puzzle and its solution each).
_Q1 = ".9.5..7..12.9.6.....7..8..22.6..1....1..82..3.3............984.....34.....9...1.."
_A1 = "498523716123976458657148392286391574715482963934657281362719845571834629849265137"
_Q2 = "..5..1.493.4.6...7..2..5.1..26..3..1.5...4.72...8.............4..94........91...5"
_A2 = "765381249314269587982745316426573891853194672197826453571638924239457168648912735"


def builder_command(name: str, out: Path, src: Path, again: bool) -> List[str]:
    """The builder's command writing `out`; `again`: the same with other content (another seed or subset)."""
    seed = ["--seed", "1" if again else "0"]
    if name == "mini_sudoku":
        return ["dataset/build_mini_sudoku_dataset.py", "--output-dir", out, "--box-rows", "2", "--box-cols", "2",
                "--generate", "20", "--test-size", "5", *seed]
    if name == "sudoku_generate":
        return ["dataset/build_sudoku_dataset.py", "--generate", "10", "--test-size", "2", "--output-dir", out, *seed]
    if name == "sudoku_input_dir":
        rows = "source,question,answer,rating\n"
        (src / "train.csv").write_text(rows + f"a,{_Q1},{_A1},5\nb,{_Q2},{_A2},0\n")
        (src / "test.csv").write_text(rows + f"c,{_Q2},{_A2},0\n")
        return ["dataset/build_sudoku_dataset.py", "--input-dir", src, "--output-dir", out,
                *(["--subsample-size", "1"] if again else [])]
    if name == "maze":
        return ["dataset/build_maze_dataset.py", "--generate", "4", "--test-size", "2", "--size", "6",
                "--min-path-len", "1", "--output-dir", out, *seed]
    if name == "arc":
        rng = np.random.default_rng(0)
        for split, task in (("training", "aaa"), ("evaluation", "bbb")):
            (src / split).mkdir(parents=True, exist_ok=True)
            pairs = [{"input": rng.integers(0, 10, (3, 4)).tolist(), "output": rng.integers(0, 10, (2, 3)).tolist()}
                     for _ in range(3)]
            (src / split / f"{task}.json").write_text(json.dumps({"train": pairs[:2], "test": pairs[2:]}))
        return ["dataset/build_arc_dataset.py", "--dataset-dirs", src, "--output-dir", out, "--num-aug", "1", *seed]
    if name == "rule_tasks":
        return ["dataset/build_rule_tasks_dataset.py", "--output-dir", out, "--tasks", "4", "--held-out", "2",
                "--colours", "4", "--side", "3", "--demos", "2", "--tests", "1", *seed]
    raise ValueError(name)


@pytest.mark.parametrize("name", ["mini_sudoku", "sudoku_generate", "sudoku_input_dir", "maze", "arc", "rule_tasks"])
def test_a5_builders_refuse_an_existing_dataset_without_overwrite(name, tmp_path):
    out, src = tmp_path / "dataset", tmp_path / "src"
    src.mkdir()
    first = run([PY, *builder_command(name, out, src, again=False)])
    assert first.returncode == 0, first.describe()
    before, siblings = tree_digest(out), sorted(os.listdir(tmp_path))

    again = run([PY, *builder_command(name, out, src, again=False)])
    assert_user_error(again, str(out), "--overwrite")
    assert tree_digest(out) == before, "the existing dataset changed"
    assert sorted(os.listdir(tmp_path)) == siblings, "a temporary folder was left beside it"

    rebuilt = run([PY, *builder_command(name, out, src, again=True), "--overwrite"])
    assert rebuilt.returncode == 0, rebuilt.describe()
    assert tree_digest(out) != before, "--overwrite did not rebuild it"


# ---------------------------------------------------------------------------------------------------------------
# B. Generators never hang
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("box_rows, box_cols, count", [(1, 1, 5), (1, 2, 50)])
def test_b_more_puzzles_than_exist_is_refused(box_rows, box_cols, count, tmp_path):
    out = tmp_path / "out"
    result = run([PY, "dataset/build_mini_sudoku_dataset.py", "--output-dir", out, "--box-rows", box_rows,
                  "--box-cols", box_cols, "--generate", count], timeout=30, hang="the generator did not end")
    line = assert_user_error(result)
    assert re.search(r"\d", line) and "exist" in line, "the message does not say how many puzzles exist: " + line
    assert not out.exists()


# A progress report that has moved: a count "3/10" or a percentage above zero (not tqdm's initial "0%| 0/10").
_MOVED = re.compile(r"(?<![\d.])[1-9]\d*/\d+|(?<![\d.])(?:[1-9]\d*(?:\.\d+)?|0\.\d*[1-9]\d*)%")


def test_b_large_boxes_show_progress_or_are_refused(tmp_path):
    """16x16 (4x4 boxes): within 30 s either a progress report that has moved, or a one-line refusal (exit 2)."""
    job = Started([PY, "dataset/build_mini_sudoku_dataset.py", "--output-dir", tmp_path / "out", "--box-rows", 4,
                   "--box-cols", 4, "--generate", 10, "--test-size", 2], tmp_path / "job")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job.proc.poll() is None:
        if _MOVED.search(_ANSI.sub("", job.output())):
            job.kill()
            return  # it shows progress
        time.sleep(0.5)
    if job.proc.poll() is None:
        job.kill()
        result = job.result()
        _record(result, timed_out=True)
        pytest.fail("no progress and no refusal within 30 s\n" + result.describe())
    result = job.finish(5)
    if result.returncode != 0 or not (tmp_path / "out").is_dir():
        assert_user_error(result)


# ---------------------------------------------------------------------------------------------------------------
# C. Ctrl-C
# ---------------------------------------------------------------------------------------------------------------

def interrupt_training(cmd, run_dir: Path, tmp_path: Path, after_step: int = 3) -> Result:
    """Start a run, Ctrl-C it (SIGINT to its process group) once it has logged `after_step`; its result."""
    job = Started(cmd, tmp_path / "interrupted")
    job.wait_until(lambda: logged_step(run_dir) >= after_step, 90, f"the run logging step {after_step}")
    job.interrupt()
    return job.finish(60, "the interrupted run did not stop")


@pytest.mark.slow
def test_c1_ctrl_c_in_training_checkpoints_and_resumes_bitwise(data, base_run, tmp_path):
    run_dir = tmp_path / "run"
    result = interrupt_training(train_cmd(data, run_dir), run_dir, tmp_path)
    line = assert_one_line(result, PREEMPTED_EXIT_CODE)
    assert "resume=latest" in line, result.describe()
    steps = model_steps(run_dir)
    assert len(steps) == 1 and 3 <= steps[0] < FINAL, f"checkpoints: {steps}\n" + result.describe()
    step = steps[0]
    assert {f"step_{step}.state", f"step_{step}.rank0"} <= set(os.listdir(run_dir))
    load_run_outputs(run_dir, step)  # a full checkpoint that loads

    resumed = run(train_cmd(data, run_dir, {"resume": "latest"}), timeout=90)
    assert resumed.returncode == 0, resumed.describe()
    same_final_state(base_run, run_dir, FINAL)  # base_run: the same config, never interrupted


@pytest.fixture(scope="module")
def base_run_2proc(data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("base2") / "run"
    result = run(train_cmd(data, run_dir, launcher=TORCHRUN_2), timeout=120)
    assert result.returncode == 0, result.describe()
    return run_dir


@pytest.mark.slow
def test_c2_ctrl_c_with_torchrun_checkpoints_and_resumes_bitwise(data, base_run_2proc, tmp_path):
    """Ctrl-C reaches torchrun (its workers run in sessions of their own), which passes SIGINT on to them and then
    ends with its own SignalException traceback and exit status 1: torchrun's status and traceback are not ours,
    so this asserts a failing status, our one `resume=latest` line (rank 0 only) and no traceback from our
    processes, the full 2-process checkpoint, and the bitwise resume."""
    run_dir = tmp_path / "run"
    result = interrupt_training(train_cmd(data, run_dir, launcher=TORCHRUN_2), run_dir, tmp_path)
    assert result.returncode != 0, result.describe()
    assert not tracebacks_not_from_torchrun(result.stderr), result.describe()
    hints = [line for line in without_rank_prefix(result.lines) if "resume=latest" in line]
    assert len(hints) == 1, result.describe()
    steps = model_steps(run_dir)
    assert len(steps) == 1 and 3 <= steps[0] < FINAL, f"checkpoints: {steps}\n" + result.describe()
    step = steps[0]
    assert {f"step_{step}.state", f"step_{step}.rank0", f"step_{step}.rank1"} <= set(os.listdir(run_dir))

    resumed = run(train_cmd(data, run_dir, {"resume": "latest"}, launcher=TORCHRUN_2), timeout=120)
    assert resumed.returncode == 0, resumed.describe()
    same_final_state(base_run_2proc, run_dir, FINAL)


@pytest.mark.slow
def test_c3_second_ctrl_c_exits_at_once(data, tmp_path):
    run_dir = tmp_path / "run"
    job = Started(train_cmd(data, run_dir), tmp_path / "job")
    job.wait_until(lambda: logged_step(run_dir) >= 3, 90, "the run logging step 3")
    job.interrupt()
    time.sleep(0.1)  # while the step ends and the checkpoint is written
    if job.proc.poll() is None:
        job.interrupt()
    result = job.finish(15, "the run did not stop promptly after a second Ctrl-C")
    assert result.returncode in (130, PREEMPTED_EXIT_CODE), result.describe()
    assert_one_line(result, result.returncode)


@pytest.mark.slow
def test_c4_ctrl_c_in_evaluate_writes_nothing(base_run, mini_sudoku, tmp_path):
    """A long evaluation (2000 test puzzles, batch 1) interrupted once it has started: exit 130, one line, and no
    outputs file, whole or partial."""
    big = mini_sudoku(2, 2, train_size=16, test_size=2000, seed=11)
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name in (f"step_{FINAL}", "all_config.yaml"):
        shutil.copy(base_run / name, folder)
    job = Started([PY, "evaluate.py", f"checkpoint={folder / f'step_{FINAL}'}", f"data_path={big}",
                   "global_batch_size=1", "save_outputs=[preds]", "device=cpu"], tmp_path / "job", default_sigint=True)
    job.wait_until(lambda: "eval" in job.err_path.read_text(errors="replace"), 60, "the evaluation starting")
    time.sleep(1.0)
    if job.proc.poll() is not None:
        pytest.fail("the evaluation ended before the Ctrl-C; the test needs a longer one\n" + job.result().describe())
    job.interrupt()
    result = job.finish(20, "evaluate.py did not stop after Ctrl-C")
    assert_one_line(result, 130)
    leftovers = [n for n in os.listdir(folder) if "_all_preds" in n or ".tmp" in n]
    assert not leftovers, f"left behind: {leftovers}"


# ---------------------------------------------------------------------------------------------------------------
# D. Every bad file or path is one line, exit status 2, no traceback
# ---------------------------------------------------------------------------------------------------------------

def bad_copy(source: Path, target: Path, kind: str) -> Path:
    """`target`: `source` cut in half ("truncated") or a text file ("text")."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        content = source.read_bytes()
        target.write_bytes(content[:len(content) // 2])
    else:
        target.write_text("hello world\n")
    return target


def bad_checkpoint_case(kind: str, tool: str):
    def make(data, base_run, tmp_path):
        if tool == "export":
            preds = bad_copy(base_run / f"step_{FINAL}_all_preds.0", tmp_path / "run" / f"step_{FINAL}_all_preds.0",
                             kind)
            return [PY, "-m", "tools.export_predictions", preds, "--output", tmp_path / "preds.npz"], [str(preds)]
        checkpoint = bad_copy(base_run / f"step_{FINAL}", tmp_path / "run" / f"step_{FINAL}", kind)
        shutil.copy(base_run / "all_config.yaml", checkpoint.parent)  # so that only the checkpoint file is bad
        if tool == "pretrain":
            cmd = train_cmd(data, tmp_path / "new", {**SHORT, "load_checkpoint": checkpoint})
        elif tool == "evaluate":
            cmd = [PY, "evaluate.py", f"checkpoint={checkpoint}", "device=cpu"]
        else:
            cmd = [PY, "-m", "tools.solve", f"checkpoint={checkpoint}", f"puzzle={SUDOKU_4X4}", "device=cpu"]
        return cmd, [str(checkpoint)]
    return make


def bad_npy_case(kind: str):
    def make(data, base_run, tmp_path):
        copy = tmp_path / "data"
        shutil.copytree(data, copy)
        array = copy / "train" / "all__inputs.npy"
        if kind == "truncated":
            os.truncate(array, array.stat().st_size // 2)
        else:  # a pickled Python object, not an array
            np.save(array, {"not": "an array"}, allow_pickle=True)
        return train_cmd(copy, tmp_path / "run", SHORT), ["all__inputs.npy"]
    return make


def bad_run_config_case(content: str):
    def make(data, base_run, tmp_path):
        folder = tmp_path / "run"
        folder.mkdir()
        shutil.copy(base_run / f"step_{FINAL}", folder)
        (folder / "all_config.yaml").write_text(content)
        return [PY, "evaluate.py", f"checkpoint={folder / f'step_{FINAL}'}", "device=cpu"], ["all_config.yaml"]
    return make


def checkpoint_path_case(where: str):
    def make(data, base_run, tmp_path):
        a_file = tmp_path / "a_file"
        a_file.write_text("not a folder\n")
        path = {"proc": Path("/proc/never-lose-run"), "file": a_file, "under-file": a_file / "run"}[where]
        return train_cmd(data, path, SHORT), [str(path)]
    return make


def setting_case(changes: dict, *fragments: str):
    def make(data, base_run, tmp_path):
        return train_cmd(data, tmp_path / "run", {**SHORT, **changes}), list(fragments)
    return make


def export_missing_case(data, base_run, tmp_path):
    missing = tmp_path / "nothere" / f"step_{FINAL}_all_preds.0"
    return [PY, "-m", "tools.export_predictions", missing, "--output", tmp_path / "preds.npz"], [str(missing)]


def visualizer_port_case(data, base_run, tmp_path):
    return [PY, "-m", "tools.serve_visualizer", data, "--port", "99999"], ["99999"]


BAD_INPUTS = [
    *(pytest.param(bad_checkpoint_case(kind, tool), id=f"{kind}-checkpoint-{tool}")
      for kind in ("truncated", "text") for tool in ("pretrain", "evaluate", "solve", "export")),
    pytest.param(bad_npy_case("truncated"), id="truncated-npy"),
    pytest.param(bad_npy_case("pickled"), id="non-array-npy"),
    pytest.param(bad_run_config_case(""), id="empty-all_config"),
    pytest.param(bad_run_config_case("arch: [unclosed\n  hidden_size: {\n"), id="non-yaml-all_config"),
    pytest.param(bad_run_config_case("- a\n- b\n"), id="list-all_config"),
    pytest.param(checkpoint_path_case("proc"), id="checkpoint_path-under-proc"),
    pytest.param(checkpoint_path_case("file"), id="checkpoint_path-on-a-file"),
    pytest.param(checkpoint_path_case("under-file"), id="checkpoint_path-under-a-file"),
    pytest.param(setting_case({"arch.loss.loss_type": "nonsense"}, "loss_type", "nonsense"), id="loss_type"),
    pytest.param(setting_case({"device": "tpu"}, "tpu"), id="device-tpu"),
    pytest.param(export_missing_case, id="export-missing-file"),
    pytest.param(visualizer_port_case, id="visualizer-port-99999"),
]


@pytest.mark.parametrize("make", BAD_INPUTS)
def test_d_bad_file_or_path_is_one_line(make, data, base_run, tmp_path):
    cmd, fragments = make(data, base_run, tmp_path)
    assert_user_error(run(cmd), *fragments)
    if (tmp_path / "a_file").exists():
        assert (tmp_path / "a_file").read_text() == "not a folder\n"


def test_d_export_predictions_runs_as_a_script(base_run, tmp_path):
    """`python tools/export_predictions.py ...` works as `python -m tools.export_predictions ...` does."""
    output = tmp_path / "preds.npz"
    result = run([PY, "tools/export_predictions.py", base_run / f"step_{FINAL}_all_preds.0", "--output", output])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.describe()
    assert "preds" in np.load(output)


@pytest.mark.slow
def test_d_torchrun_config_error_is_one_line_from_rank_0(data, tmp_path):
    """torchrun prints its own failure summary (log lines, its ChildFailedError traceback, a table) after the
    workers exit; that is torchrun's. Ours: exactly one `error:` line in all (rank 0 only; torch may prefix a
    worker's lines with `[rankN]:`), and no traceback from our processes (any traceback holding a frame of this
    repository, or not starting in torch/distributed/run.py)."""
    result = run(train_cmd(data, tmp_path / "run", {"+learning_rate": 3}, launcher=TORCHRUN_2))
    assert result.returncode != 0, result.describe()
    errors = [line for line in without_rank_prefix(result.lines) if line.startswith("error:")]
    assert len(errors) == 1, f"{len(errors)} error lines\n" + result.describe()
    assert "learning_rate" in errors[0]
    assert not tracebacks_not_from_torchrun(result.stderr), result.describe()


# ---------------------------------------------------------------------------------------------------------------
# E. Messages that say what is wrong
# ---------------------------------------------------------------------------------------------------------------

def test_e_evaluate_missing_checkpoint_says_it_does_not_exist(tmp_path):
    missing = tmp_path / "nothere" / "step_5"
    line = assert_user_error(run([PY, "evaluate.py", f"checkpoint={missing}", "device=cpu"]), str(missing))
    assert "does not exist" in line or "no such" in line.lower(), line


def test_e_evaluate_run_folder_names_a_step_file(base_run):
    line = assert_user_error(run([PY, "evaluate.py", f"checkpoint={base_run}", "device=cpu"]))
    assert "folder" in line or "directory" in line, line
    assert re.search(r"step_\d+", line), f"no step file named: {line}"


def test_e_batch_larger_than_the_dataset_is_refused_before_training(data, tmp_path):
    """A batch of 128 over 64 training puzzles with one epoch per evaluation block: 0 steps (today: exit 0 and a
    step_0 "checkpoint"). With several epochs per block the loader fills a batch from them, so the case is
    stated where both readings of the rule (batch larger than the examples; 0 steps) agree."""
    run_dir = tmp_path / "run"
    changes = {"epochs": 2, "eval_interval": 1, "global_batch_size": 128}
    assert_user_error(run(train_cmd(data, run_dir, changes)), "global_batch_size")
    assert not (run_dir / "step_0").exists()
    assert not run_dir.exists() or not model_steps(run_dir)


def test_e_resume_with_another_arch_names_only_the_differing_field(data, old_run):
    before = tree_digest(old_run)
    result = run(train_cmd(data, old_run, {"arch.hidden_size": 64, "resume": "latest"}))
    line = assert_user_error(result, "hidden_size")
    named = line[line.index("hidden_size"):]
    assert "32" in named and "64" in named, f"both values (checkpoint 32, this run 64) after the field: {line}"
    assert len(line) < 300, f"{len(line)} characters: {line}"
    assert "num_heads" not in line and "L_cycles" not in line, line  # fields that did not change are not listed
    assert tree_digest(old_run) == before


def test_e_solve_arc_task_with_a_sudoku_model_says_so(base_run, arc_task):
    result = run([PY, "-m", "tools.solve", f"checkpoint={base_run / f'step_{FINAL}'}", f"puzzle_file={arc_task}",
                  "device=cpu"])
    line = assert_user_error(result)
    assert "ARC" in line and "sudoku" in line.lower(), line
    assert not re.search(r"has \d+ cells", line), line


def test_e_adapt_that_fails_leaves_no_output(base_run, arc_task, tmp_path):
    """ARC tasks for a Sudoku checkpoint (with a puzzle embedding): the tasks are built into <output>/data, then the
    checkpoint's weights do not fit the ARC vocabulary."""
    output = tmp_path / "adapted"
    result = run([PY, "-m", "tools.adapt", f"checkpoint={base_run / f'step_{FINAL}'}", f"tasks={arc_task}",
                  "num_aug=1", "steps=2", f"output={output}", "device=cpu"])
    assert_user_error(result)
    assert not (output / "data").exists(), f"{output / 'data'} left behind"
    assert not output.exists() or not any(output.rglob("*")), f"{output} left behind"


def test_e_visualizer_refuses_a_text_file_as_predictions(data, tmp_path):
    preds = tmp_path / "preds.npz"
    preds.write_text("not predictions\n")
    result = run([PY, "-m", "tools.serve_visualizer", data, "--preds", preds, "--port", "0"], timeout=20,
                 hang="the visualizer served the text file instead of refusing it: it did not exit")
    assert_user_error(result, str(preds))
