"""What a full checkpoint costs: file sizes, and how long training is blocked and the write takes.

    python benchmarks/checkpoint_cost.py --preset arc --num-puzzle-ids 800001           # ARC shapes, on this CPU
    python benchmarks/checkpoint_cost.py --preset arc --num-puzzle-ids 800001 --ema --foreground

The training state is built by the trainer's own helpers at the preset's shapes (benchmarks/train_throughput.py's
presets): the model and its puzzle-embedding table, AdamATan2 moments (one update on zero gradients allocates
them; no forward pass is run at these shapes on a CPU), the ACT carry of one batch, and the EMA with --ema.
`training.checkpointing.save_train_state` is then timed as the loop calls it: `blocking_s` until it returns
(the snapshot: CPU copies, the finite-weights check), `total_s` until every file is on disk (the writer thread
joined). With --foreground the files are written before it returns (checkpoint_in_background=false). Each of
--repeats saves goes to a fresh folder under --dir (deleted afterwards unless --keep); the figures are medians.
Prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

import torch

from benchmarks import train_throughput as tt
from training.checkpoint_files import CheckpointWriter
from training.checkpointing import save_train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _LoaderPosition:
    """The loader's part of a checkpoint (a few integers) without a dataset on disk."""

    def __init__(self, metadata):
        self.metadata = metadata

    def state_dict(self) -> dict:
        return {"version": 1, "iters": 3, "batches_yielded": 5}


def build(args: argparse.Namespace):
    config, metadata = tt.build_config(args.preset, "cpu", compile_model=False, batch_size=args.batch_size,
                                       num_puzzle_ids=args.num_puzzle_ids,
                                       overrides=dict(ema=args.ema, checkpoint_in_background=not args.foreground,
                                                      checkpoint_keep_states=10 ** 6))
    state, info = tt.build_state(config, metadata, "cpu")
    dense = state.optimizers[-1]
    for group in dense.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    dense.step()  # allocates the moments
    dense.zero_grad(set_to_none=True)
    batch = tt.make_batches(config, metadata, count=1, pin=False)[0]
    state.carry.value = [state.model.initial_carry(batch)]
    state.schedule.step = 1000
    return config, metadata, state, info


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    config, metadata, state, info = build(args)
    loader = _LoaderPosition(metadata)
    runs = []
    for _ in range(args.repeats):
        folder = tempfile.mkdtemp(prefix="ckpt-", dir=args.dir)
        run_config = config.model_copy(update=dict(checkpoint_path=folder))
        writer = CheckpointWriter(config.checkpoint_in_background)
        start = time.perf_counter()
        save_train_state(run_config, state, loader, writer, None, info)
        blocking = time.perf_counter() - start
        writer.wait()
        total = time.perf_counter() - start
        sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}
        runs.append(dict(blocking_s=blocking, total_s=total, sizes=sizes))
        if not args.keep:
            shutil.rmtree(folder)
    sizes = runs[0]["sizes"]
    return dict(preset=args.preset, num_puzzle_identifiers=state.model.model_config.num_puzzle_identifiers,
                batch_size=config.global_batch_size, ema=args.ema, background=not args.foreground,
                blocking_s=statistics.median(r["blocking_s"] for r in runs),
                total_s=statistics.median(r["total_s"] for r in runs),
                blocking_s_all=[round(r["blocking_s"], 3) for r in runs], total_s_all=[round(r["total_s"], 3) for r in runs],
                files={name.replace("step_1000", "step_N"): size for name, size in sizes.items()},
                total_bytes=sum(sizes.values()), torch=torch.__version__, threads=torch.get_num_threads(),
                load_avg=tt.load_average(), dir=args.dir or tempfile.gettempdir(),
                command="python " + " ".join([os.path.relpath(__file__, REPO)] + list(args.argv)))


def format_table(result: Dict[str, Any]) -> str:
    lines = [f"checkpoint cost — preset {result['preset']} ({result['num_puzzle_identifiers']:,} puzzle ids, batch "
             f"{result['batch_size']}), ema={result['ema']}, "
             f"{'background' if result['background'] else 'foreground'} writes, torch {result['torch']}"]
    for name, size in result["files"].items():
        lines.append(f"  {name:<16} {size / 2 ** 30:8.3f} GiB")
    lines.append(f"  {'all':<16} {result['total_bytes'] / 2 ** 30:8.3f} GiB")
    lines.append(f"training blocked {result['blocking_s']:.2f} s, files written after {result['total_s']:.2f} s "
                 f"(median of {len(result['total_s_all'])}: {result['blocking_s_all']} / {result['total_s_all']})")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(tt.PRESETS), default="tiny")
    p.add_argument("--num-puzzle-ids", type=int, default=None, help="rows of the puzzle-embedding table")
    p.add_argument("--batch-size", type=int, default=None, help="the carry's batch (the preset's by default)")
    p.add_argument("--ema", action="store_true", help="with the weight EMA (its average is the model file)")
    p.add_argument("--foreground", action="store_true", help="write before returning (no writer thread)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write (default: the system's temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    result = measure(args)
    print(format_table(result))
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
