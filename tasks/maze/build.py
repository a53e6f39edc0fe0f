"""Build a maze dataset in the HRM format (docs/DESIGN.md §6) from the hub, from local CSV files, or by generating
mazes.

    python dataset/build_maze_dataset.py --input-dir DIR             # DIR/train.csv, DIR/test.csv (published format)
    python dataset/build_maze_dataset.py --generate 1000 --test-size 1000 --aug
    python dataset/build_maze_dataset.py                              # download sapientinc/maze-30x30-hard-1k

Tokens: 0 = pad, then "# SGo" -> 1..5 (wall, open, start, goal, path); seq_len = grid cells (900), vocab 6.
Each original maze is a group; with `--aug` the training split holds its 8 dihedral transforms (transform id k
is puzzle k of the group, k = 0 the original), each a puzzle of one example.  With `--input-dir` and neither
`--aug` nor subsampling, the arrays equal those written by the original HRM builder for the same CSV files.
See docs/DATASETS.md.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from dataset.builder_common import (
    DatasetBuildError,
    atomic_output_dir,
    check_output_dir,
    folder_size,
    format_bytes,
    grid_metadata,
    non_negative_int,
    positive_int,
    read_puzzle_csv,
    single_example_structure,
    source_csv_paths,
    subsample_indices,
    text_histogram,
    verify_dataset,
    write_identifiers,
    write_puzzle_csv,
    write_split,
)
from dataset.common import dihedral_transform
from tasks.maze.codec import MAZE_CHARSET, MazeCodec
from utils.cli import run_command

VOCAB_SIZE = len(MAZE_CHARSET) + 1  # token id = position in "# SGo" + 1; 0 = pad
DEFAULT_SOURCE_REPO = "sapientinc/maze-30x30-hard-1k"
DEFAULT_OUTPUT_DIR = "data/maze-30x30-hard-1k"
GRID_SIZE = 30
PATH_LEN_BINS = [0, 110, 120, 130, 140, 150, 160]

_CHAR_TO_ID = np.zeros(256, dtype=np.uint8)
_CHAR_TO_ID[np.array([ord(c) for c in MAZE_CHARSET])] = np.arange(1, len(MAZE_CHARSET) + 1, dtype=np.uint8)
_VALID_CHAR = np.zeros(256, dtype=bool)
_VALID_CHAR[np.array([ord(c) for c in MAZE_CHARSET])] = True


def tokens_to_text(grid: np.ndarray) -> str:
    """Token grid (any shape) -> the CSV string over "# SGo" (row-major)."""
    return "".join(MAZE_CHARSET[v - 1] for v in np.asarray(grid).reshape(-1))


# ----------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------

def read_maze_csv(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Read a published-format CSV (source, question, answer, rating) in file order.

    Returns token grids (uint8 [n, side, side]) of questions and answers.  Every row must hold two strings of
    the same square length (the first row fixes the size) over the characters "# SGo".
    """
    questions: List[bytes] = []
    answers: List[bytes] = []
    lines: List[int] = []
    length = None
    for line, _source, q, a, _rating in read_puzzle_csv(path):
        if length is None:
            side = math.isqrt(len(q))
            if len(q) == 0 or side * side != len(q):
                raise DatasetBuildError(f"question has {len(q)} characters, not a square grid", file=path, row=line)
            length = len(q)
        if len(q) != length or len(a) != length:
            raise DatasetBuildError(f"question and answer must have {length} characters (as the first row), "
                                    f"got {len(q)} and {len(a)}", file=path, row=line)
        if not (q.isascii() and a.isascii()):
            raise DatasetBuildError(f"characters outside {MAZE_CHARSET!r}", file=path, row=line)
        questions.append(q.encode("ascii"))
        answers.append(a.encode("ascii"))
        lines.append(line)
    if not questions:
        return np.zeros((0, GRID_SIZE, GRID_SIZE), np.uint8), np.zeros((0, GRID_SIZE, GRID_SIZE), np.uint8)
    side = math.isqrt(length)
    n = len(questions)
    q_raw = np.frombuffer(b"".join(questions), dtype=np.uint8).reshape(n, length)
    a_raw = np.frombuffer(b"".join(answers), dtype=np.uint8).reshape(n, length)
    bad = np.flatnonzero(~np.all(_VALID_CHAR[q_raw] & _VALID_CHAR[a_raw], axis=1))
    if bad.size:
        raise DatasetBuildError(f"characters outside {MAZE_CHARSET!r}", file=path, row=lines[bad[0]])
    return _CHAR_TO_ID[q_raw].reshape(n, side, side), _CHAR_TO_ID[a_raw].reshape(n, side, side)


def generate_split_pair(rng: np.random.Generator, n_train: int, n_test: int, min_path_len: int,
                        open_prob: float, unique: bool, size: int = GRID_SIZE):
    """Generate n_train + n_test distinct size x size mazes; returns (train, test, path lengths, seconds)."""
    from tasks.maze import generator as maze_core

    want = n_train + n_test
    if min_path_len >= size * size:
        raise DatasetBuildError(f"--min-path-len {min_path_len} is impossible in a {size}x{size} grid; "
                                "lower --min-path-len")
    max_tries = 500 * want + 100_000
    questions: List[np.ndarray] = []
    answers: List[np.ndarray] = []
    lengths: List[int] = []
    seen = set()
    tried = 0
    start = time.perf_counter()
    with tqdm(total=want, desc="Generating mazes", unit="maze") as bar:
        while len(questions) < want:
            if tried >= max_tries:
                raise DatasetBuildError(
                    f"only {len(questions)} of {want} mazes have a shortest path of >= {min_path_len} steps after "
                    f"{tried} tries; lower --min-path-len (or --open-prob)")
            rate = (len(questions) + 1) / (tried + 1)
            batch = int(min(max_tries - tried, max(64, min(65536, 1.2 * (want - len(questions)) / rate + 32))))
            q, a, lens = maze_core.generate_mazes(rng, batch, size=size, open_prob=open_prob,
                                                  min_path_len=min_path_len, unique=unique)
            tried += batch
            for i in np.flatnonzero(lens >= 0):
                key = q[i].tobytes()
                if key in seen:
                    continue
                seen.add(key)
                questions.append(q[i].astype(np.uint8))
                answers.append(a[i].astype(np.uint8))
                lengths.append(int(lens[i]))
                bar.update(1)
                if len(questions) == want:
                    break
    elapsed = time.perf_counter() - start
    if not questions:
        q_all = a_all = np.zeros((0, size, size), np.uint8)
    else:
        q_all, a_all = np.stack(questions), np.stack(answers)
    return (q_all[:n_train], a_all[:n_train]), (q_all[n_train:], a_all[n_train:]), \
        np.asarray(lengths, dtype=np.int64), elapsed


# ----------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------

def to_tokens(questions: np.ndarray, answers: np.ndarray, aug: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Flatten token grids to [(8 if aug else 1) * n, side*side]; with aug each maze is followed by its
    transforms 1..7 (transform k at position k of the group)."""
    n, side, _ = questions.shape
    per_group = 8 if aug else 1
    inputs = np.empty((n * per_group, side * side), dtype=np.uint8)
    labels = np.empty((n * per_group, side * side), dtype=np.uint8)
    for g in range(n):
        for tid in range(per_group):
            inputs[g * per_group + tid] = dihedral_transform(questions[g], tid).reshape(-1)
            labels[g * per_group + tid] = dihedral_transform(answers[g], tid).reshape(-1)
    return inputs, labels


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="build_maze_dataset.py",
        description="Build a maze dataset in the HRM format. Source: --input-dir, --generate, or (default) the "
                    "hub repo --source-repo.")
    src = p.add_argument_group("source (choose one)")
    src.add_argument("--source-repo", default=DEFAULT_SOURCE_REPO,
                     help="hub dataset repo holding train.csv/test.csv, used when neither --input-dir nor "
                          "--generate is given; downloaded once into the hub cache (docs/DATASETS.md) [%(default)s]")
    src.add_argument("--input-dir", type=Path, default=None,
                     help="folder with local copies of the published train.csv and test.csv")
    src.add_argument("--generate", type=non_negative_int, default=None, metavar="N",
                     help="generate N training mazes locally (--size)")
    src.add_argument("--test-size", type=non_negative_int, default=1000, metavar="M",
                     help="with --generate: number of test mazes [%(default)s]")
    gen = p.add_argument_group("generator")
    gen.add_argument("--size", type=positive_int, default=GRID_SIZE,
                     help="with --generate: maze side, e.g. 10 for CPU-sized experiments [%(default)s]")
    gen.add_argument("--min-path-len", type=non_negative_int, default=110,
                     help="with --generate: keep mazes whose shortest start-goal path has at least this many "
                          "steps (the paper's hard filter) [%(default)s]")
    gen.add_argument("--open-prob", type=float, default=0.03,
                     help="with --generate: probability of opening each unused passage of the spanning-tree "
                          "maze (adds loops) [%(default)s]")
    gen.add_argument("--allow-ties", action="store_true",
                     help="with --generate: also keep goals reached by several shortest paths (one is marked); "
                          "by default the marked path is the only shortest path")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help="dataset folder to write [%(default)s]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --output-dir")
    p.add_argument("--subsample-size", type=positive_int, default=None,
                   help="keep a random subset of this many training mazes")
    p.add_argument("--aug", action="store_true", help="add the 8 dihedral transforms of each training maze")
    p.add_argument("--seed", type=int, default=0, help="random seed of generation and subsampling [%(default)s]")
    p.add_argument("--save-csv", action="store_true",
                   help="with --generate: also write the mazes as <output-dir>/source/{train,test}.csv "
                        "(published format, rating = shortest path length)")
    args = p.parse_args(argv)
    if args.input_dir is not None and args.generate is not None:
        p.error("--input-dir and --generate are alternatives; give one")
    if args.save_csv and args.generate is None:
        p.error("--save-csv only applies to --generate")
    if not 0.0 <= args.open_prob <= 1.0:
        p.error("--open-prob must be in [0, 1]")
    return args


def build(args: argparse.Namespace) -> Dict[str, object]:
    started = time.perf_counter()
    check_output_dir(args.output_dir, args.overwrite)
    gen_rng, sub_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(2))
    report: Dict[str, object] = {}
    lengths = None
    if args.generate is not None:
        train, test, lengths, seconds = generate_split_pair(
            gen_rng, args.generate, args.test_size, args.min_path_len, args.open_prob, not args.allow_ties, args.size)
        report["generation_seconds"] = seconds
        report["path_lengths"] = lengths
        total = args.generate + args.test_size
        print(f"Generated {total} mazes in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f}/s, JIT compile "
              f"included)")
        if lengths.size:
            print(f"Shortest path length (steps): mean {lengths.mean():.1f}, max {lengths.max()}")
            print(text_histogram(lengths, PATH_LEN_BINS))
    else:
        paths = source_csv_paths(args.input_dir, args.source_repo)
        train, test = read_maze_csv(paths["train"]), read_maze_csv(paths["test"])
        if train[0].shape[1:] != test[0].shape[1:] and len(train[0]) and len(test[0]):
            raise DatasetBuildError(f"train mazes are {train[0].shape[1]}x{train[0].shape[2]} but test mazes "
                                    f"{test[0].shape[1]}x{test[0].shape[2]}")

    idx = subsample_indices(sub_rng, len(train[0]), args.subsample_size)
    if idx is not None:
        train = (train[0][idx], train[1][idx])
        if lengths is not None:
            lengths = np.concatenate([lengths[:args.generate][idx], lengths[args.generate:]])

    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        for name, (q, a), aug in (("train", train, args.aug), ("test", test, False)):
            inputs, labels = to_tokens(q, a, aug)
            seq_len = q.shape[1] * q.shape[2]
            arrays = {"inputs": inputs, "labels": labels, **single_example_structure(q.shape[0], 8 if aug else 1)}
            write_split(tmp, name, grid_metadata(VOCAB_SIZE, seq_len, q.shape[0], task=MazeCodec.name), {"all": arrays})
            report[f"{name}_examples"] = inputs.shape[0]
        write_identifiers(tmp, ["<blank>"])
        if args.save_csv:
            n_train = len(train[0])
            for name, (q, a), lens in (("train", train, lengths[:n_train]), ("test", test, lengths[n_train:])):
                rows = [(f"generated-seed{args.seed}", tokens_to_text(qi), tokens_to_text(ai), str(int(li)))
                        for qi, ai, li in zip(q, a, lens)]
                write_puzzle_csv(Path(tmp) / "source" / f"{name}.csv", rows)
        verify_dataset(tmp)
        report["bytes"] = folder_size(tmp)
    report["seconds"] = time.perf_counter() - started
    print(f"Wrote {args.output_dir}: train {report['train_examples']} puzzles ({len(train[0])} groups), "
          f"test {report['test_examples']} puzzles; {format_bytes(report['bytes'])} in {report['seconds']:.1f} s")
    return report


def main(argv: Optional[Sequence[str]] = None) -> None:
    build(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_command(main))
