"""Generate small Sudoku datasets (4x4 with 2x2 boxes, 6x6 with 2x3 boxes, ...) in the HRM format.

A real reasoning task that trains in minutes on a CPU: every puzzle has exactly one solution and is minimal
(no clue can be removed without losing uniqueness), so most cells are blank and must be deduced. Held-out
puzzles share no input with training ones.

    python dataset/build_mini_sudoku_dataset.py --output-dir data/sudoku6-2k --box-rows 2 --box-cols 3 \
        --generate 2000 --test-size 200

`--max-blank-fraction 0.5` stops removing clues once half of the cells are blank (still a unique solution, no
longer minimal): easier puzzles, faster to generate; `make demo` uses them.
"""
import argparse
import itertools
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from dataset.builder_common import (
    DatasetBuildError,
    atomic_output_dir,
    check_output_dir,
    grid_metadata,
    non_negative_int,
    positive_int,
    single_example_structure,
    write_identifiers,
    write_split,
)
from tasks.sudoku.codec import SudokuCodec
from utils.cli import run_command


class MiniSudoku:
    """Bitmask backtracking solver for an (R·C)x(R·C) grid with RxC boxes; 0 = blank, digits 1..R·C."""

    def __init__(self, box_rows: int, box_cols: int):
        self.box_rows, self.box_cols = box_rows, box_cols
        self.size = box_rows * box_cols
        self.all_digits = (1 << self.size) - 1
        n = self.size
        self.cell_row = [c // n for c in range(n * n)]
        self.cell_col = [c % n for c in range(n * n)]
        self.cell_box = [(c // n) // box_rows * box_rows + (c % n) // box_cols for c in range(n * n)]

    def count_solutions(self, grid: Sequence[int], limit: int = 2, rng: Optional[np.random.Generator] = None,
                        out: Optional[List[int]] = None) -> int:
        """Number of solutions, counting up to `limit`. With `out`, the first solution found is written there;
        with `rng`, digits are tried in random order (a random full grid from an empty one)."""
        n = self.size
        rows, cols, boxes = [0] * n, [0] * n, [0] * n
        cells = list(grid)
        for c, d in enumerate(cells):
            if d:
                bit = 1 << (d - 1)
                r, k, b = self.cell_row[c], self.cell_col[c], self.cell_box[c]
                if (rows[r] | cols[k] | boxes[b]) & bit:
                    return 0  # contradictory clues
                rows[r] |= bit
                cols[k] |= bit
                boxes[b] |= bit
        blanks = [c for c, d in enumerate(cells) if d == 0]
        found = 0

        def solve() -> None:
            nonlocal found
            # Most-constrained blank cell first keeps the search tiny.
            best, best_free, best_count = -1, 0, n + 1
            for c in blanks:
                if cells[c] == 0:
                    free = self.all_digits & ~(rows[self.cell_row[c]] | cols[self.cell_col[c]]
                                               | boxes[self.cell_box[c]])
                    count = bin(free).count("1")
                    if count < best_count:
                        best, best_free, best_count = c, free, count
                        if count <= 1:
                            break
            if best < 0:
                found += 1
                if out is not None and found == 1:
                    out[:] = cells
                return
            digits = [d for d in range(1, n + 1) if best_free >> (d - 1) & 1]
            if rng is not None:
                digits = [digits[i] for i in rng.permutation(len(digits))]
            r, k, b = self.cell_row[best], self.cell_col[best], self.cell_box[best]
            for d in digits:
                bit = 1 << (d - 1)
                cells[best] = d
                rows[r] |= bit
                cols[k] |= bit
                boxes[b] |= bit
                solve()
                rows[r] &= ~bit
                cols[k] &= ~bit
                boxes[b] &= ~bit
                cells[best] = 0
                if found >= limit:
                    return

        solve()
        return found

    def is_solution(self, grid: Sequence[int]) -> bool:
        g = np.asarray(grid).reshape(self.size, self.size)
        want = set(range(1, self.size + 1))
        boxes = g.reshape(self.size // self.box_rows, self.box_rows, self.size // self.box_cols, self.box_cols)
        return (all(set(row) == want for row in g) and all(set(col) == want for col in g.T)
                and all(set(boxes[i, :, j, :].ravel()) == want for i in range(boxes.shape[0])
                        for j in range(boxes.shape[2])))

    def generate(self, rng: np.random.Generator, max_blanks: Optional[int] = None) -> Tuple[List[int], List[int]]:
        """A random puzzle with a unique solution, and that solution. Clues are removed in random order while the
        solution stays unique: down to a minimal puzzle (no clue can go), or until `max_blanks` cells are blank."""
        solution: List[int] = []
        self.count_solutions([0] * self.size ** 2, limit=1, rng=rng, out=solution)
        puzzle = list(solution)
        blanks = 0
        for cell in rng.permutation(len(puzzle)):
            if max_blanks is not None and blanks >= max_blanks:
                break
            digit, puzzle[cell] = puzzle[cell], 0
            if self.count_solutions(puzzle, limit=2) != 1:
                puzzle[cell] = digit  # this clue is needed for uniqueness
            else:
                blanks += 1
        return puzzle, solution


def all_solutions(sudoku: MiniSudoku) -> List[List[int]]:
    """Every solution grid (for the tiny sizes whose puzzles can be counted)."""
    found: List[List[int]] = []

    def extend(cells: List[int], cell: int) -> None:
        if cell == len(cells):
            found.append(list(cells))
            return
        for digit in range(1, sudoku.size + 1):
            cells[cell] = digit
            if sudoku.count_solutions(cells[:cell + 1] + [0] * (len(cells) - cell - 1), limit=1):
                extend(cells, cell + 1)
        cells[cell] = 0

    extend([0] * sudoku.size ** 2, 0)
    return found


def count_puzzles(sudoku: MiniSudoku, max_blanks: Optional[int] = None) -> int:
    """How many distinct puzzles `MiniSudoku.generate` can make: those with a unique solution that are minimal, or
    (with max_blanks) have exactly max_blanks blanks (or fewer, when minimal before). Exact, by enumerating every
    set of clues of every solution: for grids of at most 9 cells."""
    cells = sudoku.size ** 2
    total = 0
    for solution in all_solutions(sudoku):
        for kept in itertools.product((False, True), repeat=cells):
            puzzle = [d if keep else 0 for d, keep in zip(solution, kept)]
            blanks = cells - sum(kept)
            if (max_blanks is not None and blanks > max_blanks) or sudoku.count_solutions(puzzle) != 1:
                continue
            minimal = all(sudoku.count_solutions(puzzle[:c] + [0] + puzzle[c + 1:]) != 1
                          for c in range(cells) if puzzle[c])
            total += minimal or blanks == max_blanks
    return total


COUNTED_CELLS = 9        # grids this small have their puzzles counted exactly before generating
LARGEST_SIZE = 9         # the pure-Python uniqueness checks take hours per minimal puzzle beyond 9x9
STALLED_DRAWS = 2000     # draws without a new puzzle after which fewer puzzles than asked are taken to exist


def generate_unique_puzzles(box_rows: int, box_cols: int, count: int, seed: int, progress: bool = True,
                            max_blanks: Optional[int] = None, asked: str = "") -> Tuple[np.ndarray, np.ndarray]:
    """`count` puzzles with pairwise different inputs: (puzzles, solutions), each (count, size²) uint8.
    Minimal puzzles by default; with `max_blanks`, puzzles with (at most) that many blank cells. Asking for more
    than exist is a DatasetBuildError saying how many there are (`asked` says what was asked, for it)."""
    sudoku = MiniSudoku(box_rows, box_cols)
    size = sudoku.size
    if size > LARGEST_SIZE:
        raise DatasetBuildError(f"{size}x{size} grids ({box_rows}x{box_cols} boxes) are too large for this generator "
                                f"(pure-Python uniqueness checks: hours per puzzle); use boxes of at most "
                                f"{LARGEST_SIZE} cells, or dataset/build_sudoku_dataset.py for 9x9")
    asked = asked or f"{count} puzzles"
    if size * size <= COUNTED_CELLS:
        available = count_puzzles(sudoku, max_blanks)
        if count > available:
            raise DatasetBuildError(f"only {available} distinct {size}x{size} puzzles with {box_rows}x{box_cols} "
                                    f"boxes exist, and {asked} were asked for; ask for at most {available}")
    rng = np.random.default_rng(seed)
    seen, puzzles, solutions = set(), [], []
    draws_without_new = 0
    with tqdm(total=count, desc=f"{size}x{size} sudoku", disable=not progress) as bar:
        while len(puzzles) < count:
            puzzle, solution = sudoku.generate(rng, max_blanks)
            if tuple(puzzle) in seen:
                draws_without_new += 1
                if draws_without_new >= STALLED_DRAWS:
                    raise DatasetBuildError(f"{asked} were asked for, but no new {size}x{size} puzzle appeared in "
                                            f"{STALLED_DRAWS} draws after {len(puzzles)}: about {len(puzzles)} "
                                            f"distinct ones seem to exist; ask for fewer")
                continue
            draws_without_new = 0
            seen.add(tuple(puzzle))
            puzzles.append(puzzle)
            solutions.append(solution)
            bar.update(1)
    return np.array(puzzles, dtype=np.uint8), np.array(solutions, dtype=np.uint8)


def build(output_dir: str, box_rows: int, box_cols: int, train_size: int, test_size: int, seed: int,
          max_blank_fraction: Optional[float] = None, overwrite: bool = False) -> None:
    """Write train_size + test_size puzzles (held-out inputs all differ from training ones). Minimal puzzles by
    default (~72% blank for 6x6); with max_blank_fraction, clues are removed only down to that fraction."""
    check_output_dir(output_dir, overwrite)
    size = box_rows * box_cols
    max_blanks = None if max_blank_fraction is None else int(max_blank_fraction * size * size)
    puzzles, solutions = generate_unique_puzzles(
        box_rows, box_cols, train_size + test_size, seed, max_blanks=max_blanks,
        asked=f"{train_size + test_size} puzzles ({train_size} training + {test_size} held-out)")
    # Same token mapping as the 9x9 builder: 0 pad, 1 blank, digit d -> d + 1.
    splits = {"train": slice(0, train_size), "test": slice(train_size, train_size + test_size)}
    codec = SudokuCodec(size, (box_rows, box_cols))
    with atomic_output_dir(output_dir, overwrite) as tmp_dir:
        for split, rows in splits.items():
            num = rows.stop - rows.start
            arrays = {"inputs": puzzles[rows] + 1, "labels": solutions[rows] + 1, **single_example_structure(num, 1)}
            metadata = grid_metadata(vocab_size=size + 2, seq_len=size * size, total_groups=num, task=codec.name,
                                     task_options=codec.options())
            write_split(tmp_dir, split, metadata, {"all": arrays})
        write_identifiers(tmp_dir, ["<blank>"])
    blanks = (puzzles == 0).mean()
    print(f"wrote {train_size} train / {test_size} test {size}x{size} puzzles to {output_dir} "
          f"({blanks:.0%} of cells blank)")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--box-rows", type=positive_int, default=2)
    parser.add_argument("--box-cols", type=positive_int, default=3)
    parser.add_argument("--generate", type=positive_int, default=2000, help="number of training puzzles")
    parser.add_argument("--test-size", type=non_negative_int, default=200, help="number of held-out puzzles")
    parser.add_argument("--max-blank-fraction", type=float, default=None,
                        help="stop removing clues once this fraction of cells is blank (default: minimal puzzles); "
                             "uniqueness always holds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --output-dir")
    args = parser.parse_args(argv)
    if args.max_blank_fraction is not None and not 0 <= args.max_blank_fraction <= 1:
        raise DatasetBuildError(f"--max-blank-fraction {args.max_blank_fraction} must be between 0 and 1")
    build(args.output_dir, args.box_rows, args.box_cols, args.generate, args.test_size, args.seed,
          args.max_blank_fraction, args.overwrite)


if __name__ == "__main__":
    sys.exit(run_command(main))
