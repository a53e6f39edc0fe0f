"""The maze's codec (docs/DESIGN.md §9): square grids over "# SGo" (wall, open, start, goal, path) -> tokens 1..5, 0
pad; the answer marks a shortest path from S to G with 'o'. Group: the 8 dihedral transforms. Check: walls, S and G
kept, the 'o' cells join S to G without strays or dead ends, and the route is a shortest one (evaluation reports the
fraction of such answers as `valid_shortest_path`: any shortest path counts, where exact accuracy asks for the one
the label marks). Text form: the grid's lines.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from dataset.common import PuzzleDatasetMetadata, dihedral_transform
from tasks.base import PuzzleFormatError, SolveRequest, TaskCodec, TaskError, TokenPermutation, square_side, yes

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
    title = "maze"
    kinds = ("dihedral",)
    check_metric = "valid_shortest_path"

    def __init__(self, side: int):
        self.side = side

    @staticmethod
    def _fits(metadata: PuzzleDatasetMetadata) -> Optional[int]:
        side = square_side(metadata.seq_len)
        return side if side is not None and metadata.vocab_size == len(MAZE_CHARSET) + 1 else None

    @classmethod
    def from_metadata(cls, metadata: PuzzleDatasetMetadata) -> "MazeCodec":
        side = cls._fits(metadata)
        if side is None:
            raise TaskError(f"a maze dataset has vocab_size {len(MAZE_CHARSET) + 1} and a square seq_len; this one "
                            f"has vocab_size {metadata.vocab_size} and seq_len {metadata.seq_len}")
        return cls(side)

    @classmethod
    def recognises(cls, metadata: PuzzleDatasetMetadata) -> bool:
        # The original builder writes one puzzle identifier (the blank one) and 30x30 grids; any side is accepted.
        return cls._fits(metadata) is not None and metadata.num_puzzle_identifiers == 1

    def draw(self, rng: np.random.Generator, kinds: Sequence[str]) -> TokenPermutation:
        tid = int(rng.integers(0, 8)) if "dihedral" in kinds else 0
        cells = np.arange(self.side * self.side).reshape(self.side, self.side)
        return TokenPermutation(dihedral_transform(cells, tid).reshape(-1).copy(), np.arange(len(MAZE_CHARSET) + 1))

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        grids = (np.asarray(inputs).reshape(-1, self.side, self.side), np.asarray(answers).reshape(-1, self.side,
                                                                                                   self.side))
        return np.array([check_maze(maze, answer).shortest for maze, answer in zip(*grids)], dtype=bool)

    # -- text form ----------------------------------------------------------------------------------------------

    @classmethod
    def reads_text(cls, text: str, file_name: Optional[str]) -> bool:
        return "S" in text and "G" in text and all(ch in MAZE_CHARSET or ch in "\r\n" for ch in text)

    @classmethod
    def text_seq_len(cls, text: str) -> Optional[int]:
        lines = [line for line in text.splitlines() if line.strip()]
        return len(lines) ** 2 if len(lines) > 1 else len(lines[0]) if lines else 0

    def solve_text(self, request: SolveRequest) -> bool:
        side, say = self.side, request.say
        maze = parse_maze(request.text, side)
        prediction = request.predict(maze.reshape(1, -1), [request.blank_identifier], request.augmentations, self)
        answer = prediction.preds[0].reshape(side, side)
        check = check_maze(maze, answer)

        say(f"maze ({side}x{side}):")
        say(format_maze(maze))
        say("answer:")
        say(format_maze(answer))
        say(f"walls kept: {yes(check.walls_changed == 0 and check.path_on_walls == 0)}"
            + (f" ({check.walls_changed} wall cells changed, {check.path_on_walls} path marks off open cells)"
               if check.walls_changed or check.path_on_walls else ""))
        say(f"start and goal kept: {yes(check.endpoints_kept)}")
        say(f"path cells: {check.path_cells}, connects S to G: {yes(check.connected)}"
            + (f", cells off the route: {check.stray_cells}" if check.stray_cells else "")
            + (f", dead ends: {check.dead_ends}" if check.dead_ends else ""))
        if check.shortest_length is None:
            say("shortest path: G cannot be reached from S in this maze")
        else:
            say(f"shortest path: {yes(check.shortest)} (a shortest path has {check.shortest_length - 1} cells"
                + (f", the marked route {check.route_length - 1})" if check.route_length is not None else ")"))
        request.say_halting(float(prediction.q_halt[0]), int(prediction.candidates[0]), prediction.variants)
        say(f"valid path: {yes(check.valid)}")
        return check.valid


# ---------------------------------------------------------------------------------------------------------------
# Text form

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
