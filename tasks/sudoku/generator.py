"""A fast 9x9 Sudoku solver and puzzle generator (numba; bitmask constraint propagation + depth-first search).

Grids are flat int8 arrays of 81 cells in row-major order, 0 = blank and 1..9 = digits.

Solver: each row, column and box keeps a 9-bit mask of the digits placed in it; a blank cell's candidates are
the digits in none of its three masks.  Propagation repeats naked singles (a cell with one candidate) and
hidden singles (a digit with one possible cell in a row/column/box) until nothing changes, and reports a
contradiction when a cell has no candidate or a unit cannot hold some digit.  The search then branches on the
blank cell with the fewest candidates (first such cell in row-major order), saving the state on an explicit
stack.  `search` stops after `limit` solutions, so `limit=2` decides uniqueness.

Rating: the number of dead ends (contradictions reached after a guess) of the complete uniqueness search
(`limit=2`) of a puzzle with exactly one solution.  0 means singles alone solve it; every guess that turns out
wrong costs at least one.  It measures the effort of this solver, like the backtrack count that rates the
published Sudoku-Extreme puzzles (tdoku), but the two scales are not the same.

Generator (one puzzle): a random complete grid (the three diagonal boxes filled with random permutations, the
rest solved with a random digit order), then every cell in a random order is blanked unless that makes the
solution ambiguous.  The result is a minimal puzzle (no clue can be removed) with exactly one solution.  All
randomness comes in as arrays drawn by the caller from a numpy Generator, so the output depends only on the seed
(and not on the thread count: puzzles are independent and generated in parallel with prange).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

ALL_DIGITS = 0x1FF

_cell = np.arange(81)
CELL_ROW = (_cell // 9).astype(np.int64)
CELL_COL = (_cell % 9).astype(np.int64)
CELL_BOX = ((_cell // 27) * 3 + (_cell % 9) // 3).astype(np.int64)
# Units 0..8 are rows, 9..17 columns, 18..26 boxes; unit masks are stored in that order.
UNITS = np.zeros((27, 9), dtype=np.int64)
for _u in range(9):
    UNITS[_u] = _u * 9 + np.arange(9)
    UNITS[9 + _u] = np.arange(9) * 9 + _u
    _r0, _c0 = (_u // 3) * 3, (_u % 3) * 3
    UNITS[18 + _u] = [(_r0 + i) * 9 + _c0 + j for i in range(3) for j in range(3)]
POPCOUNT = np.array([bin(m).count("1") for m in range(512)], dtype=np.int64)
LOWEST_DIGIT = np.array([0] + [(m & -m).bit_length() for m in range(1, 512)], dtype=np.int64)  # 1..9, 0 if none
del _cell, _u, _r0, _c0


@njit(cache=True)
def _candidates(masks, cell):
    return ~(masks[CELL_ROW[cell]] | masks[9 + CELL_COL[cell]] | masks[18 + CELL_BOX[cell]]) & ALL_DIGITS


@njit(cache=True)
def _place(grid, masks, cell, digit):
    bit = 1 << (digit - 1)
    grid[cell] = digit
    masks[CELL_ROW[cell]] |= bit
    masks[9 + CELL_COL[cell]] |= bit
    masks[18 + CELL_BOX[cell]] |= bit


@njit(cache=True)
def _init_masks(grid, masks):
    """Fill the unit masks from the clues; False if two equal clues share a unit (or a value is out of range)."""
    masks[:] = 0
    for cell in range(81):
        d = grid[cell]
        if d == 0:
            continue
        if d < 0 or d > 9:
            return False
        bit = 1 << (d - 1)
        if (masks[CELL_ROW[cell]] | masks[9 + CELL_COL[cell]] | masks[18 + CELL_BOX[cell]]) & bit:
            return False
        masks[CELL_ROW[cell]] |= bit
        masks[9 + CELL_COL[cell]] |= bit
        masks[18 + CELL_BOX[cell]] |= bit
    return True


@njit(cache=True)
def _propagate(grid, masks):
    """Apply naked and hidden singles until a fixed point; False on a contradiction."""
    changed = True
    while changed:
        changed = False
        for cell in range(81):
            if grid[cell] == 0:
                cand = _candidates(masks, cell)
                if cand == 0:
                    return False
                if cand & (cand - 1) == 0:
                    _place(grid, masks, cell, LOWEST_DIGIT[cand])
                    changed = True
        for u in range(27):
            once = 0
            twice = 0
            for k in range(9):
                cell = UNITS[u, k]
                if grid[cell] == 0:
                    cand = _candidates(masks, cell)
                    twice |= once & cand
                    once |= cand
            if (once | masks[u]) != ALL_DIGITS:
                return False  # some digit has no place left in this unit
            single = once & ~twice & ~masks[u]
            while single:
                bit = single & -single
                single ^= bit
                found = False
                for k in range(9):
                    cell = UNITS[u, k]
                    if grid[cell] == 0 and (_candidates(masks, cell) & bit):
                        _place(grid, masks, cell, LOWEST_DIGIT[bit])
                        found = True
                        break
                if not found:
                    return False  # the only cell for this digit took another hidden single
                changed = True
    return True


@njit(cache=True)
def search(puzzle, limit, order, solution):
    """Depth-first search for up to `limit` solutions of `puzzle` (int8[81]).

    `order` (int64[9], a permutation of 1..9) is the order in which a branch tries digits.  The first solution
    found is written to `solution`.  Returns (number of solutions found, dead ends met).
    """
    grid = puzzle.copy()
    masks = np.zeros(27, dtype=np.int64)
    if not _init_masks(grid, masks):
        return 0, 0
    stack_grid = np.empty((82, 81), dtype=np.int8)
    stack_masks = np.empty((82, 27), dtype=np.int64)
    stack_cell = np.empty(82, dtype=np.int64)
    stack_cands = np.empty(82, dtype=np.int64)
    depth = 0
    count = 0
    dead_ends = 0
    ok = _propagate(grid, masks)
    while True:
        if ok:
            best = -1
            best_n = 10
            for cell in range(81):
                if grid[cell] == 0:
                    n = POPCOUNT[_candidates(masks, cell)]
                    if n < best_n:
                        best_n = n
                        best = cell
                        if n == 2:
                            break
            if best < 0:
                count += 1
                if count == 1:
                    solution[:] = grid
                if count >= limit:
                    return count, dead_ends
            else:
                stack_grid[depth] = grid
                stack_masks[depth] = masks
                stack_cell[depth] = best
                stack_cands[depth] = _candidates(masks, best)
                depth += 1
        else:
            dead_ends += 1
        # Take the next untried digit of the deepest open branch.
        while depth > 0 and stack_cands[depth - 1] == 0:
            depth -= 1
        if depth == 0:
            return count, dead_ends
        top = depth - 1
        cands = stack_cands[top]
        digit = 0
        for i in range(9):
            if cands & (1 << (order[i] - 1)):
                digit = order[i]
                break
        stack_cands[top] = cands & ~(1 << (digit - 1))
        grid[:] = stack_grid[top]
        masks[:] = stack_masks[top]
        _place(grid, masks, stack_cell[top], digit)
        ok = _propagate(grid, masks)


_IDENTITY_ORDER = np.arange(1, 10, dtype=np.int64)


@njit(cache=True)
def _count_and_rate(puzzle, solution):
    return search(puzzle, 2, _IDENTITY_ORDER, solution)


@njit(cache=True)
def _generate_one(diagonal, order, removal, puzzle_out, solution_out):
    """One minimal unique-solution puzzle; returns its rating.  `diagonal`: int64[27] digits of boxes 0, 4, 8
    (each 9 a permutation of 1..9); `order`: digit order of the completion; `removal`: cell order to blank."""
    grid = np.zeros(81, dtype=np.int8)
    for b in range(3):
        r0 = b * 3
        for k in range(9):
            grid[(r0 + k // 3) * 9 + r0 + k % 3] = diagonal[b * 9 + k]
    count, _ = search(grid, 1, order, solution_out)
    if count != 1:  # cannot happen: three independent diagonal boxes always complete
        return -1
    puzzle = solution_out.copy()
    scratch = np.empty(81, dtype=np.int8)
    for k in range(81):
        cell = removal[k]
        digit = puzzle[cell]
        puzzle[cell] = 0
        n, _ = _count_and_rate(puzzle, scratch)
        if n != 1:
            puzzle[cell] = digit
    _, rating = _count_and_rate(puzzle, scratch)
    puzzle_out[:] = puzzle
    return rating


@njit(cache=True, parallel=True)
def _generate_batch(diagonals, orders, removals, puzzles, solutions, ratings):
    for i in prange(diagonals.shape[0]):
        ratings[i] = _generate_one(diagonals[i], orders[i], removals[i], puzzles[i], solutions[i])


def draw_generation_inputs(rng: np.random.Generator, n: int):
    """The random inputs of `n` puzzles: diagonal-box permutations, completion digit orders, removal orders."""
    digits = np.tile(np.arange(1, 10, dtype=np.int64), (n, 3))
    diagonals = rng.permuted(digits.reshape(n, 3, 9), axis=2).reshape(n, 27)
    orders = rng.permuted(np.tile(np.arange(1, 10, dtype=np.int64), (n, 1)), axis=1)
    removals = rng.permuted(np.tile(np.arange(81, dtype=np.int64), (n, 1)), axis=1)
    return diagonals, orders, removals


def generate_puzzles(rng: np.random.Generator, n: int):
    """Generate `n` minimal puzzles with exactly one solution.

    Returns (puzzles int8[n, 81] with 0 = blank, solutions int8[n, 81], ratings int64[n]).
    """
    diagonals, orders, removals = draw_generation_inputs(rng, n)
    puzzles = np.zeros((n, 81), dtype=np.int8)
    solutions = np.zeros((n, 81), dtype=np.int8)
    ratings = np.zeros(n, dtype=np.int64)
    if n:
        _generate_batch(diagonals, orders, removals, puzzles, solutions, ratings)
    if np.any(ratings < 0):
        raise RuntimeError("sudoku generator failed to complete a grid")  # a bug, never bad input
    return puzzles, solutions, ratings


def count_solutions(puzzle: np.ndarray, limit: int = 2):
    """(number of solutions up to `limit`, first solution int8[81]) of a puzzle given as 81 digits, 0 = blank."""
    grid = np.ascontiguousarray(puzzle, dtype=np.int8).reshape(81)
    solution = np.zeros(81, dtype=np.int8)
    count, _ = search(grid, limit, _IDENTITY_ORDER, solution)
    return int(count), solution


def rate(puzzle: np.ndarray) -> int:
    """Dead ends of the complete uniqueness search (see the module docstring)."""
    grid = np.ascontiguousarray(puzzle, dtype=np.int8).reshape(81)
    _, dead_ends = _count_and_rate(grid, np.zeros(81, dtype=np.int8))
    return int(dead_ends)


def is_valid_solution(grid: np.ndarray) -> bool:
    """True when `grid` (81 or 9x9 digits) is a complete valid Sudoku: every row, column and box holds 1..9."""
    g = np.asarray(grid).reshape(9, 9)
    want = np.arange(1, 10)
    boxes = g.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    return all(np.array_equal(np.sort(block, axis=1), np.tile(want, (9, 1))) for block in (g, g.T, boxes))
