"""Batch loader for HRM puzzle datasets (docs/DESIGN.md §6).

A dataset folder holds one sub-folder per split (``train/``, ``test/``) with ``dataset.json`` (see
:class:`dataset.common.PuzzleDatasetMetadata`) and, for every set name ``S`` listed there, the arrays
``S__inputs.npy``, ``S__labels.npy`` (examples x seq_len), ``S__puzzle_identifiers.npy`` (one id per puzzle),
``S__puzzle_indices.npy`` (example offsets per puzzle, puzzles + 1 entries) and ``S__group_indices.npy``
(puzzle offsets per group, groups + 1 entries).

:class:`PuzzleDataset` is a ``torch.utils.data.IterableDataset`` yielding
``(set_name, batch, global_effective_batch_size)`` where ``batch`` holds this rank's slice of a global batch:
``inputs`` and ``labels`` (local_batch, seq_len) int32 and ``puzzle_identifiers`` (local_batch,) int32.

Training (``test_set_mode=False``) — one call to ``__iter__`` is one *iteration* of ``epochs_per_iter`` epochs:
for every set (in ``metadata.sets`` order) an iteration counter is incremented and a fresh random generator is
derived from ``(seed, counter)`` (:func:`iteration_rng`); each epoch shuffles the groups, each visited group
contributes one puzzle chosen uniformly among its puzzles, and that puzzle's examples fill the global batch (a
random subset without replacement when they do not all fit in the space left; the rest of that puzzle is not
used). Batches may straddle epochs; the last incomplete batch of the iteration is dropped.

Evaluation (``test_set_mode=True``) walks every example of every set in file order; the last global batch is
padded (``pad_id`` inputs, IGNORE_LABEL_ID (-100) labels, ``blank_identifier_id`` puzzle ids) and the yielded
effective batch size counts only real examples. No randomness is involved.

Several datasets (``dataset_paths`` with more than one folder, TRM's ``data_paths``) are trained as one: their
metadata must agree on vocab_size, seq_len, pad_id, ignore_label_id and blank_identifier_id; the sets of the
i-th folder (i > 0) are renamed ``<set><i>`` (TRM's names); groups, puzzles and examples are concatenated, and the
puzzle identifiers of each folder are shifted past those of the folders before it, so that puzzles of different
datasets never share an embedding row (TRM's loader lets their identifiers collide).

Exact resume: :meth:`PuzzleDataset.state_dict` records the iteration counter and how many batches the
in-progress iteration has yielded; a new loader given that state through :meth:`PuzzleDataset.load_state_dict`
regenerates the same order on its next ``__iter__`` and skips the batches already yielded (their indices are
recomputed so the random stream stays aligned, but no array rows are read). The state does not depend on
``rank``/``num_replicas``, so a run may resume on a different number of processes with the same global batch.
State tracking needs the dataset to be iterated in the process that saves the state: iterate it directly or
through ``DataLoader(dataset, batch_size=None, num_workers=0)``. With ``num_workers=1`` batches are correct
only with ``persistent_workers=True`` (otherwise each epoch's worker starts from a copy of the main process's
counter) and the main process's ``state_dict()`` does not see the worker's progress; more workers are refused.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pydantic
import torch
from torch.utils.data import IterableDataset, get_worker_info

from dataset.common import IGNORE_LABEL_ID, PuzzleDatasetMetadata
from utils.errors import UserError

__all__ = [
    "DatasetFormatError",
    "DatasetSource",
    "DatasetNotFoundError",
    "PuzzleDataset",
    "PuzzleDatasetConfig",
    "eval_batches",
    "iteration_rng",
    "load_merged_metadata",
    "load_metadata",
]

_ARRAY_FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
_MMAP_FIELDS = ("inputs", "labels")  # may be large: memory-mapped, rows read on demand
_STATE_VERSION = 1


class DatasetFormatError(UserError, ValueError):
    """A dataset's metadata or arrays are malformed; the message names the file."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset folder, split folder, ``dataset.json`` or array file is missing."""


class PuzzleDatasetConfig(pydantic.BaseModel):
    """Loader settings; one per (split, rank)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    seed: int
    dataset_paths: List[str] = pydantic.Field(min_length=1)
    global_batch_size: int
    test_set_mode: bool
    epochs_per_iter: int  # epochs yielded per call to __iter__ (training only)
    rank: int
    num_replicas: int
    # Identifiers of the (first) dataset are shifted by this many rows: its puzzles take rows after those of a
    # trained table (tools/adapt.py learns embeddings for new puzzles that way).
    identifier_offset: int = pydantic.Field(0, ge=0)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _one_path_form(cls, data):
        """`dataset_path=P` is the one-dataset form of `dataset_paths=[P]`."""
        if isinstance(data, dict) and "dataset_path" in data:
            data = dict(data)
            if data.get("dataset_paths"):
                raise ValueError("give dataset_path or dataset_paths, not both")
            data["dataset_paths"] = [data.pop("dataset_path")]
        return data


def _build_hint(dataset_path: str) -> str:
    """One-line suggestion of the builder command that creates `dataset_path`."""
    name = os.path.basename(os.path.normpath(dataset_path)).lower()
    if "maze" in name:
        builders = ["build_maze_dataset.py"]
    elif "arc" in name:
        builders = ["build_arc_dataset.py"]
    elif "sudoku" in name:
        builders = ["build_sudoku_dataset.py"]
    else:
        builders = ["build_sudoku_dataset.py", "build_maze_dataset.py", "build_arc_dataset.py"]
    cmd = f"python dataset/{builders[0]} --output-dir {dataset_path}"
    if builders[0] == "build_sudoku_dataset.py":
        cmd += " --subsample-size 1000 --num-aug 1000"
    others = f" (or {' / '.join(builders[1:])})" if len(builders) > 1 else ""
    return f"build one first, e.g. `{cmd}`{others}, or point data_path at an existing dataset folder"


def _not_found(what: str, path: str, dataset_path: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{what} not found: {path} — {_build_hint(dataset_path)}")


def load_metadata(dataset_path: str, split: str) -> PuzzleDatasetMetadata:
    """Read ``<dataset_path>/<split>/dataset.json`` without touching the arrays.

    Raises :class:`DatasetNotFoundError` (a ``FileNotFoundError``) naming the missing path, and ``ValueError``
    for a ``dataset.json`` that is not valid metadata.
    """
    if not os.path.isdir(dataset_path):
        raise _not_found("Dataset folder", dataset_path, dataset_path)
    split_dir = os.path.join(dataset_path, split)
    if not os.path.isdir(split_dir):
        present = sorted(d for d in os.listdir(dataset_path) if os.path.isdir(os.path.join(dataset_path, d)))
        raise _not_found(f"Split '{split}' (folders present: {present or 'none'})", split_dir, dataset_path)
    meta_path = os.path.join(split_dir, "dataset.json")
    if not os.path.isfile(meta_path):
        raise _not_found("Dataset metadata", meta_path, dataset_path)
    try:
        with open(meta_path, "r") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetFormatError(f"Cannot read dataset metadata {meta_path}: {e}") from None
    try:
        return PuzzleDatasetMetadata.model_validate(raw)
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}" for err in e.errors())
        raise DatasetFormatError(f"Invalid dataset metadata {meta_path}: {problems}") from None


# Metadata fields that every dataset trained together must share.
_SHARED_FIELDS = ("vocab_size", "seq_len", "pad_id", "ignore_label_id", "blank_identifier_id")


class DatasetSource(pydantic.BaseModel):
    """One folder of a merged dataset: its own metadata, its set names in the merged dataset and its identifier
    offset."""

    path: str
    metadata: PuzzleDatasetMetadata
    sets: Dict[str, str]  # the folder's set name -> its name in the merged dataset
    identifier_offset: int


def load_merged_metadata(dataset_paths: List[str], split: str, identifier_offset: int = 0
                         ) -> Tuple[PuzzleDatasetMetadata, List[DatasetSource]]:
    """Metadata of several dataset folders trained as one (see the module docstring), and where each set is from;
    the identifiers start after `identifier_offset` rows.

    One folder gives its own metadata unchanged (but for the offset). For several: total_groups and
    num_puzzle_identifiers add up,
    mean_puzzle_examples is weighted by groups (so total_groups x mean_puzzle_examples, the examples of one
    epoch, adds up too), sets are renamed. A folder whose shared fields differ from the first's is a
    DatasetFormatError naming both.
    """
    metadatas = [load_metadata(path, split) for path in dataset_paths]
    first = metadatas[0]
    sources, sets, offset = [], [], identifier_offset
    for i, (path, metadata) in enumerate(zip(dataset_paths, metadatas)):
        differ = [f"{k} {getattr(metadata, k)} (first: {getattr(first, k)})" for k in _SHARED_FIELDS
                  if getattr(metadata, k) != getattr(first, k)]
        if differ:
            raise DatasetFormatError(f"data_paths: {path} does not agree with {dataset_paths[0]}: "
                                     f"{', '.join(differ)}; datasets trained together must share "
                                     f"{', '.join(_SHARED_FIELDS)}")
        names = {s: s if i == 0 else f"{s}{i}" for s in metadata.sets}
        sources.append(DatasetSource(path=path, metadata=metadata, sets=names, identifier_offset=offset))
        sets.extend(names.values())
        offset += metadata.num_puzzle_identifiers
    if len(metadatas) == 1:
        return first.model_copy(update=dict(num_puzzle_identifiers=offset)), sources
    total_groups = sum(m.total_groups for m in metadatas)
    examples_per_epoch = sum(m.total_groups * m.mean_puzzle_examples for m in metadatas)
    puzzles = [m.total_puzzles for m in metadatas]
    same_task = all((m.task, m.task_options) == (first.task, first.task_options) for m in metadatas)
    merged = first.model_copy(update=dict(
        num_puzzle_identifiers=offset, total_groups=total_groups, sets=sets,
        task=first.task if same_task else None, task_options=first.task_options if same_task else None,
        mean_puzzle_examples=examples_per_epoch / total_groups if total_groups else 0.0,
        total_puzzles=sum(puzzles) if None not in puzzles else None))
    return merged, sources


def iteration_rng(seed: int, counter: int) -> np.random.Generator:
    """Generator for training iteration `counter` (1-based, counted per set) of a run seeded with `seed`.

    Seeded from the pair (seed, counter) through a SeedSequence, so that — unlike ``Philox(seed + counter)`` —
    runs with neighbouring seeds do not replay each other's shifted epoch orders. Negative seeds are allowed.
    """
    entropy = [seed, counter] if seed >= 0 else [-seed, counter, 1]
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(entropy)))


# ----------------------------------------------------------------------------------------------------------
# Index generation (pure functions over the small index arrays; no example rows are read here)


def _train_batch_plans(
    rng: np.random.Generator,
    group_indices: np.ndarray,
    puzzle_indices: np.ndarray,
    epochs: int,
    global_batch_size: int,
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield ``(puzzles, last_pick)`` for every complete global batch of one iteration: the puzzles whose
    examples fill it, in order (all examples of each, in file order, but the last), and which examples of the
    last puzzle it takes (positions within that puzzle, sorted).

    Group order: one ``rng.permutation`` per epoch, drawn lazily when the walk reaches that epoch (memory stays
    O(groups) whatever ``epochs`` is), followed by one uniform puzzle draw per group of that epoch. Batches are
    filled greedily along the concatenated order; the puzzle that overflows a batch contributes a random subset
    (``rng.choice`` without replacement) of the space left and the walk resumes at the next group. The stream
    of draws depends only on the arguments, so replaying it reproduces the same batches; no example is read.
    """
    num_groups = group_indices.size - 1
    puzzle_sizes = np.diff(puzzle_indices)
    group_lo, group_hi = group_indices[:-1], group_indices[1:]

    pending = np.empty(0, dtype=np.int64)  # chosen puzzle per walk position not consumed yet
    cum = np.empty(0, dtype=np.int64)  # inclusive cumulative example counts over `pending`
    pos = 0  # first unconsumed position in `pending`
    epochs_drawn = 0
    while True:
        consumed = int(cum[pos - 1]) if pos > 0 else 0
        # Draw further epochs until the pending positions can fill a batch (or no epochs are left).
        while (int(cum[-1]) if cum.size else 0) - consumed < global_batch_size and epochs_drawn < epochs:
            order = rng.permutation(num_groups)
            chosen = rng.integers(group_lo[order], group_hi[order])
            pending = np.concatenate([pending[pos:], chosen])
            cum = np.cumsum(puzzle_sizes[pending])
            pos, consumed = 0, 0
            epochs_drawn += 1
        if (int(cum[-1]) if cum.size else 0) - consumed < global_batch_size:
            return  # the incomplete tail is dropped

        last = int(np.searchsorted(cum, consumed + global_batch_size, side="left"))
        room_for_last = global_batch_size - (int(cum[last - 1]) - consumed if last > pos else 0)
        last_size = int(puzzle_sizes[pending[last]])
        # Last puzzle: everything if it fits exactly, else a random subset of the room left.
        if last_size > room_for_last:
            pick = np.sort(rng.choice(last_size, room_for_last, replace=False))
        else:
            pick = np.arange(last_size, dtype=np.int64)
        yield pending[pos : last + 1], pick
        pos = last + 1


def _train_batch_indices(
    rng: np.random.Generator,
    group_indices: np.ndarray,
    puzzle_indices: np.ndarray,
    epochs: int,
    global_batch_size: int,
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield ``(example_indices, puzzle_indices_per_example)`` for every complete global batch of one iteration
    (the batches of :func:`_train_batch_plans`)."""
    puzzle_sizes = np.diff(puzzle_indices)
    for puzzles, pick in _train_batch_plans(rng, group_indices, puzzle_indices, epochs, global_batch_size):
        starts = puzzle_indices[puzzles]
        # Full puzzles: all their examples, in file order.
        full_counts = puzzle_sizes[puzzles[:-1]]
        offsets = np.arange(int(full_counts.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(full_counts) - full_counts, full_counts
        )
        full_examples = np.repeat(starts[:-1], full_counts) + offsets
        examples = np.concatenate([full_examples, starts[-1] + pick])
        counts = np.concatenate([full_counts, [pick.size]])
        yield examples, np.repeat(puzzles, counts)


def eval_batches(num_examples: int, global_batch_size: int, rank: int, num_replicas: int
                 ) -> Iterator[Tuple[np.ndarray, int]]:
    """For every global evaluation batch of a set of `num_examples`, in order: the examples rank `rank` of
    `num_replicas` runs (consecutive, up to global_batch_size / num_replicas; fewer, or none, in the last batch) and
    the batch's number of real examples. tools/export_predictions.py puts saved rows back in order with it."""
    local = global_batch_size // num_replicas
    for start in range(0, num_examples, global_batch_size):
        end = min(start + global_batch_size, num_examples)
        lo, hi = min(start + rank * local, end), min(start + (rank + 1) * local, end)
        yield np.arange(lo, hi, dtype=np.int64), end - start


# ----------------------------------------------------------------------------------------------------------


class PuzzleDataset(IterableDataset):
    """Iterable over ``(set_name, batch, global_effective_batch_size)`` for one split and one rank.

    ``metadata`` is read in ``__init__``; the arrays are opened on first iteration (inputs/labels
    memory-mapped). See the module docstring for the sampling rules and resume semantics.
    """

    def __init__(self, config: PuzzleDatasetConfig, split: str = "train"):
        super().__init__()
        if config.global_batch_size <= 0:
            raise ValueError(f"global_batch_size must be positive, got {config.global_batch_size}")
        if config.num_replicas <= 0:
            raise ValueError(f"num_replicas must be positive, got {config.num_replicas}")
        if config.global_batch_size % config.num_replicas != 0:
            raise ValueError(
                f"global_batch_size ({config.global_batch_size}) must be divisible by the number of processes "
                f"({config.num_replicas}); pick a global_batch_size that is a multiple of {config.num_replicas} "
                f"or change the number of processes"
            )
        if not 0 <= config.rank < config.num_replicas:
            raise ValueError(f"rank must be in [0, {config.num_replicas}), got {config.rank}")
        if not config.test_set_mode and config.epochs_per_iter <= 0:
            raise ValueError(f"epochs_per_iter must be positive for training, got {config.epochs_per_iter}")

        self.config = config
        self.split = split
        self.metadata, self.sources = load_merged_metadata(config.dataset_paths, split, config.identifier_offset)
        # merged set name -> (index of its folder, the folder's source, the set's name in that folder)
        self._set_origin = {merged: (i, source, own) for i, source in enumerate(self.sources)
                            for own, merged in source.sets.items()}
        self.local_batch_size = config.global_batch_size // config.num_replicas

        self._data: Optional[Dict[str, Dict[str, np.ndarray]]] = None
        self._iters = 0  # training iteration counter: +1 per set per __iter__ (as the original loader)
        self._progress: Optional[List[int]] = None  # [counter at start, batches yielded] of the current iteration
        self._resume: Optional[Tuple[int, int]] = None  # set by load_state_dict, consumed by the next __iter__

    def source_of(self, set_name: str) -> Tuple[int, DatasetSource]:
        """(index in dataset_paths, source) of a set of the merged dataset."""
        index, source, _ = self._set_origin[set_name]
        return index, source

    # -- state ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Loader position, rank-independent: ``iters`` and ``batches_yielded``.

        ``iters`` is the iteration counter at the start of the iteration in progress (or, when none is, the
        counter the next ``__iter__`` starts from); ``batches_yielded`` is how many batches the iteration in
        progress has yielded (a batch counts as soon as it has been handed out). A state loaded but not yet
        used by an ``__iter__`` is returned unchanged. ``seed``, ``global_batch_size``, ``epochs_per_iter`` and
        ``test_set_mode`` are recorded to detect a resume under settings that change the order.
        """
        if self._resume is not None:
            iters, done = self._resume
        elif self._progress is not None:
            iters, done = self._progress
        else:
            iters, done = self._iters, 0
        return {
            "version": _STATE_VERSION,
            "iters": int(iters),
            "batches_yielded": int(done),
            "seed": self.config.seed,
            "global_batch_size": self.config.global_batch_size,
            "epochs_per_iter": self.config.epochs_per_iter,
            "test_set_mode": self.config.test_set_mode,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict` output: the next ``__iter__`` replays iteration ``iters`` (same order)
        and skips its first ``batches_yielded`` batches; later iterations follow as in the saved run.

        Only ``iters`` is required. A state saved under a different seed, global batch size, epochs_per_iter or
        mode is accepted with a warning (the counter still advances, but the order will not match).
        """
        if not isinstance(state, dict) or "iters" not in state:
            raise ValueError("PuzzleDataset state must be a dict with at least an 'iters' entry (from state_dict())")
        iters, done = state["iters"], state.get("batches_yielded", 0)
        for key, value in (("iters", iters), ("batches_yielded", done)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"PuzzleDataset state '{key}' must be a non-negative integer, got {value!r}")
        changed = [
            f"{k} {state[k]!r} -> {getattr(self.config, k)!r}"
            for k in ("seed", "global_batch_size", "epochs_per_iter", "test_set_mode")
            if k in state and state[k] != getattr(self.config, k)
        ]
        if changed:
            warnings.warn(
                "Resuming the data loader with different settings (" + ", ".join(changed) + "): "
                "the batch order will not continue the saved run exactly",
                stacklevel=2,
            )
        self._resume = (int(iters), int(done))
        self._progress = None
        self._iters = int(iters)

    # -- data -----------------------------------------------------------------------------------------------

    def _load(self) -> Dict[str, Dict[str, np.ndarray]]:
        if self._data is not None:
            return self._data
        seq_len = self.metadata.seq_len
        data: Dict[str, Dict[str, np.ndarray]] = {}
        for merged_name in self.metadata.sets:
            _, source, set_name = self._set_origin[merged_name]
            split_dir = os.path.join(source.path, self.split)
            arrays = {}
            for field in _ARRAY_FIELDS:
                path = os.path.join(split_dir, f"{set_name}__{field}.npy")
                if not os.path.isfile(path):
                    raise _not_found(f"Array file of set '{set_name}'", path, source.path)
                try:
                    arrays[field] = np.load(path, mmap_mode="r" if field in _MMAP_FIELDS else None)
                except (ValueError, OSError, EOFError) as err:  # truncated, not an array, pickled objects
                    raise DatasetFormatError(f"{path} is not a readable array file ({str(err).splitlines()[0]}); "
                                             f"it may be truncated: rebuild the dataset") from None

            def bad(msg: str) -> DatasetFormatError:
                return DatasetFormatError(f"Corrupt dataset {split_dir} (set '{set_name}'): {msg}")

            inputs, labels = arrays["inputs"], arrays["labels"]
            if inputs.ndim != 2 or inputs.shape[1] != seq_len:
                raise bad(f"inputs have shape {inputs.shape}, expected (examples, {seq_len})")
            if labels.shape != inputs.shape:
                raise bad(f"labels have shape {labels.shape}, inputs {inputs.shape}")
            pidx = arrays["puzzle_indices"].astype(np.int64)
            gidx = arrays["group_indices"].astype(np.int64)
            pids = arrays["puzzle_identifiers"].astype(np.int32) + np.int32(source.identifier_offset)
            num_examples = inputs.shape[0]
            if pidx.ndim != 1 or pidx.size < 1 or pidx[0] != 0 or pidx[-1] != num_examples or np.any(np.diff(pidx) < 0):
                raise bad(f"puzzle_indices must rise from 0 to the number of examples ({num_examples})")
            if pids.shape != (pidx.size - 1,):
                raise bad(f"{pids.size} puzzle_identifiers for {pidx.size - 1} puzzles")
            if gidx.ndim != 1 or gidx.size < 1 or gidx[0] != 0 or gidx[-1] != pids.size:
                raise bad(f"group_indices must rise from 0 to the number of puzzles ({pids.size})")
            if np.any(np.diff(gidx) <= 0):
                raise bad("every group needs at least one puzzle (group_indices must strictly increase)")
            arrays.update(puzzle_indices=pidx, group_indices=gidx, puzzle_identifiers=pids)
            data[merged_name] = arrays
        self._data = data
        return data

    def _collate(self, arrays: Dict[str, np.ndarray], examples: np.ndarray, puzzle_ids: np.ndarray,
                 pad_to: int) -> Dict[str, torch.Tensor]:
        """Gather rows `examples` and pad to `pad_to` rows (pad_id / IGNORE_LABEL_ID / blank id)."""
        seq_len = self.metadata.seq_len
        n = examples.size
        inputs = np.full((pad_to, seq_len), self.metadata.pad_id, dtype=np.int32)
        labels = np.full((pad_to, seq_len), IGNORE_LABEL_ID, dtype=np.int32)
        ids = np.full((pad_to,), self.metadata.blank_identifier_id, dtype=np.int32)
        if n:
            inputs[:n] = arrays["inputs"][examples]
            rows = np.asarray(arrays["labels"][examples]).astype(np.int32)
            if self.metadata.ignore_label_id is not None:
                rows[rows == self.metadata.ignore_label_id] = IGNORE_LABEL_ID
            labels[:n] = rows
            ids[:n] = arrays["puzzle_identifiers"][puzzle_ids]
        return {
            "inputs": torch.from_numpy(inputs),
            "labels": torch.from_numpy(labels),
            "puzzle_identifiers": torch.from_numpy(ids),
        }

    # -- iteration ------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Tuple[str, Dict[str, torch.Tensor], int]]:
        """Start one iteration (training: ``epochs_per_iter`` epochs of every set; evaluation: one pass).

        Bookkeeping happens here, eagerly: the counter advances by ``len(metadata.sets)`` in training, a pending
        resume state is consumed, and the returned generator updates ``state_dict()`` as it yields.
        """
        worker = get_worker_info()
        if worker is not None and worker.num_workers > 1:
            raise RuntimeError(
                f"PuzzleDataset is not sharded across DataLoader workers (each of the {worker.num_workers} "
                f"workers would yield every batch); use num_workers=0 or 1"
            )
        if self._resume is not None:
            start, skip = self._resume
            self._resume = None
        else:
            start, skip = self._iters, 0
        if not self.config.test_set_mode:
            self._iters = start + len(self.metadata.sets)
        progress = [start, skip]
        self._progress = progress
        if self.config.test_set_mode:
            gen = self._iter_eval(skip, progress)
        else:
            gen = self._iter_train(start, skip, progress)
        return gen

    def _finish(self, progress: List[int]) -> None:
        if self._progress is progress:
            self._progress = None

    def _iter_train(self, start: int, skip: int, progress: List[int]):
        data = self._load()
        B, L, r = self.config.global_batch_size, self.local_batch_size, self.config.rank
        for offset, set_name in enumerate(self.metadata.sets):
            arrays = data[set_name]
            rng = iteration_rng(self.config.seed, start + offset + 1)
            produced = 0
            for examples, puzzles in _train_batch_indices(
                rng, arrays["group_indices"], arrays["puzzle_indices"], self.config.epochs_per_iter, B
            ):
                produced += 1
                if skip > 0:
                    skip -= 1
                    continue
                batch = self._collate(arrays, examples[r * L : (r + 1) * L], puzzles[r * L : (r + 1) * L], L)
                progress[1] += 1
                yield set_name, batch, B
            if produced == 0:
                warnings.warn(
                    f"Set '{set_name}' of {os.path.join(self.source_of(set_name)[1].path, self.split)} has fewer examples "
                    f"over {self.config.epochs_per_iter} epoch(s) than one global batch ({B}): no training "
                    f"batch yielded; lower global_batch_size or raise epochs per iteration (eval_interval)",
                    stacklevel=2,
                )
        self._finish(progress)

    def _iter_eval(self, skip: int, progress: List[int]):
        data = self._load()
        for set_name in self.metadata.sets:
            arrays = data[set_name]
            for examples, size in eval_batches(arrays["inputs"].shape[0], self.config.global_batch_size,
                                               self.config.rank, self.config.num_replicas):
                if skip > 0:
                    skip -= 1
                    continue
                puzzles = np.searchsorted(arrays["puzzle_indices"], examples, side="right") - 1
                batch = self._collate(arrays, examples, puzzles, self.local_batch_size)
                progress[1] += 1
                yield set_name, batch, size
        self._finish(progress)

    def num_eval_batches(self) -> int:
        """Batches one evaluation pass yields (every set; the last batch of each padded)."""
        data = self._load()
        batch = self.config.global_batch_size
        return sum(-(data[s]["inputs"].shape[0] // -batch) for s in self.metadata.sets)

    def count_train_batches(self, iterations: int) -> int:
        """Batches that the first `iterations` training iterations yield (over all sets, this rank's as every
        rank's): their index draws replayed, no example read. A few seconds for a day-long ARC run; none where
        every puzzle has one example (Sudoku, mazes): no batch then cuts a puzzle short, so an iteration yields
        exactly epochs x groups // batch batches whatever is drawn."""
        data = self._load()
        sets = self.metadata.sets
        epochs, batch = self.config.epochs_per_iter, self.config.global_batch_size
        total = 0
        for offset, set_name in enumerate(sets):
            group_indices, puzzle_indices = data[set_name]["group_indices"], data[set_name]["puzzle_indices"]
            if (np.diff(puzzle_indices) == 1).all():
                total += iterations * (epochs * (group_indices.size - 1) // batch)
                continue
            total += sum(sum(1 for _ in _train_batch_plans(
                iteration_rng(self.config.seed, iteration * len(sets) + offset + 1), group_indices, puzzle_indices,
                epochs, batch)) for iteration in range(iterations))
        return total

    # -- pickling (DataLoader workers) ---------------------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_data"] = None  # re-open the (memory-mapped) arrays in the worker instead of copying them
        return state
