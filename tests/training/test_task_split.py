"""training/task_split.py: a dataset's tasks, one task cut out, demonstrations held out; checked on arrays written by
hand (every example's input is its own index, so which rows went where can be read off)."""
import json

import numpy as np
import pytest

from dataset.builder_common import write_identifiers, write_split
from dataset.common import PuzzleDatasetMetadata
from training.task_split import TaskSplitError, dataset_tasks, read_split, write_cut


def write_dataset(path, train_ids=(1, 2, 3), test_ids=(1, 2, 3)):
    """Train: task a (puzzles 1 and 2, an augmentation: one group, 3 pairs each), task b (puzzle 3, 1 pair).
    Test: one example per puzzle, inputs 100 + index."""
    sizes = {"train": [3, 3, 1], "test": [1, 1, 1]}
    groups = {"train": [0, 2, 3], "test": [0, 2, 3]}
    for split, ids in (("train", train_ids), ("test", test_ids)):
        examples = sum(sizes[split])
        base = 0 if split == "train" else 100
        inputs = np.stack([np.arange(base, base + examples)] * 2, axis=1).astype(np.int32)
        arrays = {"inputs": inputs, "labels": inputs + 1, "puzzle_identifiers": np.array(ids, dtype=np.int32),
                  "puzzle_indices": np.concatenate([[0], np.cumsum(sizes[split])]).astype(np.int32),
                  "group_indices": np.array(groups[split], dtype=np.int32)}
        metadata = PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=200,
                                         seq_len=2, num_puzzle_identifiers=4, total_groups=2,
                                         mean_puzzle_examples=examples / 3, sets=["all"])
        write_split(path, split, metadata, {"all": arrays})
    write_identifiers(path, ["<blank>", "a", "a_t1_0123456789", "b"])
    return str(path)


def cut(path, split):
    metadata, sets = read_split(str(path), split)
    arrays = sets["all"]
    return metadata, arrays["inputs"][:, 0].tolist(), arrays["puzzle_identifiers"].tolist(), \
        arrays["puzzle_indices"].tolist(), arrays["group_indices"].tolist()


def test_tasks_are_the_train_groups_named_after_their_puzzles(tmp_path):
    tasks = dataset_tasks(write_dataset(tmp_path / "d"))
    assert [(t.name, t.identifiers) for t in tasks] == [("a", (1, 2)), ("b", (3,))]


def test_one_task_cut_out_numbered_from_first(tmp_path):
    source = write_dataset(tmp_path / "d")
    assert write_cut(source, str(tmp_path / "a"), 10, (1, 2)) == 2
    metadata, inputs, ids, puzzles, groups = cut(tmp_path / "a", "train")
    assert (inputs, ids, puzzles, groups) == ([0, 1, 2, 3, 4, 5], [10, 11], [0, 3, 6], [0, 2])
    assert (metadata.num_puzzle_identifiers, metadata.total_groups, metadata.mean_puzzle_examples) == (12, 1, 3.0)
    _, inputs, ids, puzzles, groups = cut(tmp_path / "a", "test")
    assert (inputs, ids, puzzles, groups) == ([100, 101], [10, 11], [0, 1, 2], [0, 2])
    names = json.loads((tmp_path / "a" / "identifiers.json").read_text())
    assert names == ["<blank>"] * 10 + ["a", "a_t1_0123456789"]


def test_held_out_demonstrations_fold_by_fold(tmp_path):
    source = write_dataset(tmp_path / "d")
    # Fold 0 holds out the last pair of puzzles 1 and 2 (rows 2 and 5); puzzle 3 has one pair and keeps it.
    assert write_cut(source, str(tmp_path / "f0"), 1, held_out_fold=0) == 2
    assert cut(tmp_path / "f0", "train")[1:] == ([0, 1, 3, 4, 6], [1, 2, 3], [0, 2, 4, 5], [0, 2, 3])
    assert cut(tmp_path / "f0", "test")[1:] == ([2, 5], [1, 2], [0, 1, 2], [0, 2])
    assert write_cut(source, str(tmp_path / "f1"), 1, held_out_fold=1) == 2
    assert cut(tmp_path / "f1", "test")[1] == [1, 4]
    assert write_cut(source, str(tmp_path / "f2"), 1, held_out_fold=2) == 2
    assert cut(tmp_path / "f2", "test")[1] == [0, 3]
    assert write_cut(source, str(tmp_path / "f3"), 1, held_out_fold=3) == 0  # 3 pairs: nothing left to hold out
    assert not (tmp_path / "f3").exists()


def test_held_out_cut_never_reads_the_test_split(tmp_path):
    source = write_dataset(tmp_path / "d")
    for name in ("inputs", "labels"):
        (tmp_path / "d" / "test" / f"all__{name}.npy").write_bytes(b"not an array")
    assert write_cut(source, str(tmp_path / "f0"), 1, held_out_fold=0) == 2


@pytest.mark.parametrize("train_ids, test_ids, message", [
    ((0, 0, 0), (0, 0, 0), "blank identifier"),
    ((1, 2, 1), (1, 2, 1), "identifier 1 is in two groups"),
    ((1, 2, 3), (1, 2, 4), "identifier 4 have no demonstrations"),
])
def test_datasets_that_do_not_say_which_task(tmp_path, train_ids, test_ids, message):
    with pytest.raises(TaskSplitError, match=message):
        dataset_tasks(write_dataset(tmp_path / "d", train_ids, test_ids))
