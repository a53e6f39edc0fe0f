"""dataset/build_rule_tasks_dataset.py: tasks whose rule is told only by their identifier, some held out."""
import json

import numpy as np
import pytest

from dataset.builder_common import load_split
from dataset.puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig
from tasks.rules.build import build, main
from utils.cli import run_command


def test_tasks_recolour_by_their_own_rule_and_held_out_rules_are_new(tmp_path):
    build(str(tmp_path / "rules"), tasks=12, held_out=4, colours=4, side=3, demos=5, tests=2, seed=1)
    rules = {}
    for name in ("train-tasks", "new-tasks"):
        folder = tmp_path / "rules" / name
        names = json.loads((folder / "identifiers.json").read_text())
        assert names[0] == "<blank>" and len(names) == (13 if name == "train-tasks" else 5)
        for split, per_task in (("train", 5), ("test", 2)):
            meta, arrays = load_split(folder, split)
            all_ = arrays["all"]
            assert meta.vocab_size == 5 and meta.seq_len == 9 and meta.num_puzzle_identifiers == len(names)
            assert np.diff(all_["puzzle_indices"]).tolist() == [per_task] * (len(names) - 1)
            for puzzle, identifier in enumerate(all_["puzzle_identifiers"]):
                rule = np.array([int(c) for c in names[identifier].split("_")[1]])
                rows = slice(all_["puzzle_indices"][puzzle], all_["puzzle_indices"][puzzle + 1])
                inputs, labels = all_["inputs"][rows].astype(int), all_["labels"][rows].astype(int)
                assert inputs.min() >= 1 and np.array_equal(labels, rule[inputs - 1] + 1)  # the task's recolouring
                rules.setdefault(name, set()).add(rule.tobytes())
    assert len(rules["train-tasks"]) == 12 and len(rules["new-tasks"]) == 4
    assert not rules["train-tasks"] & rules["new-tasks"]  # held-out tasks have rules training never showed


def test_loads_as_an_hrm_dataset_and_same_seed_same_files(tmp_path):
    for out in ("a", "b"):
        build(str(tmp_path / out), tasks=6, held_out=2, colours=4, side=3, demos=4, tests=1, seed=3)
    for name in ("train-tasks/train/all__inputs.npy", "new-tasks/test/all__labels.npy"):
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))
    loader = PuzzleDataset(PuzzleDatasetConfig(seed=0, dataset_path=str(tmp_path / "a" / "train-tasks"),
                                               global_batch_size=4, test_set_mode=False, epochs_per_iter=1, rank=0,
                                               num_replicas=1))
    assert len(list(loader)) == 6  # 6 tasks x 4 demonstrations / 4


def test_too_many_tasks_for_the_colours_is_refused(tmp_path, capsys):
    assert run_command(main, ["--output-dir", str(tmp_path / "x"), "--tasks", "5", "--held-out", "2", "--colours",
                          "3"]) == 2
    assert "need 7 distinct colour permutations, but 3 colours have only 6" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag", ["--tasks", "--side"])
def test_flags_must_be_positive(tmp_path, flag):
    with pytest.raises(SystemExit):
        main(["--output-dir", str(tmp_path / "x"), flag, "0"])
