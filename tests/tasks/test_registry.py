"""tasks/__init__.py: every task folder is found; a dataset's task is the one its dataset.json names, a dataset built
elsewhere gets the task its shape fits only when that is one task, and a wrong codec is never chosen."""
import json
import os

import pytest

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import load_metadata
from tasks import codec_class, dataset_codec, evaluator_class, task_names, text_codec
from tasks.base import TaskError
from utils.names import ClassNotFoundError


def metadata(vocab_size: int, seq_len: int, identifiers: int = 1, **fields) -> PuzzleDatasetMetadata:
    return PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab_size,
                                 seq_len=seq_len, num_puzzle_identifiers=identifiers, total_groups=1,
                                 mean_puzzle_examples=1, sets=["all"], **fields)


def test_every_task_folder_is_found():
    assert task_names() == ["arc", "maze", "rules", "sudoku"]
    assert codec_class("maze").name == "maze"
    with pytest.raises(TaskError, match="task=chess: no such task; the tasks are arc, maze, rules, sudoku"):
        codec_class("chess")
    assert evaluator_class("arc@ARC").__module__ == "tasks.arc.evaluator"
    with pytest.raises(ClassNotFoundError, match="no module 'tasks.chess.evaluator'"):
        evaluator_class("chess@Chess")


def test_datasets_built_elsewhere_are_recognised_by_the_shape_of_their_original_builder():
    sudoku = dataset_codec([metadata(11, 81)])
    assert sudoku.name == "sudoku" and sudoku.box == (3, 3)
    assert dataset_codec([metadata(8, 36)]).box == (2, 3)
    maze = dataset_codec([metadata(6, 900)])
    assert maze.name == "maze" and maze.side == 30
    assert dataset_codec([metadata(12, 900, identifiers=400)]).name == "arc"
    assert dataset_codec([metadata(7, 50)]) is None  # no task has this shape: no codec
    # Many identifiers (one per task, as colour-rule datasets have): not what the Sudoku and maze builders write.
    assert dataset_codec([metadata(6, 9, identifiers=51)]) is None


def test_an_ambiguous_shape_gets_no_codec_and_a_feature_that_needs_one_asks_for_task():
    ambiguous = metadata(6, 16)  # a 4x4 Sudoku's shape, and a 4x4 maze's
    assert dataset_codec([ambiguous]) is None
    with pytest.raises(TaskError) as err:
        dataset_codec([ambiguous], where="data/x", needed_for="test_time.augmentations")
    assert str(err.value) == ("test_time.augmentations: cannot tell the task of data/x: it could be maze or sudoku "
                              "(vocab_size 6, seq_len 16, no task in its dataset.json); pass task=maze or "
                              "task=sudoku")
    assert dataset_codec([ambiguous], task="maze").name == "maze"
    assert dataset_codec([ambiguous], task="sudoku").name == "sudoku"
    with pytest.raises(TaskError, match="an ARC dataset has vocab_size 12 and seq_len 900; this one has vocab_size 6"):
        dataset_codec([ambiguous], task="arc")


def test_the_label_wins_and_task_may_not_contradict_it():
    labelled = metadata(6, 16, task="maze")
    assert dataset_codec([labelled]).name == "maze"
    with pytest.raises(TaskError, match="task=sudoku, but data/m is a maze dataset"):
        dataset_codec([labelled], task="sudoku", where="data/m")
    # Folders evaluated together must be of one task.
    assert dataset_codec([labelled, metadata(6, 16, task="sudoku")]) is None
    with pytest.raises(TaskError, match="it could be maze or sudoku"):
        dataset_codec([labelled, metadata(6, 16, task="sudoku")], needed_for="test_time.augmentations")


def strip_task(folder) -> None:
    """dataset.json as a builder elsewhere would write it: no task."""
    for split in ("train", "test"):
        path = os.path.join(folder, split, "dataset.json")
        with open(path) as f:
            raw = json.load(f)
        raw.pop("task", None)
        raw.pop("task_options", None)
        with open(path, "w") as f:
            json.dump(raw, f)


def test_each_builder_names_its_task_so_shapes_that_collide_get_their_own_codec(tmp_path):
    """A 4x4 maze, a 4x4 Sudoku and colour-rule tasks of 5 colours on 4x4 grids all have vocab_size 6 and seq_len 16:
    the shape alone could not tell them apart, their dataset.json does."""
    from tasks.maze.build import build as build_maze, parse_args
    from tasks.rules.build import build as build_rules
    from tasks.sudoku.build_mini import build as build_sudoku

    build_maze(parse_args(["--generate", "6", "--test-size", "2", "--size", "4", "--min-path-len", "1",
                           "--output-dir", str(tmp_path / "maze")]))
    build_sudoku(str(tmp_path / "sudoku"), box_rows=2, box_cols=2, train_size=8, test_size=2, seed=0)
    build_rules(str(tmp_path / "rules"), tasks=4, held_out=2, colours=5, side=4)
    folders = {"maze": tmp_path / "maze", "sudoku": tmp_path / "sudoku", "rules": tmp_path / "rules" / "train-tasks"}
    for task, folder in folders.items():
        found = load_metadata(str(folder), "test")
        assert (found.vocab_size, found.seq_len, found.task) == (6, 16, task)
        assert dataset_codec([found]).name == task
    assert dataset_codec([load_metadata(str(folders["sudoku"]), "test")]).box == (2, 2)

    for folder in folders.values():
        strip_task(folder)
    for task in ("maze", "sudoku"):
        with pytest.raises(TaskError, match="cannot tell the task of .*: it could be maze or sudoku"):
            dataset_codec([load_metadata(str(folders[task]), "test")], where=str(folders[task]),
                          needed_for="test_time.augmentations")
    assert dataset_codec([load_metadata(str(folders["rules"]), "test")], needed_for="x") is None


def test_a_puzzle_in_text_form_is_read_by_one_task():
    assert text_codec("53..7....6..195....98....6.8...", None).name == "sudoku"
    assert text_codec("#####\n#S G#\n#####\n", None).name == "maze"
    assert text_codec('{"test": []}', None).name == "arc"
    assert text_codec("[[1, 2]]", "task.json").name == "arc"
    with pytest.raises(TaskError, match="it is no task's text form; pass task=<one of arc, maze, rules, sudoku>"):
        text_codec("x?", None)
