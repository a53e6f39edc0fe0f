"""Small grids with a rule per task: the CPU-sized experiment on puzzles the model never saw (README, "Puzzles the
model never saw").

Each task recolours random S x S grids cell by cell with its own permutation of C colours. The model sees one
grid at a time, so which permutation applies is told only by the task's puzzle identifier, that is by its learned
embedding: a task held out of training entirely can be answered only once an embedding is learned for it from its
demonstration pairs (tools/adapt.py). No two tasks share a permutation.

    python dataset/build_rule_tasks_dataset.py --output-dir data/colour-rules --tasks 200 --held-out 50

Writes two datasets in the HRM format:
  <out>/train-tasks  train split: the demonstration pairs of the training tasks; test split: their test pairs
  <out>/new-tasks    train split: the demonstration pairs of the held-out tasks; test split: their test pairs
Tokens: colour c -> c + 1 (0 is padding); vocab C + 1; seq_len S*S. A task is a group of one puzzle with its own
identifier (1..tasks in each dataset, 0 blank), named by its permutation (`colours_<p0p1...>`).
"""
import argparse
import math
import os
import sys
from typing import Optional, Sequence

import numpy as np

from dataset.builder_common import (DatasetBuildError, atomic_output_dir, check_output_dir, positive_int,
                                    verify_dataset, write_identifiers, write_split)
from dataset.common import PuzzleDatasetMetadata
from tasks.rules.codec import RulesCodec
from utils.cli import run_command


def draw_rules(rng: np.random.Generator, count: int, colours: int) -> np.ndarray:
    """`count` distinct permutations of `colours` colours (int [count, colours])."""
    if count > math.factorial(colours):
        raise DatasetBuildError(f"{count} tasks need {count} distinct colour permutations, but {colours} colours have "
                                f"only {math.factorial(colours)}; raise --colours or lower --tasks/--held-out")
    rules, seen = [], set()
    while len(rules) < count:
        rule = rng.permutation(colours)
        if rule.tobytes() not in seen:
            seen.add(rule.tobytes())
            rules.append(rule)
    return np.stack(rules)


def task_examples(rng: np.random.Generator, rule: np.ndarray, count: int, side: int) -> tuple:
    """(inputs, labels) token rows [count, side*side] of one task: random grids, recoloured by `rule`."""
    grids = rng.integers(0, len(rule), size=(count, side * side))
    return grids + 1, rule[grids] + 1


def write_tasks(output_dir: str, rules: np.ndarray, rng: np.random.Generator, side: int, demos: int,
                tests: int) -> None:
    """One dataset: each rule a task (group) of one puzzle; its demonstrations train, its tests test."""
    names = ["<blank>"] + [f"colours_{''.join(str(c) for c in rule)}" for rule in rules]
    per_split = {"train": demos, "test": tests}
    examples = {split: [task_examples(rng, rule, n, side) for rule in rules] for split, n in per_split.items()}
    for split, n in per_split.items():
        arrays = {
            "inputs": np.concatenate([i for i, _ in examples[split]]).astype(np.uint8),
            "labels": np.concatenate([label for _, label in examples[split]]).astype(np.uint8),
            "puzzle_identifiers": np.arange(1, len(rules) + 1, dtype=np.int32),
            "puzzle_indices": np.arange(0, len(rules) * n + 1, n, dtype=np.int32),
            "group_indices": np.arange(len(rules) + 1, dtype=np.int32),
        }
        metadata = PuzzleDatasetMetadata(task=RulesCodec.name, pad_id=0, ignore_label_id=0, blank_identifier_id=0,
                                         vocab_size=rules.shape[1] + 1, seq_len=side * side,
                                         num_puzzle_identifiers=len(names), total_groups=len(rules),
                                         mean_puzzle_examples=float(n), sets=["all"])
        write_split(output_dir, split, metadata, {"all": arrays})
    write_identifiers(output_dir, names)
    verify_dataset(output_dir)


def build(output_dir: str, tasks: int, held_out: int, colours: int = 6, side: int = 4, demos: int = 10,
          tests: int = 5, seed: int = 0, overwrite: bool = False) -> None:
    check_output_dir(output_dir, overwrite)
    rng = np.random.default_rng(seed)
    rules = draw_rules(rng, tasks + held_out, colours)
    with atomic_output_dir(output_dir, overwrite) as tmp:
        write_tasks(os.path.join(tmp, "train-tasks"), rules[:tasks], rng, side, demos, tests)
        write_tasks(os.path.join(tmp, "new-tasks"), rules[tasks:], rng, side, demos, tests)
    print(f"wrote {tasks} training and {held_out} held-out tasks ({colours} colours, {side}x{side} grids, {demos} "
          f"demonstrations and {tests} tests each) to {output_dir}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--tasks", type=positive_int, default=200, help="training tasks [200]")
    parser.add_argument("--held-out", type=positive_int, default=50, help="tasks held out of training [50]")
    parser.add_argument("--colours", type=positive_int, default=6, help="colours per grid [6]")
    parser.add_argument("--side", type=positive_int, default=4, help="grid side [4]")
    parser.add_argument("--demos", type=positive_int, default=10, help="demonstration pairs per task [10]")
    parser.add_argument("--tests", type=positive_int, default=5, help="test pairs per task [5]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --output-dir")
    args = parser.parse_args(argv)
    build(args.output_dir, args.tasks, args.held_out, args.colours, args.side, args.demos, args.tests, args.seed,
          args.overwrite)


if __name__ == "__main__":
    sys.exit(run_command(main))
