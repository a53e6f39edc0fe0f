"""dataset/codecs.py: each task's group (members and their inverses), its answer check, the ARC canvas, and
recognising a task from its dataset."""
import itertools
import json
import re

import numpy as np
import pytest

from dataset import codecs
from dataset.build_mini_sudoku_dataset import generate_unique_puzzles
from dataset.codecs import (
    MAZE_OPEN,
    MAZE_PATH,
    MAZE_WALL,
    ArcCodec,
    MazeCodec,
    PuzzleFormatError,
    SudokuCodec,
    check_maze,
    check_sudoku,
    codec_for,
    crop_prediction,
    encode_arc_grid,
    format_sudoku,
    parse_arc_task,
    parse_maze,
    parse_sudoku,
    sudoku_box_shape,
)

SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


# ---------------------------------------------------------------------------------------------------------------
# Sudoku


def test_sudoku_checker():
    puzzle, solution = parse_sudoku(PUZZLE), parse_sudoku(SOLUTION)
    good = check_sudoku(puzzle, solution, (3, 3))
    assert good.valid and good.clues_kept and good.clues == 30
    assert (good.rows_valid, good.cols_valid, good.boxes_valid) == (9, 9, 9)

    swapped = solution.copy()
    swapped[0, [2, 3]] = swapped[0, [3, 2]]  # row 0 still holds 1..9, two columns and boxes break
    bad = check_sudoku(puzzle, swapped, (3, 3))
    assert not bad.valid and bad.rows_valid == 9 and bad.cols_valid == 7 and bad.boxes_valid == 7
    assert bad.clues_kept  # cells (0,2) and (0,3) are blanks of the puzzle

    changed_clue = solution.copy()
    changed_clue[0, [0, 3]] = changed_clue[0, [3, 0]]  # (0,0) is a clue
    assert check_sudoku(puzzle, changed_clue, (3, 3)).clues_changed == 1

    unfinished = solution.copy()
    unfinished[8, 8] = -1
    result = check_sudoku(puzzle, unfinished, (3, 3))
    assert not result.complete and not result.valid


@pytest.mark.parametrize("box", [(2, 2), (2, 3), (3, 3)])
def test_sudoku_check_accepts_generated_solutions_and_rejects_one_changed_cell(box):
    size = box[0] * box[1]
    if box == (3, 3):
        from dataset.sudoku_core import generate_puzzles
        puzzles, solutions, _ = generate_puzzles(np.random.default_rng(0), 20)
    else:
        puzzles, solutions = generate_unique_puzzles(*box, 200, seed=1, progress=False)
    inputs, answers = puzzles.astype(np.int64) + 1, solutions.astype(np.int64) + 1
    codec = SudokuCodec(size, box)
    assert codec.check(inputs, answers).all()
    rng = np.random.default_rng(2)
    changed = answers.copy()
    rows = np.arange(len(changed))
    cells = rng.integers(0, size * size, len(changed))
    changed[rows, cells] = 2 + (changed[rows, cells] - 2 + rng.integers(1, size, len(changed))) % size  # other digit
    assert not codec.check(inputs, changed).any()
    blanked = answers.copy()
    blanked[rows, cells] = 1  # a cell left blank
    assert not codec.check(inputs, blanked).any()


@pytest.mark.parametrize("box", [(2, 2), (2, 3), (3, 3)])
def test_sudoku_members_invert_and_keep_solutions_valid(box):
    size = box[0] * box[1]
    codec = SudokuCodec(size, box)
    assert ("transpose" in codec.kinds) == (box[0] == box[1])
    puzzles, solutions = (generate_unique_puzzles(*box, 30, seed=3, progress=False) if box != (3, 3) else
                          (parse_sudoku(PUZZLE).reshape(1, -1), parse_sudoku(SOLUTION).reshape(1, -1)))
    inputs, answers = np.asarray(puzzles, np.int64) + 1, np.asarray(solutions, np.int64) + 1
    rng = np.random.default_rng(4)
    for _ in range(200):
        member = codec.draw(rng, codec.kinds)
        assert np.array_equal(member.invert(member.apply(answers)), answers)
        assert np.array_equal(member.apply(member.invert(inputs)), inputs)
        assert codec.check(member.apply(inputs), member.apply(answers)).all()  # a symmetry of the task
        assert (member.apply(inputs) == 1).sum() == (inputs == 1).sum()  # blanks stay blanks


def test_sudoku_kinds_restrict_the_members():
    codec = SudokuCodec(9)
    rng = np.random.default_rng(5)
    digits_only = codec.draw(rng, ["digits"])
    assert np.array_equal(digits_only.positions, np.arange(81))
    assert sorted(digits_only.token_map[2:]) == list(range(2, 11)) and digits_only.token_map[1] == 1
    rows_only = codec.draw(rng, ["rows"])
    assert np.array_equal(rows_only.token_map, np.arange(11))
    moved = rows_only.positions.reshape(9, 9)  # the source cell of each cell
    assert all(np.array_equal(moved[r] % 9, np.arange(9)) for r in range(9))  # columns unchanged
    assert all(moved[r, 0] // 9 // 3 == r // 3 for r in range(9))  # rows stay inside their band
    assert sorted(moved[:, 0] // 9) == list(range(9))


# ---------------------------------------------------------------------------------------------------------------
# Maze: S and G joined by a short corridor (3 cells) and by a long way round (7 cells).

MAZE = ["#######",
        "#S   G#",
        "# ### #",
        "#     #",
        "#######"]
SHORT = [(1, 2), (1, 3), (1, 4)]
LONG = [(2, 1), (3, 1), (3, 2), (3, 3), (3, 4), (3, 5), (2, 5)]


def tokens(lines):
    return np.array([[codecs.MAZE_CHARSET.index(ch) + 1 for ch in line] for line in lines])


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
    no_start[no_start == codecs.MAZE_START] = MAZE_OPEN
    result = check_maze(no_start, mark(SHORT))
    assert not result.valid and not result.shortest and not result.endpoints_kept


@pytest.fixture(scope="module")
def mazes():
    from dataset import maze_core

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


# ---------------------------------------------------------------------------------------------------------------
# ARC


def test_arc_encoding_matches_the_builder_and_crops_back():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 7), (30, 30), (30, 2), (5, 30)]:
        grid = rng.integers(0, 10, size=(h, w))
        tokens_ = encode_arc_grid(grid)
        built = codecs.draw_on_canvas(grid[None].astype(np.uint8), np.zeros(1, np.int64), np.zeros(1, np.int64))[0]
        assert np.array_equal(tokens_, built)
        assert np.array_equal(crop_prediction(tokens_), grid)
        assert np.array_equal(codecs.crop_canvas(tokens_), grid)

    # A ragged prediction: the largest rectangle anchored at the corner is kept.
    canvas = np.zeros((30, 30), dtype=np.int64)
    canvas[:4, :5] = 3
    canvas[4, :2] = 4
    assert crop_prediction(canvas).shape == (4, 5)
    assert crop_prediction(np.zeros(900)).shape == (0, 0)


def test_every_arc_member_inverts():
    """All 8 dihedral transforms with sampled colour maps, and every colour map (9! of them) with each transform
    whose inverse is itself: augment then invert is the identity."""
    grid = np.arange(12, dtype=np.uint8).reshape(3, 4) % 10  # every colour, a shape that shows orientation
    rng = np.random.default_rng(10)
    for tid in range(8):
        for _ in range(50):
            colours = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
            moved = codecs.apply_augmentation(grid, tid, colours)
            assert np.array_equal(codecs.invert_augmentation(moved, tid, colours), grid)
            name = codecs.augmentation_name("task", tid, colours)
            assert codecs.parse_augmentation_name(name)[1] == tid
    for perm in itertools.permutations(range(1, 10)):
        colours = np.array((0,) + perm, dtype=np.uint8)
        assert np.array_equal(codecs.invert_augmentation(codecs.apply_augmentation(grid, 0, colours), 0, colours),
                              grid)


def test_arc_has_no_token_row_members():
    codec = ArcCodec()
    assert codec.kinds == () and "test split already holds every test input" in codec.no_kinds_because
    assert codec.check(np.zeros((3, 900)), np.zeros((3, 900))).all()


def test_tasks_are_recognised_from_vocabulary_and_length():
    assert codec_for(11, 81).name == "sudoku" and codec_for(11, 81).box == (3, 3)
    assert codec_for(6, 16).name == "sudoku" and codec_for(8, 36).box == (2, 3)
    assert codec_for(6, 900).name == "maze" and codec_for(6, 900).side == 30
    assert codec_for(12, 900).name == "arc"
    assert codec_for(7, 50) is None


# ---------------------------------------------------------------------------------------------------------------
# Text forms (the solve CLI reads and prints them)



def test_sudoku_parsing_and_boxes():
    grid = parse_sudoku(PUZZLE)
    assert grid.shape == (9, 9) and grid[0, 0] == 5 and grid[0, 2] == 0
    pretty = format_sudoku(grid, (3, 3))
    assert np.array_equal(parse_sudoku(pretty), grid)  # the pretty form reads back
    assert np.array_equal(parse_sudoku(PUZZLE.replace(".", "0")), grid)
    assert sudoku_box_shape(9) == (3, 3) and sudoku_box_shape(6) == (2, 3) and sudoku_box_shape(4) == (2, 2)
    assert sudoku_box_shape(6, "3x2") == (3, 2)
    with pytest.raises(PuzzleFormatError, match="do not tile"):
        sudoku_box_shape(6, "2x2")
    with pytest.raises(PuzzleFormatError, match="not a square number"):
        parse_sudoku("1" * 10)


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


def test_arc_task_parsing(tmp_path):
    pairs = parse_arc_task(json.dumps({"train": [], "test": [{"input": [[1, 2], [3, 4]]},
                                                                    {"input": [[0]], "output": [[5]]}]}))
    assert [p[0].shape for p in pairs] == [(2, 2), (1, 1)] and pairs[0][1] is None and pairs[1][1][0, 0] == 5
    for bad, fragment in [("[", "not valid JSON"), ('{"test": []}', "non-empty \"test\""),
                          ('{"test": [{"input": [[1, 10]]}]}', "colour 10"),
                          ('{"test": [{"input": [[1], [1, 2]]}]}', "equal length")]:
        with pytest.raises(PuzzleFormatError, match=re.escape(fragment)):
            parse_arc_task(bad)
