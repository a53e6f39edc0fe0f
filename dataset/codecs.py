"""Task codecs (docs/DESIGN.md §6, §9): for each puzzle family, in one place, its token encoding, its symmetry group
with each member's inverse on predictions, and the check an answer must pass.

  Sudoku  N x N grids with R x C boxes (4x4, 6x6, 9x9...): digit d -> token d + 1, 0 pad, 1 blank. Group: digit
          relabelling, permutations of the bands (R rows each) and of the rows inside a band, of the stacks (C
          columns each) and of the columns inside a stack, and the transpose when boxes are square. Check: every
          row, column and box holds each digit once, and the clues are kept.
  Maze    square grids over "# SGo" (wall, open, start, goal, path) -> tokens 1..5, 0 pad. Group: the 8 dihedral
          transforms. Check: walls, S and G kept, the 'o' cells join S to G without strays or dead ends, and the
          route is a shortest one.
  ARC     grids up to 30x30 drawn on a 30x30 canvas: colour c -> token c + 2, 1 end-of-grid marks (the row just
          below the grid and the column just right of it), 0 pad. Group: dihedral transforms and permutations of
          colours 1-9 (0, black, stays); augmented puzzles are named `<task>_t<id>_<colour map>`. No check (any
          grid may be an answer).

Each family's text form (a Sudoku string or pretty grid, a maze's lines, an ARC task file) is read and printed by
the functions at the end, which the solve CLI uses.

Sudoku and maze group members act on token rows as a permutation of the positions and a map of the tokens
(`TokenPermutation`); ARC's act on grids (the canvas is cropped, transformed and drawn again).
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from dataset.common import DIHEDRAL_INVERSE, dihedral_transform
from utils.errors import UserError


@dataclass(frozen=True)
class TokenPermutation:
    """A group member acting on token rows: augmented[..., i] = token_map[original[..., positions[i]]]."""

    positions: np.ndarray  # (seq_len,) the original position of each augmented position
    token_map: np.ndarray  # (vocab_size,)

    def apply(self, rows: np.ndarray) -> np.ndarray:
        return self.token_map[np.asarray(rows)[..., self.positions]]

    def invert(self, rows: np.ndarray) -> np.ndarray:
        """Map rows of the augmented frame (e.g. predictions) back to the original frame."""
        inverse_positions = np.argsort(self.positions)
        inverse_tokens = np.argsort(self.token_map)
        return inverse_tokens[np.asarray(rows)[..., inverse_positions]]


class TaskCodec:
    """A task family's symmetry group on token rows and its answer check, as test-time compute uses them."""

    name: str
    kinds: Tuple[str, ...]  # kinds of group members that act on token rows (test_time.augmentation_kinds)
    no_kinds_because = ""   # why `kinds` is empty, when it is

    def draw(self, rng: np.random.Generator, kinds: Sequence[str]) -> TokenPermutation:
        """A random member of the subgroup made of `kinds` (a subset of self.kinds)."""
        raise NotImplementedError

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """(rows,) bool: whether each answer (tokens, original frame) is a valid answer to its input."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# Sudoku

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

    def __init__(self, size: int, box: Optional[Tuple[int, int]] = None):
        self.size = size
        self.box = box or squarest_box(size)
        self.kinds = ("digits", "bands", "rows", "stacks", "columns") + (
            ("transpose",) if self.box[0] == self.box[1] else ())

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


# ---------------------------------------------------------------------------------------------------------------
# Maze

MAZE_CHARSET = "# SGo"  # char -> index + 1; 0 = pad
MAZE_WALL, MAZE_OPEN, MAZE_START, MAZE_GOAL, MAZE_PATH = 1, 2, 3, 4, 5


def _bfs(passable: np.ndarray, start: Tuple[int, int]) -> np.ndarray:
    """4-neighbourhood distances from `start` over `passable` cells (-1 = unreachable)."""
    dist = np.full(passable.shape, -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    rows, cols = passable.shape
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < rows and 0 <= nc < cols and passable[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


@dataclass
class MazeCheck:
    walls_changed: int          # wall cells of the maze that the answer changed, plus walls added on open cells
    endpoints_kept: bool        # S and G where they were
    path_cells: int             # cells marked 'o'
    path_on_walls: int          # 'o' marks on cells that are not open in the maze
    bad_tokens: int             # answer tokens outside "# SGo" (padding)
    connected: bool             # S reaches G through 'o' cells
    stray_cells: int            # 'o' cells not connected to the S-G route
    dead_ends: int              # 'o' cells with fewer than two marked neighbours (spurs off the route)
    route_length: Optional[int]  # steps of the shortest S-G route through the marked cells
    shortest_length: Optional[int]  # steps of the shortest S-G path of the maze

    @property
    def valid(self) -> bool:
        return (self.walls_changed == 0 and self.endpoints_kept and self.path_on_walls == 0 and self.bad_tokens == 0
                and self.connected and self.stray_cells == 0 and self.dead_ends == 0)

    @property
    def shortest(self) -> bool:
        """A valid path with exactly as many cells as a shortest path (so it is one, without detours)."""
        return (self.valid and self.shortest_length is not None
                and self.path_cells == self.shortest_length - 1)


def check_maze(maze: np.ndarray, answer: np.ndarray) -> MazeCheck:
    """Check a predicted maze (token grid) against the input maze (token grid, no path marked)."""
    maze, answer = np.asarray(maze), np.asarray(answer)
    path = answer == MAZE_PATH
    # What holds without knowing the endpoints.
    cells = dict(walls_changed=int(((maze == MAZE_WALL) != (answer == MAZE_WALL)).sum()),
                 path_cells=int(path.sum()), path_on_walls=int((path & (maze != MAZE_OPEN)).sum()),
                 bad_tokens=int(((answer < 1) | (answer > len(MAZE_CHARSET))).sum()))
    starts, goals = np.argwhere(maze == MAZE_START), np.argwhere(maze == MAZE_GOAL)
    if len(starts) != 1 or len(goals) != 1:  # not a maze (e.g. an evaluation batch's padding row): no valid answer
        return MazeCheck(**cells, endpoints_kept=False, connected=False, stray_cells=cells["path_cells"],
                         dead_ends=0, route_length=None, shortest_length=None)
    start, goal = tuple(int(x) for x in starts[0]), tuple(int(x) for x in goals[0])
    endpoints_kept = bool(answer[start] == MAZE_START and answer[goal] == MAZE_GOAL
                          and (answer == MAZE_START).sum() == 1 and (answer == MAZE_GOAL).sum() == 1)

    route = path.copy()
    route[start] = route[goal] = True
    from_start = _bfs(route, start)
    connected = bool(from_start[goal] > 0)
    from_goal = _bfs(route, goal)
    reached = (from_start >= 0) | (from_goal >= 0)
    shortest = _bfs(maze != MAZE_WALL, start)[goal]
    padded = np.pad(route, 1)
    neighbours = (padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:])
    return MazeCheck(
        **cells,
        endpoints_kept=endpoints_kept,
        connected=connected,
        stray_cells=int((path & ~reached).sum()) if connected else cells["path_cells"],
        dead_ends=int((path & (neighbours < 2)).sum()),
        route_length=int(from_start[goal]) if connected else None,
        shortest_length=int(shortest) if shortest > 0 else None,
    )


class MazeCodec(TaskCodec):
    name = "maze"
    kinds = ("dihedral",)

    def __init__(self, side: int):
        self.side = side

    def draw(self, rng: np.random.Generator, kinds: Sequence[str]) -> TokenPermutation:
        tid = int(rng.integers(0, 8)) if "dihedral" in kinds else 0
        cells = np.arange(self.side * self.side).reshape(self.side, self.side)
        return TokenPermutation(dihedral_transform(cells, tid).reshape(-1).copy(), np.arange(len(MAZE_CHARSET) + 1))

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        grids = (np.asarray(inputs).reshape(-1, self.side, self.side), np.asarray(answers).reshape(-1, self.side,
                                                                                                   self.side))
        return np.array([check_maze(maze, answer).shortest for maze, answer in zip(*grids)], dtype=bool)


# ---------------------------------------------------------------------------------------------------------------
# ARC

ARC_MAX_GRID = 30
ARC_SEQ_LEN = ARC_MAX_GRID * ARC_MAX_GRID
ARC_PAD, ARC_EOS, ARC_COLOUR_OFFSET = 0, 1, 2
ARC_NUM_COLOURS = 10
ARC_VOCAB_SIZE = ARC_NUM_COLOURS + 2
IDENTITY_COLOURS = np.arange(ARC_NUM_COLOURS, dtype=np.uint8)
ORIGINAL_NAME_SEPARATOR = "|||"  # the original HRM builder's separator in augmented puzzle names


def draw_on_canvas(grids: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Draw k grids of one shape (uint8 [k, h, w], colours) at top-left offsets (rows[k], cols[k]) onto 30x30
    canvases with the end-of-grid marks; returns uint8 [k, 900]."""
    k, h, w = grids.shape
    canvas = np.zeros((k, ARC_MAX_GRID, ARC_MAX_GRID), dtype=np.uint8)
    idx = np.arange(k)[:, None, None]
    r = rows[:, None, None] + np.arange(h)[None, :, None]
    c = cols[:, None, None] + np.arange(w)[None, None, :]
    canvas[idx, r, c] = grids + ARC_COLOUR_OFFSET
    below = rows + h
    sel = np.flatnonzero(below < ARC_MAX_GRID)
    if sel.size:
        canvas[sel[:, None], below[sel][:, None], cols[sel][:, None] + np.arange(w)[None, :]] = ARC_EOS
    right = cols + w
    sel = np.flatnonzero(right < ARC_MAX_GRID)
    if sel.size:
        canvas[sel[:, None], rows[sel][:, None] + np.arange(h)[None, :], right[sel][:, None]] = ARC_EOS
    return canvas.reshape(k, ARC_SEQ_LEN)


def encode_arc_grid(grid: np.ndarray) -> np.ndarray:
    """One grid on the canvas at the top-left corner, as the builder draws test inputs: (900,) tokens."""
    grid = np.asarray(grid, dtype=np.uint8)
    return draw_on_canvas(grid[None], np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))[0]


def crop_canvas(tokens: np.ndarray) -> np.ndarray:
    """The grid (colours) drawn on a well-formed canvas (900 or 30x30 tokens): the bounding box of the colour
    tokens. Only for canvases written by a builder (pad or end marks inside the box would wrap around); model
    predictions are cropped by `crop_predictions`' stricter rule."""
    canvas = np.asarray(tokens).reshape(ARC_MAX_GRID, ARC_MAX_GRID)
    rows = np.flatnonzero(np.any(canvas >= ARC_COLOUR_OFFSET, axis=1))
    cols = np.flatnonzero(np.any(canvas >= ARC_COLOUR_OFFSET, axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    return (canvas[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] - ARC_COLOUR_OFFSET).astype(np.uint8)


def crop_predictions(preds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 (B, 900) token ids -> (heights, widths) of each row's grid: the largest-area rectangle anchored at
    the top-left corner whose cells are all colour tokens (fewer rows on equal areas), i.e. up to the model's
    end-of-grid marks; 0 x 0 when there is none (the top-left cell is not a colour)."""
    canvas = np.asarray(preds, dtype=np.uint8).reshape(-1, ARC_MAX_GRID, ARC_MAX_GRID)
    colour = (canvas - np.uint8(ARC_COLOUR_OFFSET)) < ARC_NUM_COLOURS  # pad and end marks wrap around to >= 254
    # Per canvas row: the length of the colour run starting at column 0; a rectangle of r+1 rows is as wide as
    # the narrowest of its rows' runs.
    runs = np.where(colour.all(axis=2), ARC_MAX_GRID, colour.argmin(axis=2))
    widths = np.minimum.accumulate(runs, axis=1)
    areas = widths * np.arange(1, ARC_MAX_GRID + 1)
    best = areas.argmax(axis=1)  # the first maximum: fewest rows
    valid = areas.max(axis=1) > 0
    heights = np.where(valid, best + 1, 0)
    widths = np.where(valid, widths[np.arange(len(best)), best], 0)
    return heights, widths


def crop_prediction(tokens: np.ndarray) -> np.ndarray:
    """One predicted canvas -> its grid (colours), possibly 0 x 0 (see `crop_predictions`)."""
    canvas = np.asarray(tokens, dtype=np.uint8).reshape(ARC_MAX_GRID, ARC_MAX_GRID)
    (h,), (w,) = crop_predictions(canvas[None])
    return (canvas[:h, :w] - ARC_COLOUR_OFFSET).astype(np.uint8)


def augmentation_name(task: str, tid: int, colours: np.ndarray) -> str:
    if tid == 0 and np.array_equal(colours, IDENTITY_COLOURS):
        return task
    return f"{task}_t{tid}_{''.join(str(int(c)) for c in colours)}"


def parse_augmentation_name(name: str) -> Tuple[str, int, np.ndarray]:
    """`<task>_t<id>_<10 digits>` -> (task, dihedral id, colour map); a plain task name -> identity.

    Also reads the original HRM builder's names, `<task>|||t<id>|||<10 digits>` (same transform semantics), so
    predictions on datasets built by it map back too.
    """
    for separator in ("_", ORIGINAL_NAME_SEPARATOR):
        parts = name.rsplit(separator, 2)
        if len(parts) == 3 and len(parts[1]) == 2 and parts[1][0] == "t" and parts[1][1].isdigit() \
                and len(parts[2]) == 10 and parts[2].isdigit():
            return parts[0], int(parts[1][1]), np.array([int(c) for c in parts[2]], dtype=np.uint8)
    return name, 0, IDENTITY_COLOURS.copy()


def apply_augmentation(grid: np.ndarray, tid: int, colours: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(dihedral_transform(colours[np.asarray(grid)], tid))


def invert_augmentation(grid: np.ndarray, tid: int, colours: np.ndarray) -> np.ndarray:
    """Map a grid of an augmented puzzle back to the original task's colours and orientation."""
    inverse = np.argsort(colours).astype(np.uint8)
    return np.ascontiguousarray(inverse[dihedral_transform(np.asarray(grid), DIHEDRAL_INVERSE[tid])])


class ArcCodec(TaskCodec):
    """ARC's group (dihedral transforms, colour permutations) acts on grids, and an augmented task is a puzzle of
    its own, with its own identifier: the test split holds every test input under each augmentation, and
    evaluators=[arc@ARC] votes over them. So no member acts on token rows with the row's identifier."""

    name = "arc"
    kinds = ()
    no_kinds_because = ("an augmented ARC task is a puzzle of its own, with its own identifier: the test split "
                        "already holds every test input under its augmentations, voted by "
                        "evaluators=[{name: arc@ARC}]")

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        return np.ones(len(answers), dtype=bool)


# ---------------------------------------------------------------------------------------------------------------


def codec_for(vocab_size: int, seq_len: int) -> Optional[TaskCodec]:
    """The codec of the builder that makes datasets of this vocabulary and sequence length, if any."""
    side = math.isqrt(seq_len)
    square = side * side == seq_len
    if square and vocab_size == side + 2 and 1 < side <= 35:
        return SudokuCodec(side)
    if seq_len == ARC_SEQ_LEN and vocab_size == ARC_VOCAB_SIZE:
        return ArcCodec()
    if square and vocab_size == len(MAZE_CHARSET) + 1:
        return MazeCodec(side)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Text forms: puzzles as people write them (the solve CLI reads and prints these)

DIGIT_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # Sudoku cell values 1..35 as one character


class PuzzleFormatError(UserError, ValueError):
    """A puzzle in text form that cannot be read; the message says what is wrong."""


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
    cells = [c for c in text if not c.isspace() and c not in "|+-"]
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


def parse_maze(text: str, side: Optional[int] = None) -> np.ndarray:
    """A maze text grid over "# SGo" (lines of equal length, or one line of side*side characters) -> token grid.

    Lines shorter than the grid (trailing spaces lost by an editor) are padded with open cells. 'o' marks in the
    input (a solved maze) are read as open cells. Needs exactly one 'S' and one 'G'.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise PuzzleFormatError("the maze is empty")
    if len(lines) == 1:  # the CSV form: one row-major string
        n = math.isqrt(len(lines[0]))
        if n * n != len(lines[0]):
            raise PuzzleFormatError(f"a one-line maze needs a square number of characters, got {len(lines[0])}")
        lines = [lines[0][i * n:(i + 1) * n] for i in range(n)]
    n = side if side is not None else len(lines)
    if len(lines) != n:
        raise PuzzleFormatError(f"the maze has {len(lines)} lines, the model expects {n} lines of {n} characters")
    widest = max(len(line) for line in lines)
    if widest > n:
        raise PuzzleFormatError(f"a maze line has {widest} characters, the model expects {n}")
    grid = np.empty((n, n), dtype=np.int64)
    for r, line in enumerate(lines):
        line = line.ljust(n)
        for c, ch in enumerate(line):
            index = MAZE_CHARSET.find(ch)
            if index < 0:
                raise PuzzleFormatError(f"maze line {r + 1}, column {c + 1}: {ch!r} is not one of {MAZE_CHARSET!r}")
            grid[r, c] = index + 1
    grid[grid == MAZE_PATH] = MAZE_OPEN
    for token, what in ((MAZE_START, "start 'S'"), (MAZE_GOAL, "goal 'G'")):
        count = int((grid == token).sum())
        if count != 1:
            raise PuzzleFormatError(f"the maze needs exactly one {what}, it has {count}")
    return grid


def format_maze(grid: np.ndarray) -> str:
    """Token grid -> text lines ('?' for tokens outside the charset, e.g. padding)."""
    return "\n".join("".join(MAZE_CHARSET[v - 1] if 1 <= v <= len(MAZE_CHARSET) else "?" for v in row)
                     for row in np.asarray(grid))


def parse_arc_grid(value, where: str) -> np.ndarray:
    """A grid of an ARC task file (a list of rows of colours 0-9, at most 30x30), checked; `where` names it."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise PuzzleFormatError(f"{where}: a grid must be a non-empty list of rows")
    width = len(value[0])
    if width == 0 or any(len(row) != width for row in value):
        raise PuzzleFormatError(f"{where}: grid rows must be non-empty and of equal length")
    if len(value) > ARC_MAX_GRID or width > ARC_MAX_GRID:
        raise PuzzleFormatError(f"{where}: the grid is {len(value)}x{width}, larger than "
                                f"{ARC_MAX_GRID}x{ARC_MAX_GRID}")
    for r, row in enumerate(value):
        for c, x in enumerate(row):
            if type(x) is not int or not 0 <= x <= 9:
                raise PuzzleFormatError(f"{where}: colour {x!r} at row {r}, column {c} is not an integer 0-9")
    return np.array(value, dtype=np.int64)


def parse_arc_task(text: str) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """The test pairs of an ARC task JSON: [(input grid, expected output grid or None)]."""
    try:
        task = json.loads(text)
    except json.JSONDecodeError as err:
        raise PuzzleFormatError(f"the ARC task is not valid JSON: {err.msg} (line {err.lineno}, column "
                                f"{err.colno})") from None
    if not isinstance(task, dict) or not isinstance(task.get("test"), list) or not task["test"]:
        raise PuzzleFormatError('an ARC task must be a JSON object with a non-empty "test" list of {"input": grid}')
    pairs = []
    for k, pair in enumerate(task["test"]):
        if not isinstance(pair, dict) or "input" not in pair:
            raise PuzzleFormatError(f'test[{k}] must be an object with an "input" grid')
        expected = parse_arc_grid(pair["output"], f"test[{k}].output") if "output" in pair else None
        pairs.append((parse_arc_grid(pair["input"], f"test[{k}].input"), expected))
    return pairs


def format_arc(grid: np.ndarray) -> str:
    """JSON rows, one per line."""
    rows = [json.dumps(row) for row in np.asarray(grid).tolist()]
    return "[" + ",\n ".join(rows) + "]" if rows else "[]"
