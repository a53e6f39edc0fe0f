"""Test-time compute on CPU-trained checkpoints: held-out exact accuracy and evaluation wall time per setting.

    python scripts/test_time_experiment.py checkpoints/compare/trm-mlp-small-minimal-seed*/step_* --out tt.jsonl

Each checkpoint's run is evaluated on its held-out split (training.evaluation.evaluate, exactly as evaluate.py
runs it) under every setting of SETTINGS, one after the other on one thread, with evaluation batches of
--rows rows (puzzles x variants). The settings were fixed before looking at any result: plain evaluation; 4x the
trained segments; A = 8 and 32 augmentations; K = 8 trajectories with sigma 0.1, 0.3, 1.0 (noise on the initial
latent) and K = 32 with sigma 0.3 (PTRM's); and one combination, A = 8 x K = 4, sigma 0.3, 4x segments, invalid
candidates dropped. The combination costs 128x plain (about 20 minutes per 6x6 Sudoku checkpoint on one thread),
so the same combination at the trained segments (32x plain) is here too. Prints one JSON line per evaluation and
a table of medians over the checkpoints given; --settings picks a subset.
"""
import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> test_time settings as a function of the run's segment limit (halt_max_steps; URM's loops).
SETTINGS: Dict[str, Callable[[int], dict]] = {
    "plain": lambda halt: {},
    "segments x4": lambda halt: {"segments": 4 * halt},
    "A=8": lambda halt: {"augmentations": 8},
    "A=32": lambda halt: {"augmentations": 32},
    "K=8 s=0.1": lambda halt: {"trajectories": 8, "noise_std": 0.1},
    "K=8 s=0.3": lambda halt: {"trajectories": 8, "noise_std": 0.3},
    "K=8 s=1.0": lambda halt: {"trajectories": 8, "noise_std": 1.0},
    "K=32 s=0.3": lambda halt: {"trajectories": 32, "noise_std": 0.3},
    "A=8 K=4 s=0.3 seg x4 filter": lambda halt: {"augmentations": 8, "trajectories": 4, "noise_std": 0.3,
                                                 "segments": 4 * halt, "filter_invalid": True},
    "A=8 K=4 s=0.3 filter": lambda halt: {"augmentations": 8, "trajectories": 4, "noise_std": 0.3,
                                          "filter_invalid": True},
}


def evaluate_checkpoint(checkpoint: str, settings: Sequence[str], rows: int) -> List[dict]:
    import torch

    from training.build import create_dataloader, create_task_codec, create_test_time
    from training.distributed import single_process
    from training.evaluation import evaluate
    from training.restore import load_trained

    info = single_process(torch.device("cpu"))
    run = load_trained(checkpoint, info, device="cpu", compile=False)
    halt = run.model.model_config.max_segments
    results = []
    for name in settings:
        test_time = SETTINGS[name](halt)
        config = run.config.model_copy(update=dict(global_batch_size=rows, eval_save_outputs=[]))
        config.test_time = type(config.test_time).model_validate(test_time)
        loader = create_dataloader(config, "test", info)
        start = time.perf_counter()
        codec = create_task_codec(config, loader)
        metrics = evaluate(run.model, loader, info, test_time=create_test_time(config, loader, codec), codec=codec)
        wall = time.perf_counter() - start
        variants = config.test_time.variants
        results.append(dict(checkpoint=checkpoint, setting=name, test_time=test_time, wall_s=round(wall, 2),
                            exact=metrics["eval/all/exact_accuracy"], cell=metrics["eval/all/accuracy"],
                            oracle=metrics.get(f"eval/all/oracle@{variants}", metrics["eval/all/exact_accuracy"]),
                            variants=variants, valid=metrics.get("eval/all/valid")))
        print(json.dumps(results[-1]), flush=True)
    return results


def table(results: List[dict]) -> str:
    lines = ["| setting | variants | held-out exact (each checkpoint) | median | oracle@variants (median) | "
             "eval wall s (median) |", "| --- | --- | --- | --- | --- | --- |"]
    for name in dict.fromkeys(r["setting"] for r in results):
        rows = [r for r in results if r["setting"] == name]
        each = ", ".join(f"{r['exact']:.3f}" for r in rows)
        lines.append(f"| {name} | {rows[0]['variants']} | {each} | "
                     f"{statistics.median(r['exact'] for r in rows):.3f} | "
                     f"{statistics.median(r['oracle'] for r in rows):.3f} | "
                     f"{statistics.median(r['wall_s'] for r in rows):.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--rows", type=int, default=2048, help="rows (puzzles x variants) per evaluation batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="append the JSON lines here too")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = []
    for checkpoint in args.checkpoints:
        for row in evaluate_checkpoint(checkpoint, args.settings, args.rows):
            results.append(row)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
