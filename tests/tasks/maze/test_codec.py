"""tasks/maze/codec.py: the answer check (a shortest path, any one), the dihedral members and their inverses, the text
form."""
import numpy as np
import pytest

from tasks.base import PuzzleFormatError
from tasks.maze.codec import (MAZE_CHARSET, MAZE_OPEN, MAZE_PATH, MAZE_START, MAZE_WALL, MazeCodec, check_maze,
                              parse_maze)

# Maze: S and G joined by a short corridor (3 cells) and by a long way round (7 cells).

MAZE = ["#######",
        "#S   G#",
        "# ### #",
        "#     #",
        "#######"]
SHORT = [(1, 2), (1, 3), (1, 4)]
LONG = [(2, 1), (3, 1), (3, 2), (3, 3), (3, 4), (3, 5), (2, 5)]


def tokens(lines):
    return np.array([[MAZE_CHARSET.index(ch) + 1 for ch in line] for line in lines])


def mark(cells):
    rows = [list(line) for line in MAZE]
    for r, c in cells:
        assert rows[r][c] in " #"
        rows[r][c] = "o"
    return tokens(["".join(row) for row in rows])


def test_maze_checker_correct_broken_and_longer_paths():
    maze = tokens(MAZE)
    shortest = check_maze(maze, mark(SHORT))
    assert shortest.valid and shortest.shortest and shortest.shortest_length == 4 and shortest.path_cells == 3

    longer = check_maze(maze, mark(LONG))
    assert longer.valid and not longer.shortest and longer.route_length == 8

    broken = check_maze(maze, mark([cell for cell in LONG if cell != (3, 3)]))
    assert not broken.connected and not broken.valid and not broken.shortest

    both = check_maze(maze, mark(SHORT + [(3, 3)]))  # a stray mark away from the route
    assert both.connected and both.stray_cells == 1 and not both.valid

    spur = check_maze(maze, mark(SHORT + [(2, 1)]))  # a dead end hanging off S
    assert spur.connected and spur.dead_ends == 1 and not spur.valid

    through_wall = check_maze(maze, mark([(1, 2), (1, 3), (1, 4), (2, 2)]))
    assert through_wall.path_on_walls == 1 and through_wall.walls_changed == 1 and not through_wall.valid

    no_path = check_maze(maze, maze)
    assert not no_path.connected and not no_path.valid and no_path.shortest_length == 4


def test_a_padding_row_or_a_maze_without_endpoints_is_invalid_not_an_error():
    padding = np.zeros(36, dtype=np.int64)  # what an evaluation batch's padding rows hold
    assert not MazeCodec(6).check(padding[None], padding[None]).any()
    no_start = tokens(MAZE).copy()
    no_start[no_start == MAZE_START] = MAZE_OPEN
    result = check_maze(no_start, mark(SHORT))
    assert not result.valid and not result.shortest and not result.endpoints_kept


@pytest.fixture(scope="module")
def mazes():
    from tasks.maze import generator as maze_core

    questions, answers, lengths = maze_core.generate_mazes(np.random.default_rng(7), 40, size=30, open_prob=0.03,
                                                           min_path_len=40, unique=True)
    keep = lengths >= 0
    return questions[keep].reshape(-1, 900).astype(np.int64), answers[keep].reshape(-1, 900).astype(np.int64)


def test_maze_check_accepts_generated_solutions_and_rejects_one_changed_cell(mazes):
    questions, answers = mazes
    codec = MazeCodec(30)
    assert len(questions) >= 10 and codec.check(questions, answers).all()
    rng = np.random.default_rng(8)
    for kind, before, after in (("a path cell left open", MAZE_PATH, MAZE_OPEN),
                                ("an open cell marked", MAZE_OPEN, MAZE_PATH),
                                ("a wall opened", MAZE_WALL, MAZE_OPEN)):
        changed = answers.copy()
        for row in changed:
            row[rng.choice(np.flatnonzero(row == before))] = after
        assert not codec.check(questions, changed).any(), kind


def test_every_maze_member_inverts_and_keeps_solutions_valid(mazes):
    questions, answers = mazes
    codec = MazeCodec(30)
    members = {}
    rng = np.random.default_rng(9)
    while len(members) < 8:  # draw until all 8 dihedral transforms have come up
        member = codec.draw(rng, codec.kinds)
        members[member.positions.tobytes()] = member
    for member in members.values():
        assert np.array_equal(member.invert(member.apply(answers)), answers)
        assert codec.check(member.apply(questions), member.apply(answers)).all()
    assert np.array_equal(codec.draw(rng, []).positions, np.arange(900))  # no kinds: the identity
    assert parse_maze("\n".join(MAZE + ["#######", "#######"]), side=7).shape == (7, 7)


def test_maze_parsing():
    square = ["#######", "#S   G#", "# ### #", "#      ", "#######", "#######", "#######"]
    maze = parse_maze("\n".join(line.rstrip() for line in square) + "\n", side=7)
    assert maze.shape == (7, 7) and (maze == 3).sum() == 1  # one 'S' (token 3)
    assert np.array_equal(parse_maze("".join(square)), maze)  # the one-line CSV form
    with pytest.raises(PuzzleFormatError, match="exactly one goal"):
        parse_maze("\n".join(line.replace("G", " ") for line in square))
    with pytest.raises(PuzzleFormatError, match="is not one of"):
        parse_maze("\n".join(line.replace("#", "x", 1) for line in square))
    with pytest.raises(PuzzleFormatError, match="expects 30 lines"):
        parse_maze("\n".join(square), side=30)
