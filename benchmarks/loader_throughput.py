"""Samples/s of the training data loader (dataset/puzzle_dataset.py) alone, on a synthetic dataset on disk.

    python benchmarks/loader_throughput.py --shape sudoku          # 1000 groups x 1001 puzzles, seq 81, batch 768
    python benchmarks/loader_throughput.py --shape arc             # seq 900, batch 96 per GPU

Writes a dataset in the docs/DESIGN.md §6 format (uint8 inputs/labels like the builders write, int32 indices) to a
temporary folder, then times training batches of `PuzzleDataset` in several modes:

  direct      iterate the dataset in this process (what pretrain.py does today)
  dataloader  torch DataLoader, one persistent worker, prefetch_factor 4, pin_memory on CUDA: the rate at which
              a prefetching worker can hand batches over (the consumer does nothing else)
  pinned      direct, plus copying each batch into pinned host memory (CUDA only)
  to_device   pinned, plus the non-blocking host-to-device copy and a synchronize (CUDA only)

The loader is never the bottleneck when its samples/s stays well above the trainer's (steps/s × batch): the
table prints that ratio for ``--target-steps-per-s`` (default 10.5 for the Sudoku shape, the issue's goal).
The last line is one JSON object (also appended to ``--out``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from benchmarks.train_throughput import emit_json_line, load_average
from dataset.puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Shapes of the published datasets: groups (original puzzles), puzzles per group (1 + augmentations), examples per
# puzzle, and the trainer's batch (per GPU). ARC is reduced to 20 augmentations per task by default (the rows
# read per batch are random either way; pass --puzzles-per-group 1001 for the full size, ~7 GB).
SHAPES: Dict[str, Dict[str, Any]] = {
    "tiny": dict(seq_len=16, vocab_size=6, groups=200, puzzles_per_group=5, examples_per_puzzle=1, batch_size=32,
                 num_puzzle_identifiers=1),
    "sudoku": dict(seq_len=81, vocab_size=11, groups=1000, puzzles_per_group=1001, examples_per_puzzle=1,
                   batch_size=768, num_puzzle_identifiers=1, target_steps_per_s=10.5),
    "arc": dict(seq_len=900, vocab_size=12, groups=960, puzzles_per_group=21, examples_per_puzzle=4, batch_size=96,
                num_puzzle_identifiers=None),
    "maze": dict(seq_len=900, vocab_size=6, groups=1000, puzzles_per_group=8, examples_per_puzzle=1,
                 batch_size=96, num_puzzle_identifiers=1),
}


def write_synthetic_dataset(path: str, seq_len: int, vocab_size: int, groups: int, puzzles_per_group: int,
                            examples_per_puzzle: int, num_puzzle_identifiers: Optional[int], seed: int = 0,
                            dtype=np.uint8) -> str:
    """A `train` split with one set "all" (and identifiers.json) under `path`; returns `path`.

    Puzzle k gets identifier 1 + k % (num_puzzle_identifiers - 1), or 0 for all when there is one identifier
    (the Sudoku and Maze datasets). Inputs and labels are random tokens in [1, vocab_size).
    """
    rng = np.random.default_rng(seed)
    puzzles = groups * puzzles_per_group
    examples = puzzles * examples_per_puzzle
    if num_puzzle_identifiers is None:
        num_puzzle_identifiers = puzzles + 1
    split_dir = os.path.join(path, "train")
    os.makedirs(split_dir, exist_ok=True)
    arrays = {
        "puzzle_identifiers": (np.zeros(puzzles, dtype=np.int32) if num_puzzle_identifiers == 1 else
                               (1 + np.arange(puzzles) % (num_puzzle_identifiers - 1)).astype(np.int32)),
        "puzzle_indices": np.arange(0, examples + 1, examples_per_puzzle, dtype=np.int32),
        "group_indices": np.arange(0, puzzles + 1, puzzles_per_group, dtype=np.int32),
    }
    for field in ("inputs", "labels"):  # written in chunks: the full ARC size does not fit in memory twice
        out = np.lib.format.open_memmap(os.path.join(split_dir, f"all__{field}.npy"), mode="w+", dtype=dtype,
                                        shape=(examples, seq_len))
        for start in range(0, examples, 65536):
            stop = min(start + 65536, examples)
            out[start:stop] = rng.integers(1, vocab_size, (stop - start, seq_len), dtype=dtype)
        out.flush()
        del out
    for field, value in arrays.items():
        np.save(os.path.join(split_dir, f"all__{field}.npy"), value)
    metadata = dict(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab_size, seq_len=seq_len,
                    num_puzzle_identifiers=num_puzzle_identifiers, total_groups=groups,
                    mean_puzzle_examples=float(examples_per_puzzle), sets=["all"])
    with open(os.path.join(split_dir, "dataset.json"), "w") as f:
        json.dump(metadata, f)
    with open(os.path.join(path, "identifiers.json"), "w") as f:
        json.dump(["<blank>"] + [f"p{i}" for i in range(1, min(num_puzzle_identifiers, 1000))], f)
    return path


def make_loader(path: str, batch_size: int, epochs_per_iter: int, seed: int = 0) -> PuzzleDataset:
    return PuzzleDataset(PuzzleDatasetConfig(seed=seed, dataset_path=path, global_batch_size=batch_size,
                                             test_set_mode=False, epochs_per_iter=epochs_per_iter, rank=0,
                                             num_replicas=1), split="train")


def time_mode(mode: str, path: str, batch_size: int, batches: int, epochs_per_iter: int) -> Dict[str, Any]:
    """Batches/s and samples/s of `batches` batches after one untimed batch (opening the arrays)."""
    dataset = make_loader(path, batch_size, epochs_per_iter)
    cuda = torch.cuda.is_available()
    loader = None
    if mode == "dataloader":
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1, persistent_workers=True,
                                             prefetch_factor=4, pin_memory=cuda)
        stream = iter(loader)
    else:
        stream = iter(dataset)
    device = torch.device("cuda") if cuda else None

    def consume(batch: Dict[str, torch.Tensor]) -> None:
        if mode in ("pinned", "to_device"):
            batch = {k: v.pin_memory() for k, v in batch.items()}
        if mode == "to_device":
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    _, first, _ = next(stream)
    consume(first)
    t0 = time.perf_counter()
    count = 0
    for _, batch, _ in stream:
        consume(batch)
        count += 1
        if count == batches:
            break
    if mode == "to_device":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    del stream, loader
    if count < batches:
        raise RuntimeError(f"the loader yielded only {count + 1} batches; raise epochs or lower --batches")
    return dict(batches_per_s=count / elapsed, samples_per_s=count * batch_size / elapsed,
                ms_per_batch=1000.0 * elapsed / count)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="sudoku")
    p.add_argument("--groups", type=int, default=None)
    p.add_argument("--puzzles-per-group", type=int, default=None)
    p.add_argument("--examples-per-puzzle", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--batches", type=int, default=50, help="timed batches per mode")
    p.add_argument("--modes", default=None,
                   help="comma-separated: direct, dataloader, pinned, to_device (default: all that apply here)")
    p.add_argument("--target-steps-per-s", type=float, default=None,
                   help="trainer rate to compare with (default: 10.5 for sudoku)")
    p.add_argument("--workdir", default=None, help="where to write the dataset (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the written dataset")
    p.add_argument("--out", default=None, help="append the JSON line to this file too")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    shape = dict(SHAPES[args.shape])
    for key in ("groups", "puzzles_per_group", "examples_per_puzzle", "batch_size"):
        if getattr(args, key) is not None:
            shape[key] = getattr(args, key)
    target = args.target_steps_per_s if args.target_steps_per_s is not None else shape.get("target_steps_per_s")
    cuda = torch.cuda.is_available()
    modes = (args.modes.split(",") if args.modes else
             ["direct", "dataloader"] + (["pinned", "to_device"] if cuda else []))
    unknown = set(modes) - {"direct", "dataloader", "pinned", "to_device"}
    if unknown:
        raise SystemExit(f"--modes: unknown {sorted(unknown)}")
    if not cuda and set(modes) & {"pinned", "to_device"}:
        raise SystemExit("--modes pinned/to_device need CUDA")

    B = shape["batch_size"]
    examples = shape["groups"] * shape["puzzles_per_group"] * shape["examples_per_puzzle"]
    examples_per_epoch = shape["groups"] * shape["examples_per_puzzle"]  # one puzzle per group per epoch
    epochs_per_iter = math.ceil((args.batches + 2) * B / examples_per_epoch) + 1

    workdir = args.workdir or tempfile.mkdtemp(prefix="hrm-loader-bench-")
    path = os.path.join(workdir, f"synthetic-{args.shape}")
    try:
        t0 = time.perf_counter()
        write_synthetic_dataset(path, shape["seq_len"], shape["vocab_size"], shape["groups"],
                                shape["puzzles_per_group"], shape["examples_per_puzzle"],
                                shape["num_puzzle_identifiers"])
        write_s = time.perf_counter() - t0
        results = {mode: time_mode(mode, path, B, args.batches, epochs_per_iter) for mode in modes}
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not args.keep:
            shutil.rmtree(path, ignore_errors=True)

    needed = target * B if target else None
    for fig in results.values():
        fig["headroom"] = fig["samples_per_s"] / needed if needed else None
    load = load_average()
    summary = dict(samples_per_s=results[modes[0]]["samples_per_s"], mode=modes[0], shape=args.shape,
                   batch_size=B, seq_len=shape["seq_len"], examples=examples, groups=shape["groups"],
                   puzzles_per_group=shape["puzzles_per_group"], examples_per_puzzle=shape["examples_per_puzzle"],
                   dataset_write_s=write_s, target_steps_per_s=target, needed_samples_per_s=needed,
                   torch=torch.__version__, cuda=cuda, load_avg=load,
                   command="python " + " ".join([os.path.relpath(__file__, REPO)] + args.argv), modes=results)

    print(f"loader throughput — shape {args.shape}: {examples:,} examples of seq {shape['seq_len']}, batch {B}; "
          f"torch {torch.__version__}, load {load}")
    header = f"{'mode':<12} {'samples/s':>11} {'batches/s':>10} {'ms/batch':>9}"
    print(header + (f" {'× needed':>9}" if needed else ""))
    for mode, fig in results.items():
        print(f"{mode:<12} {fig['samples_per_s']:>11.0f} {fig['batches_per_s']:>10.1f} {fig['ms_per_batch']:>9.2f}"
              + (f" {fig['headroom']:>9.1f}" if needed else ""))
    if needed:
        print(f"(needed: {target} steps/s × {B} = {needed:.0f} samples/s)")
    emit_json_line(summary, args.out)
    return summary


if __name__ == "__main__":
    main()
