"""Build a Sudoku dataset in the HRM format (docs/DESIGN.md §6) from the hub, from local CSV files, or by generating
puzzles.

    python dataset/build_sudoku_dataset.py --input-dir DIR           # DIR/train.csv, DIR/test.csv (published format)
    python dataset/build_sudoku_dataset.py --generate 1000 --test-size 1000 --num-aug 1000
    python dataset/build_sudoku_dataset.py                            # download sapientinc/sudoku-extreme

Tokens: 0 = pad, 1 = blank, 2..10 = digits 1..9 (token = digit + 1); seq_len 81, vocab 11.  Each original
puzzle is a group; it and each of its `--num-aug` augmentations (training split only) are separate puzzles of
one example.  With `--input-dir` and neither augmentation nor subsampling, the arrays equal those written by the
original HRM builder for the same CSV files.  See docs/DATASETS.md.
"""
from __future__ import annotations

import argparse
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
from tasks.sudoku.codec import SudokuCodec, apply_sudoku_transforms, draw_sudoku_transforms
from utils.cli import run_command

DEFAULT_SOURCE_REPO = "sapientinc/sudoku-extreme"
DEFAULT_OUTPUT_DIR = "data/sudoku-extreme-full"
VOCAB_SIZE = 11  # pad + blank + digits 1..9
SEQ_LEN = 81
RATING_BINS = [0, 1, 2, 3, 5, 10, 20, 50, 100]


# ----------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------

class SudokuSplit:
    """Puzzles of one split as digits (uint8 [n, 81], 0 = blank) with their solutions and ratings."""

    def __init__(self, questions: np.ndarray, answers: np.ndarray, ratings: Optional[np.ndarray] = None,
                 sources: Optional[List[str]] = None):
        self.questions = questions
        self.answers = answers
        self.ratings = ratings
        self.sources = sources

    def __len__(self) -> int:
        return self.questions.shape[0]

    def subset(self, idx: np.ndarray) -> "SudokuSplit":
        return SudokuSplit(self.questions[idx], self.answers[idx],
                           None if self.ratings is None else self.ratings[idx],
                           None if self.sources is None else [self.sources[i] for i in idx])


def _unit_masks_complete(grids: np.ndarray) -> np.ndarray:
    """For digit grids [n, 9, 9] (1..9), True where every row, column and box holds all nine digits."""
    bits = np.left_shift(np.uint16(1), grids.astype(np.uint16))  # digit d -> bit d
    boxes = bits.reshape(-1, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(-1, 9, 9)
    full = np.uint16(0x3FE)
    ok = np.ones(grids.shape[0], dtype=bool)
    for units in (bits, bits.transpose(0, 2, 1), boxes):
        ok &= np.all(np.bitwise_or.reduce(units, axis=2) == full, axis=1)
    return ok


def read_sudoku_csv(path: Path, min_difficulty: Optional[int]) -> SudokuSplit:
    """Read a published-format CSV (source, question, answer, rating; '.' = blank), in file order.

    Rows rated below `min_difficulty` are skipped (as in the original).  Every kept row is checked: 81
    characters each, question over '.0123456789', answer over '123456789', the answer a valid complete grid
    and the clues equal to it.
    """
    questions: List[str] = []
    answers: List[str] = []
    lines: List[int] = []
    for line, _source, q, a, rating in read_puzzle_csv(path):
        if min_difficulty is not None:
            try:
                r = int(rating)
            except ValueError:
                raise DatasetBuildError(f"rating {rating!r} is not an integer", file=path, row=line) from None
            if r < min_difficulty:
                continue
        if len(q) != 81 or len(a) != 81:
            raise DatasetBuildError(
                f"question and answer must have 81 characters, got {len(q)} and {len(a)}", file=path, row=line)
        questions.append(q)
        answers.append(a)
        lines.append(line)

    n = len(questions)
    if n == 0:
        return SudokuSplit(np.zeros((0, 81), np.uint8), np.zeros((0, 81), np.uint8))
    for line, q, a in zip(lines, questions, answers):
        if not (q.isascii() and a.isascii()):
            raise DatasetBuildError("non-ASCII character in question or answer", file=path, row=line)
    q_bytes = "".join(questions).replace(".", "0").encode("ascii")
    a_bytes = "".join(answers).encode("ascii")
    q_arr = np.frombuffer(q_bytes, dtype=np.uint8).reshape(n, 81) - np.uint8(ord("0"))
    a_arr = np.frombuffer(a_bytes, dtype=np.uint8).reshape(n, 81) - np.uint8(ord("0"))

    def check(bad: np.ndarray, offset: int, what: str) -> None:
        if bad.any():
            raise DatasetBuildError(what, file=path, row=lines[offset + int(np.flatnonzero(bad)[0])])

    chunk = 1 << 17  # validate in blocks to bound temporary memory on multi-million-row files
    for lo in range(0, n, chunk):
        q, a = q_arr[lo:lo + chunk], a_arr[lo:lo + chunk]
        check(np.any(q > 9, axis=1), lo, "question may only hold '.' or digits 0-9")
        check(np.any((a < 1) | (a > 9), axis=1), lo, "answer must be 81 digits 1-9")
        check(~_unit_masks_complete(a.reshape(-1, 9, 9)), lo, "answer is not a valid Sudoku solution")
        check(np.any((q != 0) & (q != a), axis=1), lo, "a clue of the question differs from the answer")
    return SudokuSplit(q_arr, a_arr)


def generate_split_pair(rng: np.random.Generator, n_train: int, n_test: int, min_difficulty: Optional[int],
                        ) -> Tuple[SudokuSplit, SudokuSplit, float]:
    """Generate n_train + n_test distinct puzzles (rating >= min_difficulty) with the numba generator.

    Returns the two splits and the generation time in seconds (JIT compilation included).
    """
    from tasks.sudoku import generator as sudoku_core

    want = n_train + n_test
    threshold = 0 if min_difficulty is None else min_difficulty
    max_candidates = 200 * want + 100_000
    puzzles: List[np.ndarray] = []
    solutions: List[np.ndarray] = []
    ratings: List[np.ndarray] = []
    seen = set()
    tried = 0
    kept = 0
    start = time.perf_counter()
    with tqdm(total=want, desc="Generating sudokus", unit="puzzle") as bar:
        while kept < want:
            if tried >= max_candidates:
                raise DatasetBuildError(
                    f"only {kept} of {want} generated puzzles have rating >= {threshold} after {tried} tries; "
                    "lower --min-difficulty or ask for fewer puzzles")
            # Batch size follows the acceptance rate so far (deterministic: depends only on earlier batches).
            rate = (kept + 1) / (tried + 1)
            batch = int(min(max_candidates - tried, max(64, min(16384, 1.2 * (want - kept) / rate + 32))))
            p, s, r = sudoku_core.generate_puzzles(rng, batch)
            tried += batch
            keep = np.flatnonzero(r >= threshold)
            for i in keep:
                key = p[i].tobytes()
                if key in seen:
                    continue
                seen.add(key)
                puzzles.append(p[i])
                solutions.append(s[i])
                ratings.append(r[i])
                kept += 1
                bar.update(1)
                if kept == want:
                    break
    elapsed = time.perf_counter() - start
    q = np.stack(puzzles).astype(np.uint8) if puzzles else np.zeros((0, 81), np.uint8)
    a = np.stack(solutions).astype(np.uint8) if solutions else np.zeros((0, 81), np.uint8)
    rt = np.asarray(ratings, dtype=np.int64)
    return SudokuSplit(q[:n_train], a[:n_train], rt[:n_train]), SudokuSplit(q[n_train:], a[n_train:], rt[n_train:]), \
        elapsed


# ----------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------

def to_tokens(split: SudokuSplit, num_aug: int, rng: np.random.Generator, desc: str
              ) -> Tuple[np.ndarray, np.ndarray]:
    """Token arrays [(1 + num_aug) * n, 81]: each original followed by its augmentations (digit + 1)."""
    n = len(split)
    per_group = 1 + num_aug
    inputs = np.empty((n, per_group, SEQ_LEN), dtype=np.uint8)
    labels = np.empty((n, per_group, SEQ_LEN), dtype=np.uint8)
    np.add(split.questions, 1, out=inputs[:, 0], dtype=np.uint8)
    np.add(split.answers, 1, out=labels[:, 0], dtype=np.uint8)
    if num_aug:
        block = max(1, (1 << 14) // num_aug)  # groups per vectorised step (about 16k transforms)
        with tqdm(total=n, desc=desc, unit="puzzle") as bar:
            for lo in range(0, n, block):
                hi = min(n, lo + block)
                source, digit_map = draw_sudoku_transforms(rng, (hi - lo) * num_aug)
                for dst, grids in ((inputs, split.questions), (labels, split.answers)):
                    boards = np.repeat(grids[lo:hi], num_aug, axis=0)
                    dst[lo:hi, 1:] = (apply_sudoku_transforms(boards, source, digit_map) + 1).reshape(
                        hi - lo, num_aug, SEQ_LEN)
                bar.update(hi - lo)
    return inputs.reshape(n * per_group, SEQ_LEN), labels.reshape(n * per_group, SEQ_LEN)


# ----------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="build_sudoku_dataset.py",
        description="Build a Sudoku dataset in the HRM format. Source: --input-dir, --generate, or (default) "
                    "the hub repo --source-repo.")
    src = p.add_argument_group("source (choose one)")
    src.add_argument("--source-repo", default=DEFAULT_SOURCE_REPO,
                     help="hub dataset repo holding train.csv/test.csv, used when neither --input-dir nor "
                          "--generate is given; downloaded once into the hub cache (docs/DATASETS.md) [%(default)s]")
    src.add_argument("--input-dir", type=Path, default=None,
                     help="folder with local copies of the published train.csv and test.csv")
    src.add_argument("--generate", type=non_negative_int, default=None, metavar="N",
                     help="generate N training puzzles locally (minimal, unique solution)")
    src.add_argument("--test-size", type=non_negative_int, default=1000, metavar="M",
                     help="with --generate: number of test puzzles [%(default)s]")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help="dataset folder to write [%(default)s]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --output-dir")
    p.add_argument("--subsample-size", type=positive_int, default=None,
                   help="keep a random subset of this many training puzzles")
    p.add_argument("--min-difficulty", type=int, default=None,
                   help="keep puzzles rated at least this (CSV: the rating column; --generate: this solver's "
                        "dead-end count)")
    p.add_argument("--num-aug", type=non_negative_int, default=0,
                   help="augmented copies of each training puzzle [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="random seed of generation, subsampling and "
                                                        "augmentation [%(default)s]")
    p.add_argument("--save-csv", action="store_true",
                   help="with --generate: also write the generated puzzles as <output-dir>/source/{train,test}.csv "
                        "(published format, rating = dead ends)")
    args = p.parse_args(argv)
    if args.input_dir is not None and args.generate is not None:
        p.error("--input-dir and --generate are alternatives; give one")
    if args.save_csv and args.generate is None:
        p.error("--save-csv only applies to --generate")
    return args


def build(args: argparse.Namespace) -> Dict[str, object]:
    started = time.perf_counter()
    check_output_dir(args.output_dir, args.overwrite)
    seeds = np.random.SeedSequence(args.seed).spawn(3)
    gen_rng, sub_rng, aug_rng = (np.random.default_rng(s) for s in seeds)
    report: Dict[str, object] = {}

    if args.generate is not None:
        train, test, gen_seconds = generate_split_pair(gen_rng, args.generate, args.test_size, args.min_difficulty)
        report["generation_seconds"] = gen_seconds
        report["generated"] = args.generate + args.test_size
        all_ratings = np.concatenate([train.ratings, test.ratings])
        report["ratings"] = all_ratings
        print(f"Generated {args.generate + args.test_size} puzzles in {gen_seconds:.1f} s "
              f"({(args.generate + args.test_size) / max(gen_seconds, 1e-9):.0f}/s, JIT compile included)")
        if all_ratings.size:
            print(f"Rating (dead ends of this solver): mean {all_ratings.mean():.2f}, "
                  f"median {np.median(all_ratings):.0f}, max {all_ratings.max()}")
            print(text_histogram(all_ratings, RATING_BINS))
    else:
        paths = source_csv_paths(args.input_dir, args.source_repo)
        train, test = (read_sudoku_csv(paths[name], args.min_difficulty) for name in ("train", "test"))

    idx = subsample_indices(sub_rng, len(train), args.subsample_size)
    if idx is not None:
        train = train.subset(idx)

    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        for name, split, num_aug in (("train", train, args.num_aug), ("test", test, 0)):
            inputs, labels = to_tokens(split, num_aug, aug_rng, desc=f"Augmenting {name}")
            arrays = {"inputs": inputs, "labels": labels, **single_example_structure(len(split), 1 + num_aug)}
            write_split(tmp, name, grid_metadata(VOCAB_SIZE, SEQ_LEN, len(split), task=SudokuCodec.name,
                                                     task_options=SudokuCodec(9).options()), {"all": arrays})
            report[f"{name}_examples"] = inputs.shape[0]
            del inputs, labels, arrays
        write_identifiers(tmp, ["<blank>"])
        if args.save_csv:
            for name, split in (("train", train), ("test", test)):
                rows = [(f"generated-seed{args.seed}",
                         "".join(map(str, q)).replace("0", "."), "".join(map(str, a)), str(int(r)))
                        for q, a, r in zip(split.questions, split.answers, split.ratings)]
                write_puzzle_csv(Path(tmp) / "source" / f"{name}.csv", rows)
        verify_dataset(tmp)
        report["bytes"] = folder_size(tmp)

    report["seconds"] = time.perf_counter() - started
    print(f"Wrote {args.output_dir}: train {report['train_examples']} puzzles ({len(train)} groups), "
          f"test {report['test_examples']} puzzles; {format_bytes(report['bytes'])} in {report['seconds']:.1f} s")
    return report


def main(argv: Optional[Sequence[str]] = None) -> None:
    build(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_command(main))
