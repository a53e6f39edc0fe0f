"""The tasks of an HRM-format dataset, and datasets cut from it: one task's puzzles, or demonstrations held out to
choose a number of training steps (tools/adapt.py's scope=per_task and select=demos).

In the format a group is one task: an original puzzle and its augmentations, each with an identifier of its own,
whose examples are the task's pairs in the same order in every augmentation (tasks/arc/build.py,
tasks/rules/build.py). A task's test puzzles carry the identifiers of its demonstration puzzles. A dataset
whose puzzles all have the blank identifier (Sudoku, mazes) does not say which task a test puzzle belongs to.

Cut datasets number their identifiers from a given first one (those below are blank: tools/adapt.py puts new
puzzles' rows after a checkpoint's trained rows) and keep the source's other metadata; identifiers.json gets the
matching names.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from dataset.builder_common import ARRAY_FIELDS, BLANK_IDENTIFIER, write_identifiers, write_split
from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import load_metadata
from tasks.arc.codec import parse_augmentation_name
from utils.errors import UserError

Arrays = Dict[str, np.ndarray]


class TaskSplitError(UserError, ValueError):
    """A dataset whose tasks cannot be told apart; the message says why and what to use instead."""


@dataclass(frozen=True)
class DatasetTask:
    name: str
    identifiers: tuple  # the identifiers of its puzzles, in the source dataset's numbering


def read_split(path: str, split: str) -> tuple:
    """(metadata, {set name: its five arrays, loaded}) of one split of a dataset folder."""
    metadata = load_metadata(path, split)
    sets = {}
    for set_name in metadata.sets:
        sets[set_name] = {field: np.load(os.path.join(path, split, f"{set_name}__{field}.npy"))
                          for field in ARRAY_FIELDS}
    return metadata, sets


def identifier_names(path: str) -> Optional[List[str]]:
    file = os.path.join(path, "identifiers.json")
    if not os.path.isfile(file):
        return None
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def dataset_tasks(path: str) -> List[DatasetTask]:
    """The tasks of a dataset's train split (one per group), named after their puzzles' identifiers (an ARC
    augmentation's name gives its task's name); every test puzzle must belong to one of them."""
    metadata, sets = read_split(path, "train")
    names = identifier_names(path)
    tasks: List[DatasetTask] = []
    owner: Dict[int, int] = {}
    for arrays in sets.values():
        ids, groups = arrays["puzzle_identifiers"], arrays["group_indices"]
        for start, end in zip(groups[:-1], groups[1:]):
            task_ids = tuple(int(i) for i in ids[start:end])
            if metadata.blank_identifier_id in task_ids:
                raise TaskSplitError(f"{path}: its demonstration puzzles have the blank identifier, so nothing says "
                                     f"which task a test puzzle belongs to; use scope=all")
            for identifier in task_ids:
                if owner.setdefault(identifier, len(tasks)) != len(tasks):
                    raise TaskSplitError(f"{path}: identifier {identifier} is in two groups of the train split, so "
                                         f"it does not say which task its puzzles belong to; use scope=all")
            name = parse_augmentation_name(names[task_ids[0]])[0] if names else f"task{len(tasks)}"
            tasks.append(DatasetTask(name=name, identifiers=task_ids))
    seen: Dict[str, int] = {}
    for index, task in enumerate(tasks):  # two groups of one name (e.g. no identifiers.json names) stay apart
        if task.name in seen:
            tasks[index] = DatasetTask(name=f"{task.name}-{index}", identifiers=task.identifiers)
        seen[task.name] = index
    _, test_sets = read_split(path, "test")
    for arrays in test_sets.values():
        strays = sorted(set(arrays["puzzle_identifiers"].tolist()) - set(owner))
        if strays:
            raise TaskSplitError(f"{path}: test puzzles with identifier {strays[0]} have no demonstrations in the "
                                 f"train split, so they belong to no task; use scope=all")
    return tasks


def _select(arrays: Arrays, keep_puzzle: np.ndarray, keep_example: np.ndarray) -> Arrays:
    """The puzzles of `keep_puzzle` with their examples of `keep_example`; groups left empty are dropped, and so
    are puzzles left without examples."""
    pidx, gidx = arrays["puzzle_indices"], arrays["group_indices"]
    counts = np.add.reduceat(keep_example.astype(np.int64), pidx[:-1]) if len(pidx) > 1 else np.zeros(0, np.int64)
    counts = np.where(np.diff(pidx) == 0, 0, counts)  # reduceat reads one element for an empty puzzle
    keep_puzzle = keep_puzzle & (counts > 0)
    example_of_kept = np.repeat(keep_puzzle, np.diff(pidx)) & keep_example
    group_of_puzzle = np.repeat(np.arange(len(gidx) - 1), np.diff(gidx))
    group_counts = np.bincount(group_of_puzzle[keep_puzzle], minlength=len(gidx) - 1)
    return {
        "inputs": arrays["inputs"][example_of_kept],
        "labels": arrays["labels"][example_of_kept],
        "puzzle_identifiers": arrays["puzzle_identifiers"][keep_puzzle],
        "puzzle_indices": np.concatenate([[0], np.cumsum(counts[keep_puzzle])]).astype(np.int32),
        "group_indices": np.concatenate([[0], np.cumsum(group_counts[group_counts > 0])]).astype(np.int32),
    }


def write_cut(source: str, path: str, first: int, identifiers: Optional[Sequence[int]] = None,
              held_out_fold: Optional[int] = None) -> int:
    """Write the puzzles of `identifiers` (default: every puzzle of the train split, the blank identifier's too)
    to `path`, numbered from `first` in that order (0 is the blank identifier, for padding; identifiers.json gets
    the matching names). Returns the number of test examples written.

    Without `held_out_fold`: their demonstration puzzles (train) and test puzzles (test). With it: their
    demonstrations only (the source's test split is never read), one pair of every puzzle moved to the test
    split: the last pair for fold 0, the one before it for fold 1, and so on; a puzzle with too few pairs
    (it needs fold + 1, and 2 at least) keeps them all in train. 0 test examples: nothing could be held out,
    nothing is written."""
    metadata, sets = read_split(source, "train")
    blank = metadata.blank_identifier_id
    keep = identifiers
    if identifiers is None:  # every puzzle; blank ones (e.g. Sudoku's) share a new identifier of their own
        found = np.concatenate([a["puzzle_identifiers"] for a in sets.values()])
        identifiers = sorted(set(found.tolist()))
    wanted = np.asarray(list(identifiers), dtype=np.int64)
    if held_out_fold is None:
        test_metadata, test_sets = read_split(source, "test")
        cut = {"train": (metadata, _keep(sets, keep)), "test": (test_metadata, _keep(test_sets, keep))}
    else:
        train, test = {}, {}
        for set_name, arrays in _keep(sets, keep).items():
            pidx = arrays["puzzle_indices"]
            sizes = np.diff(pidx)
            can = (sizes >= held_out_fold + 1) & (sizes >= 2)
            held = np.zeros(len(arrays["inputs"]), dtype=bool)
            held[(pidx[1:] - 1 - held_out_fold)[can]] = True
            train[set_name] = _select(arrays, np.ones(len(sizes), dtype=bool), ~held)
            if can.any():
                test[set_name] = _select(arrays, can, held)
        cut = {"train": (metadata, train), "test": (metadata, test)}
    test_examples = sum(len(a["inputs"]) for a in cut["test"][1].values())
    if held_out_fold is not None and test_examples == 0:
        return 0
    size = max(int(wanted.max(initial=0)), blank) + 1
    renumber = np.zeros(size, dtype=np.int32)  # identifiers not kept -> 0
    renumber[wanted] = np.arange(first, first + len(wanted), dtype=np.int32)
    for split, (split_metadata, split_sets) in cut.items():
        for arrays in split_sets.values():
            arrays["puzzle_identifiers"] = renumber[arrays["puzzle_identifiers"]]
        puzzles = sum(len(a["puzzle_identifiers"]) for a in split_sets.values())
        examples = sum(len(a["inputs"]) for a in split_sets.values())
        write_split(path, split, PuzzleDatasetMetadata(**{
            **split_metadata.model_dump(exclude_unset=True), "blank_identifier_id": 0,
            "num_puzzle_identifiers": first + len(wanted), "sets": list(split_sets),
            "total_groups": sum(len(a["group_indices"]) - 1 for a in split_sets.values()),
            "mean_puzzle_examples": examples / max(puzzles, 1)}), split_sets)
    names = identifier_names(source)
    write_identifiers(path, [BLANK_IDENTIFIER] * first + [names[i] if names else f"puzzle{i}" for i in wanted])
    return test_examples


def _keep(sets: Dict[str, Arrays], identifiers: Optional[Sequence[int]]) -> Dict[str, Arrays]:
    """Every set's puzzles whose identifier is one of `identifiers` (None: all), with all their examples."""
    kept = {}
    for set_name, arrays in sets.items():
        ids = arrays["puzzle_identifiers"]
        keep = np.ones(len(ids), dtype=bool) if identifiers is None else np.isin(ids, list(identifiers))
        if keep.any():
            kept[set_name] = _select(arrays, keep, np.ones(len(arrays["inputs"]), dtype=bool))
    return kept


def count_examples(path: str, split: str) -> int:
    """The number of examples in a split of a dataset folder."""
    metadata = load_metadata(path, split)
    return sum(np.load(os.path.join(path, split, f"{s}__inputs.npy"), mmap_mode="r").shape[0] for s in metadata.sets)
