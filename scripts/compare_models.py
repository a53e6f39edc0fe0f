"""HRM, TRM and URM on CPU-sized tasks at the same CPU-time budget: held-out exact accuracy per model, task, seed.

    python scripts/compare_models.py --tasks demo minimal     # 7 models x 2 tasks x 3 seeds, 240 CPU-s each
    python scripts/compare_models.py --models hrm trm-mlp --tasks demo --seeds 0 --budget 60

Each model is the CPU demo's preset (config/demo.yaml) with the overrides in MODELS (trm-mlp-small is the demo).
The budget is CPU time of training on one thread: every model's cost per step on every task is measured first,
here, one after the other, as CPU time of the measuring thread (so the load of the machine hardly changes it),
and each run gets the number of whole epochs that fits the budget at that cost; the runs then train for exactly
those steps, so their results do not depend on the load while they run (only their reported wall times do).
Each run is `pretrain.py --config-name demo` in a subprocess with OMP_NUM_THREADS=1 and one evaluation, at the end,
on the held-out puzzles. Tasks (built on first use):
  demo     6x6 Sudoku, half of the cells blank (the demo's dataset: 10,000 training, 1,000 held-out puzzles)
  minimal  6x6 Sudoku, minimal puzzles (no clue can be removed; ~72% blank): 10,000 training, 1,000 held-out
  maze     10x10 mazes, shortest paths of 12+ steps: 2,000 training (each with its 8 dihedral transforms), 500
           held-out
Prints one JSON line per run and a table (median over seeds) at the end; --out appends the JSON lines to a file.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# On top of config/demo.yaml (a TRM with mlp_t: hidden 64, one layer, 2 cycles of 3 latent updates, 2 segments).
MODELS: Dict[str, List[str]] = {
    # An HRM of the same width: one H and one L layer, 2 H x 2 L cycles.
    "hrm": ["arch=hrm_v1", "arch.H_layers=1", "arch.H_cycles=2", "arch.L_cycles=2", "arch.mlp_t=false",
            "arch.pos_encodings=learned"],
    # TRM's published recursion (3 cycles of 6 latent updates, 2 layers), with attention or with mlp_t (TRM's
    # Sudoku setting: no positions).
    "trm-att": ["arch.L_layers=2", "arch.H_cycles=3", "arch.L_cycles=6", "arch.mlp_t=false",
                "arch.pos_encodings=learned"],
    "trm-mlp": ["arch.L_layers=2", "arch.H_cycles=3", "arch.L_cycles=6"],
    # The demo's smaller recursion (one layer, 2 cycles of 3 latent updates): 3-4x the steps in the same time.
    "trm-att-small": ["arch.mlp_t=false", "arch.pos_encodings=learned"],
    "trm-mlp-small": [],
    # URM at the demo's width: one stack of 2 blocks (attention with rotary positions, ConvSwiGLU), 2 cycles of 2
    # passes (the first cycle without gradient), 2 segments: the demo TRM's 8 block calls per segment, 4 with
    # gradient. The demo's HRM/TRM-only keys are removed (`~`), as URM refuses them.
    "urm-small": ["arch=urm", "~arch.H_layers", "~arch.L_layers", "~arch.halt_max_steps", "arch.mlp_t=false",
                  "arch.num_layers=2", "arch.H_cycles=2", "arch.L_cycles=2", "arch.loops=2",
                  "arch.pos_encodings=rope"],
}
# The same URM trained with Muon (URM's ARC-AGI-2 optimizer) in place of AdamATan2, at the same learning rate.
MODELS["urm-small-muon"] = MODELS["urm-small"] + ["use_muon=true"]
TASKS = {
    "demo": os.path.join("data", "sudoku6-demo"),
    "minimal": os.path.join("data", "sudoku6-minimal"),
    "maze": os.path.join("data", "maze10-2k"),
}
TRAIN_SIZE, TEST_SIZE, DATA_SEED = 10000, 1000, 0


def ensure_task(name: str) -> str:
    """The task's dataset folder, built on first use."""
    path = TASKS[name]
    if os.path.isfile(os.path.join(REPO, path, "test", "dataset.json")):
        return path
    if name == "maze":  # 10x10 mazes (shortest paths of 12+ steps), 2,000 with their 8 dihedral transforms
        from tasks.maze.build import build, parse_args
        build(parse_args(["--generate", "2000", "--test-size", "500", "--size", "10", "--min-path-len", "12",
                          "--aug", "--seed", str(DATA_SEED), "--output-dir", os.path.join(REPO, path)]))
    else:
        from tasks.sudoku.build_mini import build
        build(os.path.join(REPO, path), 2, 3, TRAIN_SIZE, TEST_SIZE, DATA_SEED,
              max_blank_fraction=0.5 if name == "demo" else None)
    return path


def batches_per_epoch(path: str, batch: int = 32) -> int:
    """Training batches of one epoch of the dataset at `path` (one puzzle per group; the demo's batch of 32)."""
    with open(os.path.join(REPO, path, "train", "dataset.json"), encoding="utf-8") as f:
        meta = json.load(f)
    return int(meta["total_groups"] * meta["mean_puzzle_examples"]) // batch


def seconds_per_step(overrides: Sequence[str], data_path: str, steps: int = 30) -> float:
    """Median CPU time of one training step on one thread (the trainer's own step, on the task's batches). CPU
    time of this thread, not wall time: other processes on the machine would otherwise shorten the runs."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from training.build import create_dataloader, init_train_state, total_train_steps
    from training.config import validate_config
    from training.distributed import single_process
    from training.loop import train_batch

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=os.path.join(REPO, "config"), version_base=None):
        raw = compose("demo", overrides=[f"data_path={data_path}", *overrides])
    config = validate_config(OmegaConf.to_container(raw, resolve=True))
    info = single_process(torch.device("cpu"))
    loader = create_dataloader(config, "train", info)
    state = init_train_state(config, loader.metadata, info, total_train_steps(config, loader))
    batches = iter(loader)
    times = []
    for _ in range(steps + 5):
        _, batch, _ = next(batches)
        start = time.thread_time()
        train_batch(config, state, batch, info)
        times.append(time.thread_time() - start)
    return statistics.median(times[5:])  # the first steps warm up allocators and caches


def train(model: str, task: str, seed: int, epochs: int, run_dir: str) -> Dict[str, object]:
    command = [sys.executable, "pretrain.py", "--config-name", "demo", f"data_path={ensure_task(task)}",
               f"checkpoint_path={run_dir}", f"seed={seed}", f"epochs={epochs}", f"eval_interval={epochs}",
               "logger=none", "eval_save_outputs=[]", *MODELS[model]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{model} on {task}, seed {seed} failed:\n{result.stderr[-2000:]}")
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        final = [json.loads(line) for line in f if "eval/all/exact_accuracy" in line][-1]
    return dict(model=model, task=task, seed=seed, epochs=epochs, steps=final["step"], wall_s=round(wall, 1),
                exact=final["eval/all/exact_accuracy"], cell=final["eval/all/accuracy"])


def table(rows: List[dict], cost: Dict[str, float]) -> str:
    lines = ["| model | ms/step (1 thread) | task | epochs | steps | held-out exact (seeds) | median | cell acc. "
             "(median) | wall s (median) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in dict.fromkeys(r["model"] for r in rows):
        for task in dict.fromkeys(r["task"] for r in rows):
            runs = [r for r in rows if r["model"] == model and r["task"] == task]
            if not runs:
                continue
            exact = ", ".join(f"{r['exact']:.3f}" for r in runs)
            lines.append(f"| {model} | {1000 * cost[model, task]:.1f} | {task} | {runs[0]['epochs']} | {runs[0]['steps']} | "
                         f"{exact} | {statistics.median(r['exact'] for r in runs):.3f} | "
                         f"{statistics.median(r['cell'] for r in runs):.4f} | "
                         f"{statistics.median(r['wall_s'] for r in runs):.0f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=240.0, help="CPU seconds of training per run [240]")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each on one thread) [1]")
    parser.add_argument("--run-root", default=os.path.join("checkpoints", "compare"))
    parser.add_argument("--out", default=None, help="append the JSON lines here too")
    args = parser.parse_args(argv)
    os.chdir(REPO)

    cost = {(model, task): seconds_per_step(MODELS[model], ensure_task(task)) for task in args.tasks
            for model in args.models}
    def run(job):
        task, model, seed = job
        epochs = max(1, int(args.budget / (cost[model, task] * batches_per_epoch(ensure_task(task)))))
        row = train(model, task, seed, epochs, os.path.join(args.run_root, f"{model}-{task}-seed{seed}"))
        row.update(ms_per_step=round(1000 * cost[model, task], 2), budget_s=args.budget)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        return row

    jobs = [(task, model, seed) for task in args.tasks for model in args.models for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(run, jobs))
    print(table(rows, cost))
    return 0


if __name__ == "__main__":
    sys.exit(main())
