"""The dataset writer: helpers every task's builder (tasks/<task>/build.py) shares.

Everything here writes the on-disk format of docs/DESIGN.md §6:

    <output-dir>/identifiers.json                      names by puzzle id, id 0 = "<blank>"
    <output-dir>/<split>/dataset.json                  PuzzleDatasetMetadata
    <output-dir>/<split>/<set>__inputs.npy             (examples, seq_len)
    <output-dir>/<split>/<set>__labels.npy             (examples, seq_len)
    <output-dir>/<split>/<set>__puzzle_identifiers.npy (puzzles,)   int32
    <output-dir>/<split>/<set>__puzzle_indices.npy     (puzzles+1,) int32, example offsets
    <output-dir>/<split>/<set>__group_indices.npy      (groups+1,)  int32, puzzle offsets

Builds are atomic: a builder writes into a hidden temporary sibling of the output folder and renames it into
place only once every file is written, so an interrupted or failed build never leaves a folder that looks
complete.  Bad input raises `DatasetBuildError`, which the builders' commands (utils/cli.py run_command) end as
one line on stderr, `error: <file>:<row>: <what>`, and exit status 2.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from dataset.common import PuzzleDatasetMetadata
from utils.hub import HubError, HubFile, download
from utils.errors import UserError

SPLITS = ("train", "test")
ARRAY_FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
BLANK_IDENTIFIER = "<blank>"

# Entries a finished dataset folder may hold; an existing output folder with anything else in it is not
# replaced (it is probably not a dataset, e.g. `--output-dir .` by mistake).
DATASET_FOLDER_ENTRIES = frozenset({"train", "test", "identifiers.json", "test_puzzles.json", "source",
                                    "train-tasks", "new-tasks"})  # the last two: the colour-rule tasks' two datasets


class DatasetBuildError(UserError, ValueError):
    """Bad input or an impossible request.  `file` and `row` (both optional) say where the problem is."""

    def __init__(self, message: str, file: Optional[os.PathLike | str] = None, row: Optional[int | str] = None):
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.row is not None:
                where += f":{self.row}"
            where += ": "
        return where + self.message


# ----------------------------------------------------------------------------------------------------------
# Command-line flags
# ----------------------------------------------------------------------------------------------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


# ----------------------------------------------------------------------------------------------------------
# Atomic output folder
# ----------------------------------------------------------------------------------------------------------

def check_output_dir(output_dir: os.PathLike | str, overwrite: bool = False) -> Path:
    """Fail early (before any work) when `output_dir` exists but must not be replaced: a dataset is replaced only
    with `overwrite` (--overwrite); anything else that is not an empty folder, never."""
    final = Path(output_dir)
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise DatasetBuildError("output path exists and is not a folder", file=final)
        entries = sorted(p.name for p in final.iterdir())
        unexpected = [name for name in entries if name not in DATASET_FOLDER_ENTRIES]
        if unexpected:
            raise DatasetBuildError(
                f"output folder exists and does not look like a dataset (it holds {unexpected[0]!r}); "
                "refusing to replace it, choose another --output-dir",
                file=final,
            )
        if entries and not overwrite:
            raise DatasetBuildError("a dataset is already there; give --overwrite to replace it, or choose another "
                                    "--output-dir", file=final)
    return final


@contextlib.contextmanager
def atomic_output_dir(output_dir: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it replaces `output_dir` in one rename (an
    existing dataset only with `overwrite`).

    On any exception (bad input, Ctrl-C, disk full) the temporary folder is removed and `output_dir` is left
    as it was.
    """
    final = check_output_dir(output_dir, overwrite).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the finished dataset gets the usual mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.rename(final, old / final.name)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------

def save_json(path: os.PathLike | str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)


def write_identifiers(output_dir: os.PathLike | str, names: Sequence[str]) -> None:
    """Write `identifiers.json`: names indexed by puzzle identifier; id 0 must be "<blank>"."""
    names = list(names)
    if not names or names[0] != BLANK_IDENTIFIER:
        raise ValueError('identifier 0 must be "<blank>"')
    save_json(Path(output_dir) / "identifiers.json", names)


def write_metadata(split_dir: os.PathLike | str, metadata: PuzzleDatasetMetadata) -> None:
    # exclude_unset: optional fields nobody set (total_puzzles) are left out, as the original builders do
    save_json(Path(split_dir) / "dataset.json", metadata.model_dump(exclude_unset=True))


def write_split(
    output_dir: os.PathLike | str,
    split: str,
    metadata: PuzzleDatasetMetadata,
    arrays: Dict[str, Dict[str, np.ndarray]],
) -> Path:
    """Write one split: `dataset.json` and, for every set name in `arrays`, its five `.npy` arrays.

    Arrays already written (e.g. memory-mapped inputs/labels) may be left out of `arrays[set]`.
    """
    split_dir = Path(output_dir) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    for set_name, fields in arrays.items():
        for field, value in fields.items():
            if field not in ARRAY_FIELDS:
                raise ValueError(f"unknown dataset array {field!r}")
            np.save(split_dir / f"{set_name}__{field}.npy", value)
    write_metadata(split_dir, metadata)
    return split_dir


def single_example_structure(num_groups: int, puzzles_per_group: int) -> Dict[str, np.ndarray]:
    """Index arrays of a set where every puzzle has one example and every group `puzzles_per_group` puzzles
    (Sudoku and maze: a group is an original and its augmentations)."""
    num_puzzles = num_groups * puzzles_per_group
    return {
        "puzzle_identifiers": np.zeros(num_puzzles, dtype=np.int32),
        "puzzle_indices": np.arange(num_puzzles + 1, dtype=np.int32),
        "group_indices": np.arange(0, num_puzzles + 1, puzzles_per_group, dtype=np.int32),
    }


def grid_metadata(vocab_size: int, seq_len: int, total_groups: int, task: str,
                  task_options: Optional[dict] = None) -> PuzzleDatasetMetadata:
    """Metadata of the single-example, single-identifier datasets (Sudoku, maze), as the original wrote it, with the
    task (tasks/<task>/) and its codec's options."""
    return PuzzleDatasetMetadata(
        task=task,
        **({"task_options": task_options} if task_options else {}),
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=vocab_size,
        seq_len=seq_len,
        num_puzzle_identifiers=1,
        total_groups=total_groups,
        mean_puzzle_examples=1,
        sets=["all"],
    )


# ----------------------------------------------------------------------------------------------------------
# Consistency check (used after every build and by the tests)
# ----------------------------------------------------------------------------------------------------------

def check_split_arrays(metadata: PuzzleDatasetMetadata, arrays: Dict[str, np.ndarray], where: str = "") -> None:
    """Raise AssertionError unless one set's arrays agree with each other and with the split's metadata."""
    inputs, labels = arrays["inputs"], arrays["labels"]
    ids, pidx, gidx = arrays["puzzle_identifiers"], arrays["puzzle_indices"], arrays["group_indices"]

    def ensure(cond: bool, what: str) -> None:
        if not cond:
            raise AssertionError(f"{where}: {what}")

    ensure(inputs.ndim == 2 and inputs.shape[1] == metadata.seq_len, f"inputs shape {inputs.shape}")
    ensure(labels.shape == inputs.shape, f"labels shape {labels.shape} != inputs {inputs.shape}")
    for name in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
        ensure(arrays[name].dtype == np.int32 and arrays[name].ndim == 1, f"{name} must be 1-D int32")
    ensure(pidx.size == ids.size + 1, "puzzle_indices must have one entry more than puzzle_identifiers")
    ensure(pidx[0] == 0 and pidx[-1] == inputs.shape[0], "puzzle_indices must run from 0 to the example count")
    ensure(bool(np.all(np.diff(pidx) > 0)), "every puzzle must have at least one example")
    ensure(gidx[0] == 0 and gidx[-1] == ids.size, "group_indices must run from 0 to the puzzle count")
    ensure(bool(np.all(np.diff(gidx) > 0)), "every group must have at least one puzzle")
    ensure(gidx.size - 1 == metadata.total_groups, f"total_groups {metadata.total_groups} != {gidx.size - 1}")
    if ids.size:
        ensure(int(ids.min()) >= 0 and int(ids.max()) < metadata.num_puzzle_identifiers, "puzzle id out of range")
        ensure(
            abs(inputs.shape[0] / ids.size - metadata.mean_puzzle_examples) < 1e-6,
            "mean_puzzle_examples does not match the arrays",
        )
    if inputs.size:
        ensure(int(inputs.max()) < metadata.vocab_size and int(labels.max()) < metadata.vocab_size,
               "token id >= vocab_size")


def load_split(dataset_dir: os.PathLike | str, split: str, mmap: bool = False):
    """Read a split back: (metadata, {set_name: {field: array}})."""
    split_dir = Path(dataset_dir) / split
    with open(split_dir / "dataset.json") as f:
        metadata = PuzzleDatasetMetadata(**json.load(f))
    arrays = {
        set_name: {
            field: np.load(split_dir / f"{set_name}__{field}.npy", mmap_mode="r" if mmap else None)
            for field in ARRAY_FIELDS
        }
        for set_name in metadata.sets
    }
    return metadata, arrays


def verify_dataset(dataset_dir: os.PathLike | str) -> None:
    """Check every split of a written dataset (used at the end of each build; cheap next to the build)."""
    with open(Path(dataset_dir) / "identifiers.json") as f:
        identifiers = json.load(f)
    for split in SPLITS:
        if not (Path(dataset_dir) / split).is_dir():
            continue
        metadata, arrays = load_split(dataset_dir, split, mmap=True)
        assert metadata.num_puzzle_identifiers == len(identifiers), "num_puzzle_identifiers != len(identifiers)"
        for set_name, set_arrays in arrays.items():
            check_split_arrays(metadata, set_arrays, where=f"{split}/{set_name}")


# ----------------------------------------------------------------------------------------------------------
# CSV sources (the published Sudoku / maze files: header, then rows source,question,answer,rating)
# ----------------------------------------------------------------------------------------------------------

CSV_HEADER = ["source", "question", "answer", "rating"]


def read_puzzle_csv(path: os.PathLike | str) -> Iterator[tuple[int, str, str, str, str]]:
    """Yield (line number, source, question, answer, rating) for each data row; the first row is a header."""
    path = Path(path)
    if not path.is_file():
        raise DatasetBuildError("file not found", file=path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise DatasetBuildError("empty file (expected a header row and puzzle rows)", file=path, row=1)
            for row in reader:
                if len(row) != 4:
                    raise DatasetBuildError(
                        f"expected 4 fields (source, question, answer, rating), got {len(row)}",
                        file=path, row=reader.line_num,
                    )
                yield (reader.line_num, *row)
        except csv.Error as e:
            raise DatasetBuildError(f"malformed CSV: {e}", file=path, row=reader.line_num) from None


def write_puzzle_csv(path: os.PathLike | str, rows: Sequence[Sequence[str]]) -> None:
    """Write rows (source, question, answer, rating) under the published header."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)


def fetch_from_hub(repo: str, filename: str) -> str:
    """Download `filename` of a hub dataset repo into the hub cache (or find it there), as the original builders do;
    any failure is a DatasetBuildError that names the local alternatives."""
    try:
        return download(HubFile(repo, filename, repo_type="dataset"))
    except HubError as err:
        raise DatasetBuildError(f"{err}; use --input-dir DIR (local train.csv and test.csv) or --generate N"
                                ) from None


def source_csv_paths(input_dir: Optional[str], source_repo: str) -> Dict[str, Path]:
    """train.csv and test.csv: the copies in `input_dir` when given, else downloaded from the hub repo."""
    paths = {}
    for name in ("train", "test"):
        paths[name] = (Path(input_dir) / f"{name}.csv" if input_dir is not None
                       else Path(fetch_from_hub(source_repo, f"{name}.csv")))
        print(f"Reading {paths[name]}")
    return paths


def subsample_indices(rng: np.random.Generator, total: int, size: Optional[int]) -> Optional[np.ndarray]:
    """Indices of a random subset of `size` rows (no replacement), or None when no subsampling is needed."""
    if size is None or size >= total:
        return None
    return rng.choice(total, size=size, replace=False)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def folder_size(path: os.PathLike | str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def text_histogram(values: np.ndarray, edges: List[int], width: int = 40) -> str:
    """A text table of counts of `values` in the half-open bins [edges[i], edges[i+1]); the last bin is open."""
    values = np.asarray(values)
    lines = []
    counts = []
    labels = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        mask = values >= lo if hi is None else (values >= lo) & (values < hi)
        counts.append(int(mask.sum()))
        if hi is None:
            labels.append(f">= {lo}")
        elif hi == lo + 1:
            labels.append(f"{lo}")
        else:
            labels.append(f"{lo}-{hi - 1}")
    peak = max(counts) if counts and max(counts) else 1
    total = max(values.size, 1)
    for label, count in zip(labels, counts):
        bar = "#" * int(round(width * count / peak))
        lines.append(f"  {label:>9} | {count:>8} | {100 * count / total:5.1f}% | {bar}")
    return "\n".join(lines)
