"""Maze generation and shortest paths (numba) for build_maze_dataset.py.

Grids hold token ids directly: 1 '#' wall, 2 ' ' open, 3 'S' start, 4 'G' goal, 5 'o' path (0 is padding).

One maze (size x size, 30 by default):
1. Carve a perfect maze (a random spanning tree, Kruskal's algorithm over a random edge order) on a lattice of
   rooms at every other cell, the lattice shifted by a random row/column offset (0 or 1) so that the leftover
   border row/column is not always on the same side.
2. Open every remaining wall cell with probability `open_prob`: this adds loops and shortcuts, so that the
   maze is not a tree and the shortest path is not simply the only path.
3. Pick a random open start cell, run a breadth-first search, and pick the goal uniformly among the cells whose
   distance is at least `min_path_len` (and, unless ties are allowed, that are reached by exactly one shortest
   path).  A few starts are tried before the maze is discarded.
4. The answer marks the cells of the shortest path strictly between S and G with 'o'.

All randomness comes in as arrays drawn by the caller from a numpy Generator; each maze depends only on its
own slice of them, so results do not depend on the thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
STARTS_PER_MAZE = 8
_DR = np.array([-1, 1, 0, 0], dtype=np.int64)
_DC = np.array([0, 0, -1, 1], dtype=np.int64)


@njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(cache=True)
def _carve(grid, off_r, off_c, edge_keys, open_u, open_prob):
    """Perfect maze by Kruskal over edges sorted by `edge_keys`, then random extra openings."""
    size = grid.shape[0]
    n_r = (size - off_r + 1) // 2
    n_c = (size - off_c + 1) // 2
    grid[:, :] = WALL
    for i in range(n_r):
        for j in range(n_c):
            grid[off_r + 2 * i, off_c + 2 * j] = OPEN
    n_h = n_r * (n_c - 1)
    n_edges = n_h + (n_r - 1) * n_c
    parent = np.arange(n_r * n_c)
    order = np.argsort(edge_keys[:n_edges])
    for k in range(n_edges):
        e = order[k]
        if e < n_h:
            i, j = e // (n_c - 1), e % (n_c - 1)
            a, b = i * n_c + j, i * n_c + j + 1
            wr, wc = off_r + 2 * i, off_c + 2 * j + 1
        else:
            e2 = e - n_h
            i, j = e2 // n_c, e2 % n_c
            a, b = i * n_c + j, (i + 1) * n_c + j
            wr, wc = off_r + 2 * i + 1, off_c + 2 * j
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[ra] = rb
            grid[wr, wc] = OPEN
        elif open_u[e] < open_prob:
            grid[wr, wc] = OPEN  # an extra passage: closes a loop


@njit(cache=True)
def bfs(grid, start, dist, count, queue):
    """Breadth-first search over non-wall cells from flat index `start`.

    Fills dist (-1 = unreachable) and count (number of shortest paths, capped at 2); returns the number of
    cells reached (their flat indices are queue[:n], in BFS order).
    """
    size = grid.shape[1]
    dist[:] = -1
    count[:] = 0
    dist[start] = 0
    count[start] = 1
    queue[0] = start
    head = 0
    tail = 1
    while head < tail:
        cell = queue[head]
        head += 1
        r, c = cell // size, cell % size
        for k in range(4):
            nr, nc = r + _DR[k], c + _DC[k]
            if nr < 0 or nr >= grid.shape[0] or nc < 0 or nc >= size or grid[nr, nc] == WALL:
                continue
            nxt = nr * size + nc
            if dist[nxt] < 0:
                dist[nxt] = dist[cell] + 1
                queue[tail] = nxt
                tail += 1
            if dist[nxt] == dist[cell] + 1:
                count[nxt] = min(2, count[nxt] + count[cell])
    return tail


@njit(cache=True)
def _mark_path(answer, dist, goal):
    """Walk back from the goal along decreasing distance, marking cells strictly between S and G."""
    size = answer.shape[1]
    cell = goal
    while dist[cell] > 1:
        r, c = cell // size, cell % size
        for k in range(4):
            nr, nc = r + _DR[k], c + _DC[k]
            if 0 <= nr < answer.shape[0] and 0 <= nc < size and answer[nr, nc] != WALL:
                prev = nr * size + nc
                if dist[prev] == dist[cell] - 1:
                    cell = prev
                    break
        answer[cell // size, cell % size] = PATH


@njit(cache=True)
def _make_maze(question, answer, offsets, edge_keys, open_u, pick_u, open_prob, min_path_len, unique):
    """Fill question/answer; returns the shortest-path length, or -1 when no start/goal pair qualifies."""
    size = question.shape[0]
    _carve(question, offsets[0], offsets[1], edge_keys, open_u, open_prob)
    flat = question.reshape(-1)
    n_cells = size * size
    dist = np.empty(n_cells, dtype=np.int64)
    count = np.empty(n_cells, dtype=np.int64)
    queue = np.empty(n_cells, dtype=np.int64)
    n_open = 0
    for cell in range(n_cells):
        if flat[cell] != WALL:
            n_open += 1
    if n_open < 2:
        return -1
    for attempt in range(pick_u.shape[0]):
        k = int(pick_u[attempt, 0] * n_open)
        start = -1
        for cell in range(n_cells):
            if flat[cell] != WALL:
                if k == 0:
                    start = cell
                    break
                k -= 1
        reached = bfs(question, start, dist, count, queue)
        n_ok = 0
        for q in range(reached):
            cell = queue[q]
            if dist[cell] >= min_path_len and (count[cell] == 1 or not unique):
                n_ok += 1
        if n_ok == 0:
            continue
        k = int(pick_u[attempt, 1] * n_ok)
        goal = -1
        for q in range(reached):
            cell = queue[q]
            if dist[cell] >= min_path_len and (count[cell] == 1 or not unique):
                if k == 0:
                    goal = cell
                    break
                k -= 1
        flat[start] = START
        flat[goal] = GOAL
        answer[:, :] = question
        _mark_path(answer, dist, goal)
        return dist[goal]
    return -1


@njit(cache=True, parallel=True)
def _make_batch(questions, answers, offsets, edge_keys, open_u, pick_u, open_prob, min_path_len, unique, lengths):
    for i in prange(questions.shape[0]):
        lengths[i] = _make_maze(questions[i], answers[i], offsets[i], edge_keys[i], open_u[i], pick_u[i],
                                open_prob, min_path_len, unique)


def generate_mazes(rng: np.random.Generator, n: int, size: int = 30, open_prob: float = 0.05,
                   min_path_len: int = 110, unique: bool = True):
    """Try `n` mazes.  Returns (questions int8[n, size, size], answers, path lengths int64[n]); a length of -1
    marks a try that found no qualifying start/goal pair (its grids are meaningless)."""
    questions = np.zeros((n, size, size), dtype=np.int8)
    answers = np.zeros((n, size, size), dtype=np.int8)
    lengths = np.zeros(n, dtype=np.int64)
    offsets = rng.integers(0, 2, size=(n, 2))
    edge_keys = rng.random((n, 2 * ((size + 1) // 2) ** 2))
    open_u = rng.random((n, edge_keys.shape[1]))
    pick_u = rng.random((n, STARTS_PER_MAZE, 2))
    if n:
        _make_batch(questions, answers, offsets, edge_keys, open_u, pick_u, float(open_prob), int(min_path_len),
                    bool(unique), lengths)
    return questions, answers, lengths
