"""The CPU demo: a small TRM learns 6x6 Sudoku and solves held-out puzzles it has never seen.

    make demo                                   # sets up .venv first if needed, then runs this
    python scripts/demo.py [--seed N] [--run-dir DIR] [pretrain overrides, e.g. epochs=24 eval_interval=8]

Steps: build the dataset (6x6 Sudoku, 2x3 boxes, unique solutions, half of the cells blank; held-out inputs
disjoint from training) unless it is already there; train with `pretrain.py --config-name demo` (config/demo.yaml) in a
subprocess, exactly as a user would run it; then show a few held-out puzzles with the model's answers, say
where the outputs are, answer the held-out puzzles again with 8-way augmentation voting (evaluate.py with
test_time.augmentations=8) and say what that gives and costs, and end with the line
`held-out exact accuracy: <value>` (the plain answers').
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The dataset (see the README's Demo section for how these were chosen).
DATA_DIR = os.path.join("data", "sudoku6-demo")
BOX_ROWS, BOX_COLS = 2, 3
TRAIN_SIZE = 10000
TEST_SIZE = 1000
BLANK_FRACTION = 0.5  # clues are removed (keeping the solution unique) until half of the cells are blank
DATA_SEED = 0

SHOW_PUZZLES = 3
VOTING_AUGMENTATIONS = 8
RESULT_PREFIX = "held-out exact accuracy: "


def _dataset_matches(path: str, train_size: int, test_size: int, blank_fraction: float) -> bool:
    """Whether `path` holds a dataset of these sizes whose held-out puzzles have this fraction of blanks."""
    import numpy as np

    try:
        sizes = {}
        for split in ("train", "test"):
            with open(os.path.join(path, split, "dataset.json"), encoding="utf-8") as f:
                sizes[split] = json.load(f)["total_groups"]
        blanks = float((np.load(os.path.join(path, "test", "all__inputs.npy")) == 1).mean())  # token 1 = blank
    except (OSError, ValueError, KeyError):
        return False
    return sizes == {"train": train_size, "test": test_size} and abs(blanks - blank_fraction) < 0.02


def ensure_dataset(path: str, train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE,
                   blank_fraction: float = BLANK_FRACTION, seed: int = DATA_SEED) -> None:
    """Build the 6x6 Sudoku dataset unless the same one is already at `path`."""
    if _dataset_matches(path, train_size, test_size, blank_fraction):
        print(f"dataset: {path} (already built)")
        return
    from tasks.sudoku.build_mini import build

    start = time.time()
    print(f"dataset: generating {train_size} training + {test_size} held-out 6x6 Sudoku puzzles "
          f"({blank_fraction:.0%} blank, unique solutions) into {path}")
    # The demo's own folder: a dataset of other settings there is replaced.
    build(path, BOX_ROWS, BOX_COLS, train_size, test_size, seed, max_blank_fraction=blank_fraction, overwrite=True)
    print(f"dataset: built in {time.time() - start:.0f} s")


def train(run_dir: str, data_path: str, seed: int, overrides: Sequence[str]) -> int:
    """pretrain.py with the demo preset, in a subprocess (its progress bar and eval lines go to the terminal)."""
    command = [sys.executable, os.path.join(REPO, "pretrain.py"), "--config-name", "demo", f"data_path={data_path}",
               f"checkpoint_path={run_dir}", f"seed={seed}", *overrides]
    print("training:", " ".join(command[1:]), flush=True)
    return subprocess.call(command, cwd=REPO)


# ---------------------------------------------------------------------------------------------------------------
# Showing the results


def _box_shape(size: int):
    """Box rows and columns of a size x size Sudoku: 4 -> 2x2, 6 -> 2x3, 9 -> 3x3."""
    rows = max(r for r in range(1, int(math.isqrt(size)) + 1) if size % r == 0)
    return rows, size // rows


def _colour(text: str, code: str, enabled: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if enabled else text


def render_puzzle(inputs: Sequence[int], labels: Sequence[int], preds: Sequence[int], colour: bool = False
                  ) -> List[str]:
    """Puzzle and the model's answer side by side; wrongly filled cells are marked '*' (red on a terminal).
    Tokens: 0 pad, 1 blank, digit d -> d + 1 (the Sudoku builders' mapping)."""
    size = int(math.isqrt(len(inputs)))
    box_rows, box_cols = _box_shape(size)

    def grid_lines(cells: List[str], cell_width: int) -> List[str]:
        lines = []
        for r in range(size):
            if r and r % box_rows == 0:
                lines.append("+".join(["-" * (cell_width * box_cols + 1)] * (size // box_cols)))
            parts = [" " + "".join(cells[r * size + c] for c in range(b, b + box_cols))
                     for b in range(0, size, box_cols)]
            lines.append("|".join(parts))
        return lines

    puzzle_cells, answer_cells = [], []
    for given, label, pred in zip(inputs, labels, preds):
        given_digit = str(given - 1) if given > 1 else "."
        puzzle_cells.append(given_digit + " ")
        digit = str(pred - 1) if pred > 1 else "?"
        if pred != label:
            answer_cells.append(_colour(digit, "31;1", colour) + "* ")
        elif given > 1:
            answer_cells.append(digit + "  ")
        else:
            answer_cells.append(_colour(digit, "32", colour) + "  ")
    left, right = grid_lines(puzzle_cells, 2), grid_lines(answer_cells, 3)
    width = max(len(line) for line in left)
    header = f"{'puzzle':<{width}}    {'model answer'}"
    return [header] + [f"{a:<{width}}    {b}" for a, b in zip(left, right)]


def show_puzzles(preds: Dict[str, "object"], count: int = SHOW_PUZZLES, colour: bool = False) -> None:
    inputs, labels, answers = preds["inputs"], preds["labels"], preds["preds"]
    print(f"\nThe first {count} held-out puzzles (never seen in training; '.' = blank, '*' = wrong cell):")
    for i in range(min(count, len(inputs))):
        wrong = int((answers[i] != labels[i]).sum())
        verdict = _colour("solved", "32;1", colour) if wrong == 0 else _colour(
            f"not solved ({wrong} wrong cell{'s' * (wrong > 1)})", "31;1", colour)
        print(f"\nheld-out puzzle {i + 1}: {verdict}")
        for line in render_puzzle(inputs[i].tolist(), labels[i].tolist(), answers[i].tolist(), colour):
            print("  " + line)
        if wrong:
            size = int(math.isqrt(len(labels[i])))
            fixes = [f"row {c // size + 1} column {c % size + 1} is {int(labels[i][c]) - 1}"
                     for c in range(len(labels[i])) if answers[i][c] != labels[i][c]]
            print("  correct answer: " + "; ".join(fixes[:6]) + (" ..." if len(fixes) > 6 else ""))


def last_predictions(run_dir: str):
    """(step, predictions dict) of the last evaluation that saved its outputs, or (None, None)."""
    import torch

    files = glob.glob(os.path.join(run_dir, "step_*_all_preds.0"))
    if not files:
        return None, None
    path = max(files, key=lambda p: int(os.path.basename(p).split("_")[1]))
    return int(os.path.basename(path).split("_")[1]), torch.load(path, weights_only=True)


def describe_outputs(run_dir: str, step: Optional[int]) -> None:
    print(f"\nOutputs in {run_dir}/:")
    entries = [("curves.png", "training curves: train/eval loss and accuracy"),
               ("metrics.jsonl", "every logged metric, one JSON object per line"),
               (f"step_{step}", "the trained model (state dict)"),
               (f"step_{step}_all_preds.0", "held-out inputs, labels and predictions"),
               ("all_config.yaml", "the resolved config")]
    for name, what in entries:
        if os.path.exists(os.path.join(run_dir, name)):
            print(f"  {name:<24} {what}")
    for offline in sorted(glob.glob(os.path.join(run_dir, "wandb", "offline-run-*"))):
        print(f"  W&B offline run; upload it with: wandb sync {offline}")


def voting_line(run_dir: str, step: int, data_dir: str, augmentations: int = VOTING_AUGMENTATIONS) -> str:
    """Test-time compute on the same held-out puzzles: each answered under `augmentations` symmetries of the
    Sudoku (the identity among them), the answers mapped back and voted (evaluate.py, README "Test-time compute")."""
    command = [sys.executable, "evaluate.py", f"checkpoint={os.path.join(run_dir, f'step_{step}')}",
               f"data_path={data_dir}", "device=cpu", f"test_time.augmentations={augmentations}"]
    start = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.time() - start
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"demo: {augmentations}-way augmentation voting failed (exit code {result.returncode}): "
                           f"{last}")
    metrics = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
    return (f"held-out exact accuracy with {augmentations}-way augmentation voting: "
            f"{metrics['eval/all/exact_accuracy']:.4f} ({seconds:.0f} s more: python {' '.join(command[1:])})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the dataset is always the same)")
    parser.add_argument("--run-dir", help="run folder (default: checkpoints/demo/<time>-seed<N>)")
    parser.add_argument("--data-dir", default=DATA_DIR, help=f"dataset folder (default: {DATA_DIR})")
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--test-size", type=int, default=TEST_SIZE)
    parser.add_argument("overrides", nargs="*", help="pretrain.py overrides, e.g. epochs=24 eval_interval=8")
    args = parser.parse_args(argv)

    start = time.time()
    # Paths given on the command line are relative to where the user is; the defaults to the repository.
    run_dir = os.path.abspath(args.run_dir) if args.run_dir else os.path.join(
        "checkpoints", "demo", time.strftime("%Y%m%d-%H%M%S") + f"-seed{args.seed}")
    data_dir = args.data_dir if args.data_dir == DATA_DIR else os.path.abspath(args.data_dir)
    os.chdir(REPO)
    ensure_dataset(data_dir, args.train_size, args.test_size)
    data_done = time.time()
    try:
        code = train(run_dir, data_dir, args.seed, args.overrides)
    except KeyboardInterrupt:
        code = 130
    if code != 0:
        print(f"demo: training failed (exit code {code})", file=sys.stderr)
        return code

    step, preds = last_predictions(run_dir)
    if preds is None:
        print(f"demo: no saved predictions in {run_dir}", file=sys.stderr)
        return 1
    show_puzzles(preds, colour=sys.stdout.isatty())
    describe_outputs(run_dir, step)
    solved = (preds["preds"] == preds["labels"]).all(-1)
    print(f"\nDemo took {time.time() - start:.0f} s (dataset {data_done - start:.0f} s, training and evaluation "
          f"{time.time() - data_done:.0f} s); {int(solved.sum())} of {len(solved)} held-out puzzles solved exactly "
          f"at step {step}.")
    if step is not None:
        try:
            print(voting_line(run_dir, step, data_dir), flush=True)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 1
    print(f"{RESULT_PREFIX}{solved.float().mean().item():.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
