"""Sudoku's codec (docs/DESIGN.md §9): N x N grids with R x C boxes (4x4, 6x6, 9x9...), digit d -> token d + 1, 0 pad,
1 blank. Group: digit relabelling, permutations of the bands (R rows each) and of the rows inside a band, of the
stacks (C columns each) and of the columns inside a stack, and the transpose when boxes are square. Check: every
row, column and box holds each digit once, and the clues are kept. Text form: one string of N*N cells or a pretty
grid ('.' or '0' for blanks).

The builders (build.py, build_mini.py) draw their augmentations with the same transforms (`draw_sudoku_transforms`),
so a dataset's augmented copies and test-time augmentation are the same group.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from dataset.common import PuzzleDatasetMetadata
from tasks.base import PuzzleFormatError, SolveRequest, TaskCodec, TaskError, TokenPermutation, square_side, yes

SUDOKU_PAD, SUDOKU_BLANK = 0, 1  # digit d -> token d + 1


def squarest_box(size: int) -> Tuple[int, int]:
    """(box rows, box columns) of an N x N Sudoku: the most square split with rows <= columns (9 -> 3x3, 6 -> 2x3,
    4 -> 2x2), the builders' boxes."""
    rows = max(d for d in range(1, math.isqrt(size) + 1) if size % d == 0)
    return rows, size // rows


def draw_sudoku_transforms(rng: np.random.Generator, n: int, box: Tuple[int, int] = (3, 3),
                           kinds: Sequence[str] = ("digits", "bands", "rows", "stacks", "columns", "transpose")
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """`n` random validity-preserving transforms of N x N Sudokus with `box` boxes.

    Returns (source, digit_map): source[k] (int [N*N]) gives, for each cell of the transformed grid, the cell of
    the original it comes from; digit_map[k] (uint8 [N+1]) relabels digits (0 = blank stays 0). Each transform
    is: transpose with probability 1/2 (square boxes only), then permute the bands and the rows inside each band,
    the stacks and the columns inside each stack, then relabel the digits; `kinds` leaves out the others (the
    random draws stay the same, so the 9x9 builder's datasets do not change).
    """
    box_rows, box_cols = box
    size = box_rows * box_cols
    digit_map = np.zeros((n, size + 1), dtype=np.uint8)
    digit_map[:, 1:] = rng.permuted(np.tile(np.arange(1, size + 1, dtype=np.uint8), (n, 1)), axis=1)
    transpose = rng.random(n) < 0.5 if box_rows == box_cols else np.zeros(n, dtype=bool)

    def line_permutation(block: int, move_blocks: bool, move_inside: bool) -> np.ndarray:
        blocks = rng.permuted(np.tile(np.arange(size // block), (n, 1)), axis=1)
        inner = rng.permuted(np.tile(np.arange(block), (n, size // block, 1)), axis=2)
        if not move_blocks:
            blocks = np.tile(np.arange(size // block), (n, 1))
        if not move_inside:
            inner = np.tile(np.arange(block), (n, size // block, 1))
        return (blocks[:, :, None] * block + inner).reshape(n, size)

    rows = line_permutation(box_rows, "bands" in kinds, "rows" in kinds).astype(np.intp)
    cols = line_permutation(box_cols, "stacks" in kinds, "columns" in kinds).astype(np.intp)
    source = (rows[:, :, None] * size + cols[:, None, :]).reshape(n, size * size)  # of the (maybe transposed) grid
    if "transpose" in kinds:
        transposed_cell = np.arange(size * size).reshape(size, size).T.reshape(-1)  # cell (r, c) -> cell (c, r)
        source[transpose] = transposed_cell[source[transpose]]
    if "digits" not in kinds:
        digit_map[:] = np.arange(size + 1, dtype=np.uint8)
    return source, digit_map


def apply_sudoku_transforms(grid: np.ndarray, source: np.ndarray, digit_map: np.ndarray) -> np.ndarray:
    """Apply transforms (from `draw_sudoku_transforms`) to digit grids: `grid` is one grid [N*N] or one grid per
    transform [n, N*N]; returns [n, N*N] uint8."""
    grid = np.asarray(grid)
    moved = grid[source] if grid.ndim == 1 else np.take_along_axis(grid, source, axis=1)
    return np.take_along_axis(digit_map, moved.astype(np.intp), axis=1)


@dataclass
class SudokuCheck:
    clues: int
    clues_changed: int
    rows_valid: int
    cols_valid: int
    boxes_valid: int
    size: int
    complete: bool            # every cell holds a digit

    @property
    def clues_kept(self) -> bool:
        return self.clues_changed == 0

    @property
    def valid(self) -> bool:
        return (self.complete and self.clues_kept and self.rows_valid == self.cols_valid == self.boxes_valid
                == self.size)


def _sudoku_units(size: int, box: Tuple[int, int]) -> np.ndarray:
    """(3N, N) cell indices of every row, column and box."""
    cells = np.arange(size * size).reshape(size, size)
    box_rows, box_cols = box
    boxes = cells.reshape(size // box_rows, box_rows, size // box_cols, box_cols).transpose(0, 2, 1, 3)
    return np.concatenate([cells, cells.T, boxes.reshape(size, size)])


def check_sudoku(puzzle: np.ndarray, answer: np.ndarray, box: Tuple[int, int]) -> SudokuCheck:
    """Check an answer grid (digits; 0 or negative = not a digit) against the rules and the puzzle's clues."""
    puzzle, answer = np.asarray(puzzle), np.asarray(answer)
    size = puzzle.shape[0]
    units = _sudoku_units(size, box).reshape(3, size, size)
    flat = answer.reshape(-1)
    want = set(range(1, size + 1))
    full = [sum(set(flat[unit].tolist()) == want for unit in kind) for kind in units]
    clue_mask = puzzle > 0
    return SudokuCheck(clues=int(clue_mask.sum()), clues_changed=int((clue_mask & (answer != puzzle)).sum()),
                       rows_valid=full[0], cols_valid=full[1], boxes_valid=full[2], size=size,
                       complete=bool(np.all((answer >= 1) & (answer <= size))))


class SudokuCodec(TaskCodec):
    name = "sudoku"
    title = "Sudoku"

    def __init__(self, size: int, box: Optional[Tuple[int, int]] = None):
        self.size = size
        self.box = tuple(box) if box is not None else squarest_box(size)
        self.kinds = ("digits", "bands", "rows", "stacks", "columns") + (
            ("transpose",) if self.box[0] == self.box[1] else ())

    @staticmethod
    def _fits(metadata: PuzzleDatasetMetadata) -> Optional[int]:
        """The side of the Sudoku a dataset of this vocabulary and length holds, None when it holds none."""
        side = square_side(metadata.seq_len)
        return side if side is not None and 1 < side <= len(DIGIT_CHARS) and metadata.vocab_size == side + 2 \
            else None

    @classmethod
    def from_metadata(cls, metadata: PuzzleDatasetMetadata) -> "SudokuCodec":
        side = cls._fits(metadata)
        if side is None:
            raise TaskError(f"a Sudoku dataset has vocab_size N + 2 and seq_len N x N; this one has vocab_size "
                            f"{metadata.vocab_size} and seq_len {metadata.seq_len}")
        box = (metadata.task_options or {}).get("box")
        return cls(side, sudoku_box_shape(side, f"{box[0]}x{box[1]}") if box is not None else None)

    @classmethod
    def recognises(cls, metadata: PuzzleDatasetMetadata) -> bool:
        # The original builder writes one puzzle identifier (the blank one) and 9x9 grids; any N x N is accepted.
        return cls._fits(metadata) is not None and metadata.num_puzzle_identifiers == 1

    def options(self) -> dict:
        return {"box": list(self.box)}

    def draw(self, rng: np.random.Generator, kinds: Sequence[str]) -> TokenPermutation:
        source, digit_map = draw_sudoku_transforms(rng, 1, self.box, kinds)
        token_map = np.concatenate([[SUDOKU_PAD], digit_map[0].astype(np.int64) + 1])  # blank (1) stays
        return TokenPermutation(source[0], token_map)

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        digits = np.asarray(answers).astype(np.int64) - 1  # tokens 2..N+1 -> 1..N; blank and pad -> 0, -1
        clues = np.asarray(inputs).astype(np.int64) - 1
        units = _sudoku_units(self.size, self.box)  # (3N, N)
        in_units = digits[:, units]  # (rows, 3N, N)
        counts = np.stack([(in_units == d).sum(-1) for d in range(1, self.size + 1)], -1)  # (rows, 3N, N)
        every_digit_once = (counts == 1).all(axis=(1, 2))
        clues_kept = np.where(clues > 0, digits == clues, True).all(-1)
        return every_digit_once & clues_kept

    # -- text form ----------------------------------------------------------------------------------------------

    @classmethod
    def reads_text(cls, text: str, file_name: Optional[str]) -> bool:
        cells = _cells(text)
        return bool(cells) and all(c in "._0" or c.upper() in DIGIT_CHARS for c in cells)

    @classmethod
    def text_seq_len(cls, text: str) -> Optional[int]:
        return len(_cells(text))

    def solve_text(self, request: SolveRequest) -> bool:
        side, say = self.size, request.say
        box = sudoku_box_shape(side, request.options.get("box")) if request.options.get("box") else self.box
        codec = SudokuCodec(side, box)
        puzzle = parse_sudoku(request.text, side)
        before = check_sudoku(puzzle, puzzle, box)
        prediction = request.predict((puzzle + 1).reshape(1, -1), [request.blank_identifier], request.augmentations,
                                     codec)
        tokens = prediction.preds[0].reshape(side, side)
        answer = np.where(tokens >= 2, tokens - 1, -1)  # pad/blank tokens are not digits

        say(f"puzzle ({side}x{side}, {before.clues} clues):")
        say(format_sudoku(puzzle, box))
        say("answer:")
        say(format_sudoku(answer, box))
        say(f"answer string: {sudoku_to_string(answer)}")
        check = check_sudoku(puzzle, answer, box)
        say(f"clues kept: {yes(check.clues_kept)}" + ("" if check.clues_kept else
                                                       f" ({check.clues_changed} of {check.clues} changed)"))
        say(f"rows valid: {check.rows_valid}/{side}, columns valid: {check.cols_valid}/{side}, "
            f"boxes valid: {check.boxes_valid}/{side}")
        request.say_halting(float(prediction.q_halt[0]), int(prediction.candidates[0]), prediction.variants)
        say(f"valid solution: {yes(check.valid)}")
        return check.valid


# ---------------------------------------------------------------------------------------------------------------
# Text forms: puzzles as people write them

DIGIT_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # Sudoku cell values 1..35 as one character


def sudoku_box_shape(size: int, box: Optional[str] = None) -> Tuple[int, int]:
    """(box rows, box columns): from "RxC", else the most square split with rows <= columns (9 -> 3x3, 6 -> 2x3)."""
    if box is not None:
        try:
            rows, cols = (int(part) for part in box.lower().split("x"))
        except ValueError:
            raise PuzzleFormatError(f"box={box!r} is not of the form RxC (e.g. box=2x3)") from None
        if rows <= 0 or cols <= 0 or rows * cols != size:
            raise PuzzleFormatError(f"box={box}: {rows}x{cols} boxes do not tile a {size}x{size} Sudoku")
        return rows, cols
    return squarest_box(size)


def parse_sudoku(text: str, size: Optional[int] = None) -> np.ndarray:
    """A Sudoku as an (N, N) array of digits, 0 = blank.

    Accepts one string of N*N cells or a pretty grid: whitespace and the separators `|`, `+`, `-` are ignored;
    '.', '0' and '_' are blanks; 1-9 then A-Z (10..35) are digits.
    """
    cells = _cells(text)
    n = len(cells)
    side = math.isqrt(n)
    if n == 0:
        raise PuzzleFormatError("the Sudoku is empty")
    if size is not None and n != size * size:
        raise PuzzleFormatError(f"the Sudoku has {n} cells, the model expects {size * size} ({size}x{size})")
    if side * side != n:
        raise PuzzleFormatError(f"the Sudoku has {n} cells, not a square number")
    digits = np.zeros(n, dtype=np.int64)
    for i, c in enumerate(cells):
        if c in "._0":
            continue
        value = DIGIT_CHARS.find(c.upper()) + 1
        if value <= 0 or value > side:
            raise PuzzleFormatError(f"cell {i + 1} holds {c!r}: a {side}x{side} Sudoku takes '.', '0' or digits 1-"
                             f"{DIGIT_CHARS[side - 1]}")
        digits[i] = value
    return digits.reshape(side, side)


def sudoku_to_string(grid: np.ndarray) -> str:
    """Digits (0 = blank, -1 = not a digit) -> one string, '.' for blanks and '?' for non-digits."""
    return "".join("." if v == 0 else "?" if v < 0 else DIGIT_CHARS[v - 1] for v in np.asarray(grid).reshape(-1))


def format_sudoku(grid: np.ndarray, box: Tuple[int, int]) -> str:
    """A pretty grid with box separators."""
    grid = np.asarray(grid)
    size = grid.shape[0]
    rows, cols = box
    text = sudoku_to_string(grid)
    lines = []
    rule = "+".join("-" * (2 * cols + 1) for _ in range(size // cols))
    for r in range(size):
        if r and r % rows == 0:
            lines.append(rule)
        row = text[r * size:(r + 1) * size]
        lines.append("|".join(" " + " ".join(row[c:c + cols]) + " " for c in range(0, size, cols)).rstrip())
    return "\n".join(lines)


def _cells(text: str):
    """The cells of a Sudoku text: everything but whitespace and the separators |, +, -."""
    return [c for c in text if not c.isspace() and c not in "|+-"]
