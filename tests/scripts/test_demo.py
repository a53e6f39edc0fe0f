"""The CPU demo (scripts/demo.py, `make demo`) on a shortened schedule, and the training-curve plot."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from scripts.demo import RESULT_PREFIX, render_puzzle
from tests.helpers import REPO
from training.run_logger import PLOT_FILE, RunLogger
from utils.plots import MetricHistory, plot_history, read_metrics


def assert_real_png(path, min_bytes=10_000):
    """A PNG that decodes to a picture that is not blank."""
    from matplotlib.image import imread

    assert os.path.getsize(path) > min_bytes, os.path.getsize(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # curves, axes and text, not a uniform canvas


@pytest.mark.slow
def test_shortened_demo_trains_plots_and_reports(tmp_path):
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env["HOME"] = str(tmp_path)  # not logged in to W&B: the run must go offline by itself
    # The same code path as `make demo` (config/demo.yaml), on a smaller dataset: 320 puzzles / batch 32 x 4 epochs
    # = 40 steps, train metrics logged every 10, evaluations after epochs 2 and 4.
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--seed", "1", "--run-dir", str(run_dir), "--data-dir", str(data_dir),
         "--train-size", "320", "--test-size", "40", "epochs=4", "eval_interval=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()

    # The last line is the result, and it agrees with the saved predictions and the logged metric.
    match = re.fullmatch(re.escape(RESULT_PREFIX) + r"(\d\.\d{4})", lines[-1])
    assert match, lines[-1]
    # Before it, the same puzzles answered with 8-way augmentation voting, and what that cost.
    voted = re.fullmatch(r"held-out exact accuracy with 8-way augmentation voting: (\d\.\d{4}) \((\d+) s more: "
                         r"python evaluate\.py .*test_time\.augmentations=8\)", lines[-2])
    assert voted, lines[-2]
    assert 0.0 <= float(voted.group(1)) <= 1.0
    accuracy = float(match.group(1))
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if "train/lm_loss" in r]
    evals = [r for r in records if "eval/all/exact_accuracy" in r]
    assert [r["step"] for r in train] == list(range(10, 41, 10)) and [r["step"] for r in evals] == [20, 40]
    assert all(np.isfinite(r["train/lm_loss"]) and r["train/lm_loss"] > 0 for r in train)
    assert {"eval/all/accuracy", "eval/all/lm_loss"} <= set(evals[-1])
    assert accuracy == pytest.approx(evals[-1]["eval/all/exact_accuracy"], abs=1e-4)

    assert_real_png(run_dir / PLOT_FILE)
    assert os.path.exists(run_dir / f"step_{evals[-1]['step']}")
    assert "held-out puzzle 1:" in result.stdout and "model answer" in result.stdout
    assert "wandb sync" in result.stdout and list((run_dir / "wandb").glob("offline-run-*"))
    assert "eval at step 20 (" in result.stdout and "eval at step 40 (" in result.stdout  # one line per evaluation

    # A second run reuses the dataset instead of generating it again.
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--run-dir", str(tmp_path / "run2"), "--data-dir", str(data_dir),
         "--train-size", "320", "--test-size", "40", "epochs=1", "eval_interval=1", "logger=none"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "already built" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith(RESULT_PREFIX)


def synthetic_records(steps=300, evals=(100, 200, 300)):
    rng = np.random.default_rng(0)
    for step in range(1, steps + 1):
        halted = step % 2 == 0
        yield {"step": step, "train/lm_loss": 2.0 * 0.99 ** step + 0.05 * rng.random(),
               "train/accuracy": (1 - 0.5 * 0.99 ** step) * halted, "train/exact_accuracy": (1 - 0.99 ** step) * halted,
               "train/steps": 2.0 * halted, "train/lr": 1e-3}
        if step in evals:
            yield {"step": step, "eval/all/lm_loss": 0.99 ** step, "eval/all/accuracy": 1 - 0.4 * 0.99 ** step,
                   "eval/all/exact_accuracy": 1 - 0.99 ** step}


def test_history_skips_accuracies_of_steps_where_nothing_halted():
    history = MetricHistory().extend(synthetic_records())
    assert len(history.train["train/lm_loss"][0]) == 300
    assert len(history.train["train/accuracy"][0]) == 150  # the zeros of non-halting steps are not curve points
    assert history.eval["eval/all/exact_accuracy"][0] == [100.0, 200.0, 300.0]


def test_plot_history_writes_a_png(tmp_path):
    path = plot_history(MetricHistory().extend(synthetic_records()), str(tmp_path / "curves.png"), title="t")
    assert_real_png(path)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp.png")]


def log_all(logger, records):
    for record in records:
        logger.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])


def age(path):
    """Set the file's modification time one second back; returns it (a re-drawing moves it forward)."""
    mtime = path.stat().st_mtime_ns - 10**9
    os.utime(path, ns=(mtime, mtime))
    return mtime


def test_run_logger_redraws_the_plot_at_each_evaluation_and_at_the_end(tmp_path):
    logger = RunLogger(str(tmp_path), project="p", run_name="r", config={}, use_wandb=False, plot=True,
                       plot_every_s=0)
    png = tmp_path / PLOT_FILE
    records = list(synthetic_records())  # evaluations at steps 100, 200 and 300 (the last record)
    log_all(logger, records[:50])
    assert not png.exists()  # training rows alone do not redraw
    for record in records[50:]:
        before = age(png) if png.exists() else None
        log_all(logger, [record])
        if any(k.startswith("eval/") for k in record):
            assert png.stat().st_mtime_ns > (before or 0)
        elif before is not None:
            assert png.stat().st_mtime_ns == before
    # At the end: nothing new since the last evaluation, nothing drawn; after more training rows, drawn.
    before = age(png)
    logger.finish()
    assert png.stat().st_mtime_ns == before
    logger = RunLogger(str(tmp_path), project="p", run_name="r", config={}, use_wandb=False, plot=True)
    log_all(logger, [{"step": 301, "train/lm_loss": 0.1}])
    logger.finish()
    assert png.stat().st_mtime_ns > before
    assert_real_png(png)
    with open(tmp_path / "metrics.jsonl") as f:
        assert len(f.readlines()) == len(records) + 1


def test_run_logger_draws_at_most_every_plot_every_s(tmp_path):
    """An evaluation within plot_every_s of the last drawing does not redraw; the end does."""
    logger = RunLogger(str(tmp_path), project="p", run_name="r", config={}, use_wandb=False, plot=True,
                       plot_every_s=3600)
    png = tmp_path / PLOT_FILE
    records = list(synthetic_records())
    first_eval = next(i for i, r in enumerate(records) if "eval/all/accuracy" in r)
    log_all(logger, records[:first_eval + 1])
    before = age(png)  # drawn at the first evaluation
    log_all(logger, records[first_eval + 1:])  # two more evaluations, within the hour
    assert png.stat().st_mtime_ns == before
    logger.finish()
    assert png.stat().st_mtime_ns > before


def test_run_logger_without_plot_draws_nothing(tmp_path):
    logger = RunLogger(str(tmp_path), project="p", run_name="r", config={}, use_wandb=False)
    for record in synthetic_records(steps=20, evals=(20,)):
        logger.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
    logger.finish()
    assert not (tmp_path / PLOT_FILE).exists()


def test_resumed_run_logger_plots_the_earlier_metrics_too(tmp_path):
    records = list(synthetic_records())
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for record in records[:200]:
            f.write(json.dumps(record) + "\n")
    logger = RunLogger(str(tmp_path), project="p", run_name="r", config={}, use_wandb=False, plot=True)
    assert len(logger._history.train["train/lm_loss"][0]) == sum("train/lm_loss" in r for r in records[:200])
    assert logger._history.eval["eval/all/accuracy"][0] == [100.0]
    logger.finish()
    assert_real_png(tmp_path / PLOT_FILE)


def test_render_puzzle_marks_wrong_cells():
    solution = [1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 2, 3, 1, 5, 6, 4, 5, 6, 4, 2, 3, 1, 3, 1, 2, 6, 4, 5, 6, 4, 5, 3,
                1, 2]
    labels = [d + 1 for d in solution]
    inputs = [1 if i % 3 else labels[i] for i in range(36)]  # every third cell given, the rest blank
    preds = list(labels)
    preds[1] = labels[2]  # one wrong digit in a blank cell
    lines = render_puzzle(inputs, labels, preds)
    assert lines[0].split() == ["puzzle", "model", "answer"]
    assert len(lines) == 1 + 6 + 2  # header, 6 rows, 2 box separators (2x3 boxes)
    assert lines[1].split("    ")[0].split() == ["1", ".", ".", "|", "4", ".", "."]
    assert "3*" in lines[1] and lines[1].count("*") == 1
    assert "*" not in "".join(lines[2:])


def test_demo_dataset_is_half_blank_unique_and_held_out(tmp_path):
    from tasks.sudoku.build_mini import MiniSudoku
    from scripts.demo import BLANK_FRACTION, ensure_dataset

    ensure_dataset(str(tmp_path / "d"), train_size=300, test_size=60)
    splits = {s: (np.load(tmp_path / "d" / s / "all__inputs.npy").astype(int) - 1,
                  np.load(tmp_path / "d" / s / "all__labels.npy").astype(int) - 1) for s in ("train", "test")}
    sudoku = MiniSudoku(2, 3)
    for puzzles, solutions in splits.values():
        puzzles = np.maximum(puzzles, 0)  # token 1 (blank) -> 0
        assert ((puzzles == 0).sum(1) == int(BLANK_FRACTION * 36)).all()
        assert ((puzzles == 0) | (puzzles == solutions)).all()
        assert all(sudoku.is_solution(s) for s in solutions)
        assert all(sudoku.count_solutions(p.tolist(), limit=2) == 1 for p in puzzles)
    train_inputs = {tuple(p) for p in splits["train"][0]}
    assert not any(tuple(p) in train_inputs for p in splits["test"][0])
