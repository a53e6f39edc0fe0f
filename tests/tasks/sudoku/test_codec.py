"""tasks/sudoku/codec.py: the symmetry group's members and their inverses, the answer check, the text form, and what
a dataset's metadata tells the codec."""
import numpy as np
import pytest

from dataset.common import PuzzleDatasetMetadata
from tasks.base import PuzzleFormatError, TaskError
from tasks.sudoku.build_mini import generate_unique_puzzles
from tasks.sudoku.codec import SudokuCodec, check_sudoku, format_sudoku, parse_sudoku, sudoku_box_shape

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
        from tasks.sudoku.generator import generate_puzzles
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


def metadata(vocab_size=8, seq_len=36, **fields) -> PuzzleDatasetMetadata:
    return PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab_size,
                                 seq_len=seq_len, num_puzzle_identifiers=1, total_groups=1, mean_puzzle_examples=1,
                                 sets=["all"], **fields)


def test_the_dataset_tells_the_box_and_the_builder_writes_it(tmp_path):
    assert SudokuCodec.from_metadata(metadata(task="sudoku")).box == (2, 3)  # none given: the squarest
    assert SudokuCodec.from_metadata(metadata(task="sudoku", task_options={"box": [3, 2]})).box == (3, 2)
    assert SudokuCodec(6, (3, 2)).options() == {"box": [3, 2]}
    with pytest.raises(TaskError, match=r"vocab_size N \+ 2 and seq_len N x N; this one has vocab_size 9"):
        SudokuCodec.from_metadata(metadata(vocab_size=9, task="sudoku"))
    with pytest.raises(PuzzleFormatError, match="do not tile"):
        SudokuCodec.from_metadata(metadata(task="sudoku", task_options={"box": [2, 2]}))

    from dataset.puzzle_dataset import load_metadata
    from tasks.sudoku.build_mini import build

    build(str(tmp_path / "s6"), box_rows=3, box_cols=2, train_size=8, test_size=2, seed=0)
    for split in ("train", "test"):
        written = load_metadata(str(tmp_path / "s6"), split)
        assert (written.task, written.task_options) == ("sudoku", {"box": [3, 2]})
        assert SudokuCodec.from_metadata(written).box == (3, 2)
