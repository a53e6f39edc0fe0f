"""Shared test helpers: a writer of tiny synthetic datasets in the docs/DESIGN.md §6 format, random model batches, and
runs of the entry scripts."""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from dataset.common import PuzzleDatasetMetadata

Count = Union[int, Sequence[int]]


def _per_group(value, groups: int, name: str) -> list:
    if isinstance(value, (int, np.integer)):
        return [int(value)] * groups
    value = list(value)
    if len(value) != groups:
        raise ValueError(f"{name} has {len(value)} entries for {groups} groups")
    return value


def write_tiny_dataset(
    path: str,
    *,
    vocab_size: int = 8,
    seq_len: int = 6,
    groups: int = 3,
    puzzles_per_group: Count = 2,
    examples_per_puzzle: Union[int, Sequence[Count]] = 2,
    num_puzzle_identifiers: Optional[int] = None,
    sets: Sequence[str] = ("all",),
    splits: Sequence[str] = ("train", "test"),
    pad_id: int = 0,
    ignore_label_id: Optional[int] = 0,
    blank_identifier_id: int = 0,
    dtype=np.int32,
    seed: int = 0,
    task: Optional[str] = None,
) -> Dict[str, Dict[str, Dict[str, np.ndarray]]]:
    """Write a small dataset under `path` (``<split>/dataset.json``, ``<split>/<set>__*.npy``, ``identifiers.json``).

    Structure, identical for every split and set:
      - ``groups`` groups; ``puzzles_per_group`` is an int or one count per group;
      - ``examples_per_puzzle`` is an int, or one entry per group that is an int (all puzzles of that group) or a
        list with one count per puzzle of that group (0 allowed);
      - puzzle ``k`` of a set (counted across groups) gets identifier ``1 + k % (num_puzzle_identifiers - 1)``
        (id 0 is ``<blank>``); by default ``num_puzzle_identifiers`` = puzzles per set + 1 (all distinct).

    Every input row is unique across all splits and sets: its first positions spell a running example number in
    base ``vocab_size - 1`` with digits ``1..vocab_size-1`` (never ``pad_id`` 0), the rest are random non-pad
    tokens. Labels are random tokens with about a quarter of the positions set to ``ignore_label_id`` (when not
    None). Arrays are saved with ``dtype``. ``task`` is written into dataset.json when given.

    Returns ``{split: {set: {"inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices",
    "example_group" (group of each example), "example_puzzle" (puzzle of each example)}}}`` plus
    ``result["metadata"][split]`` (a PuzzleDatasetMetadata).
    """
    if vocab_size < 2:
        raise ValueError("vocab_size must be at least 2")
    rng = np.random.default_rng(seed)
    puzzles_per_group = _per_group(puzzles_per_group, groups, "puzzles_per_group")
    example_counts = []  # flat, one per puzzle
    for g, entry in enumerate(_per_group(examples_per_puzzle, groups, "examples_per_puzzle")):
        counts = _per_group(entry, puzzles_per_group[g], f"examples_per_puzzle[{g}]")
        example_counts.extend(int(c) for c in counts)
    num_puzzles = len(example_counts)
    examples_per_set = sum(example_counts)
    if num_puzzle_identifiers is None:
        num_puzzle_identifiers = num_puzzles + 1
    if num_puzzle_identifiers < 2:
        raise ValueError("num_puzzle_identifiers must be at least 2 (id 0 is the blank identifier)")

    total_rows = examples_per_set * len(sets) * len(splits)
    base = vocab_size - 1
    digits = 1
    while base**digits < max(total_rows, 1):
        digits += 1
    if digits > seq_len:
        raise ValueError(f"seq_len {seq_len} with vocab {vocab_size} cannot hold {total_rows} distinct rows")

    group_indices = np.concatenate([[0], np.cumsum(puzzles_per_group)]).astype(dtype)
    puzzle_indices = np.concatenate([[0], np.cumsum(example_counts)]).astype(dtype)
    puzzle_identifiers = (1 + np.arange(num_puzzles) % (num_puzzle_identifiers - 1)).astype(dtype)
    example_puzzle = np.repeat(np.arange(num_puzzles), example_counts)
    puzzle_group = np.repeat(np.arange(groups), puzzles_per_group)
    example_group = puzzle_group[example_puzzle] if num_puzzles else np.empty(0, dtype=np.int64)

    os.makedirs(path, exist_ok=True)
    result: Dict = {"metadata": {}}
    row = 0
    for split in splits:
        split_dir = os.path.join(path, split)
        os.makedirs(split_dir, exist_ok=True)
        result[split] = {}
        for set_name in sets:
            numbers = np.arange(row, row + examples_per_set)
            row += examples_per_set
            inputs = rng.integers(1, vocab_size, size=(examples_per_set, seq_len))
            for d in range(digits):
                inputs[:, d] = 1 + (numbers // base**d) % base
            labels = rng.integers(1, vocab_size, size=(examples_per_set, seq_len))
            if ignore_label_id is not None:
                labels[rng.random(labels.shape) < 0.25] = ignore_label_id
            arrays = {
                "inputs": inputs.astype(dtype),
                "labels": labels.astype(dtype),
                "puzzle_identifiers": puzzle_identifiers.copy(),
                "puzzle_indices": puzzle_indices.copy(),
                "group_indices": group_indices.copy(),
            }
            for field, arr in arrays.items():
                np.save(os.path.join(split_dir, f"{set_name}__{field}.npy"), arr)
            arrays["example_group"] = example_group.copy()
            arrays["example_puzzle"] = example_puzzle.copy()
            result[split][set_name] = arrays
        metadata = PuzzleDatasetMetadata(
            **({"task": task} if task is not None else {}),
            pad_id=pad_id,
            ignore_label_id=ignore_label_id,
            blank_identifier_id=blank_identifier_id,
            vocab_size=vocab_size,
            seq_len=seq_len,
            num_puzzle_identifiers=num_puzzle_identifiers,
            total_groups=groups * len(sets),
            mean_puzzle_examples=examples_per_set / num_puzzles if num_puzzles else 0.0,
            sets=list(sets),
        )
        with open(os.path.join(split_dir, "dataset.json"), "w") as f:
            json.dump(metadata.model_dump(), f)
        result["metadata"][split] = metadata
    with open(os.path.join(path, "identifiers.json"), "w") as f:
        json.dump(["<blank>"] + [f"puzzle_{i}" for i in range(1, num_puzzle_identifiers)], f)
    return result


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_in_repo(args: Sequence[str], env: Optional[Dict[str, str]] = None, timeout: float = 600):
    """Run a command from the repository root without standard input; capture its text output."""
    import subprocess

    return subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_in_this_process(args: Sequence[str]):
    """`run_in_repo([sys.executable, *args])` without a fresh interpreter (whose torch import costs seconds): the
    entry script (`pretrain.py ...`) or module (`-m tools.adapt ...`) run as __main__ here, from the repository
    root. For commands that stop at bad input: nothing they do may outlive them. Returns the same
    CompletedProcess (exit status, standard output, standard error)."""
    import contextlib
    import io
    import runpy
    import subprocess
    import sys
    import warnings

    module = args[1] if args[0] == "-m" else None
    argv = [module or args[0], *args[2 if module else 1:]]
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, status = sys.argv, os.getcwd(), 0
    try:
        os.chdir(REPO)
        sys.argv = argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already (by the test)
            try:
                if module:
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(args[0], run_name="__main__")
            except SystemExit as stop:
                status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


def expect_user_error(result, *fragments):
    """A command that failed on bad input: exit status 2, no traceback, a last line `error: ...` with fragments."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message, message


def load_run_outputs(run_dir, step: int):
    """(model state dict, training state with every rank's part under "ranks", metrics.jsonl records) of a run
    folder's step_<step> checkpoint."""
    from training.checkpoint_files import load_checkpoint

    model, state, ranks = load_checkpoint(os.path.join(run_dir, f"step_{step}"))
    return model, {**state, "ranks": ranks}, read_metrics(run_dir)


def read_metrics(run_dir, timings: bool = False):
    """metrics.jsonl records of a run folder; without the wall times (which no two runs share) unless asked."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    if timings:
        return records
    return [{k: v for k, v in r.items() if not k.endswith("wall_time_s")} for r in records]


def as_trm(overrides: Sequence[str], mlp_t: bool = False):
    """The same small pretrain.py run with TRM instead of HRM: arch=trm, one network (H_layers=0) with 2 cycles of
    2 latent updates, a 2-position puzzle prefix when the puzzle embedding is on (TRM's 16 would dwarf these
    sequences); with `mlp_t`, the token-mixing MLP and no positions."""
    dropped = ("arch.H_layers=", "arch.H_cycles=", "arch.L_cycles=") + (("arch.pos_encodings=",) if mlp_t else ())
    kept = [o for o in overrides if not o.startswith(dropped)]
    prefix = 0 if "arch.puzzle_emb_ndim=0" in kept else 2
    trm = ["arch=trm", "arch.H_layers=0", "arch.H_cycles=2", "arch.L_cycles=2", f"arch.puzzle_emb_len={prefix}"]
    return kept + trm + (["arch.mlp_t=true", "arch.pos_encodings=none"] if mlp_t else [])


def as_urm(overrides: Sequence[str]):
    """The same small pretrain.py run with URM: arch=urm, one stack of 2 blocks, 2 cycles of 2 passes, the
    segment limit of the run's halt_max_steps as loops; rotary positions (URM's)."""
    limit = next((o.split("=", 1)[1] for o in overrides if o.startswith("arch.halt_max_steps=")), "3")
    dropped = ("arch.H_layers=", "arch.L_layers=", "arch.H_cycles=", "arch.L_cycles=", "arch.halt_max_steps=",
               "arch.pos_encodings=")
    kept = [o for o in overrides if not o.startswith(dropped)]
    return kept + ["arch=urm", "arch.num_layers=2", "arch.H_cycles=2", "arch.L_cycles=2", f"arch.loops={limit}"]


def random_act_batch(seed: int = 0, batch_size: int = 3, seq_len: int = 6, vocab_size: int = 7,
                     num_puzzle_identifiers: int = 5) -> Dict[str, torch.Tensor]:
    """A batch for a tiny ACT model: random tokens in [1, vocab_size), random identifiers, from `seed`."""
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randint(1, vocab_size, (batch_size, seq_len), generator=g, dtype=torch.int32),
                labels=torch.randint(1, vocab_size, (batch_size, seq_len), generator=g, dtype=torch.int32),
                puzzle_identifiers=torch.randint(0, num_puzzle_identifiers, (batch_size,), generator=g,
                                                 dtype=torch.int32))


def assert_compiled_prefix_loads(make_head, folder) -> None:
    """A state dict saved with torch.compile's `_orig_mod.` key prefix loads into a fresh model bitwise."""
    from training.checkpoint_files import load_model_state_dict, load_weights

    source, target = make_head(), make_head()
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)  # so that an entry left unloaded shows
    path = os.path.join(str(folder), "step_1")
    torch.save({f"_orig_mod.{k}": v for k, v in source.state_dict().items()}, path)
    load_weights(target, load_model_state_dict(path), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def saved_output_files(stdout: str):
    """The per-rank output files evaluate.py says it wrote ("outputs saved to a_all_preds.0, a_all_preds.1")."""
    line = next(line for line in stdout.splitlines() if line.startswith("outputs saved to "))
    return line.removeprefix("outputs saved to ").split(", ")
