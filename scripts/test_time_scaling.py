"""Test-time scaling on CPU-sized tasks: a demo-sized TRM trained plainly and with EqR's noise, run deeper and wider
than trained at test time, the answer picked by each selector.

    python scripts/test_time_scaling.py --jobs 2                 # train (once; runs are kept) and measure, 3 seeds
    python scripts/test_time_scaling.py --tasks sudoku --seeds 0 --variants plain
    python scripts/test_time_scaling.py --report                 # the table and plot from the JSON lines so far

Tasks (built on first use, as scripts/compare_models.py builds them): `sudoku`, the minimal 6x6 puzzles (no clue can
be removed; 10,000 training, 1,000 held-out); `maze`, 10x10 mazes (2,000 with their 8 dihedral transforms, 500
held-out); --puzzles takes the first ones only. Models: config/demo.yaml (a TRM of hidden 64,
one layer, 2 cycles of 3 latent updates, 2 ACT segments) trained for the demo's budget, about 4,700 steps of batch
32: with mlp_t on Sudoku (the demo), with attention and learned positions on mazes (TRM's maze choice). `plain`
is that training; `eqr` adds EqR's noise (arch.init_noise=1.0: a random start per row; arch.path_noise=0.01
after every latent update; Huang et al. 2026's values). Each run is `pretrain.py --config-name demo` in a subprocess
on one thread; a run whose checkpoint exists is not trained again.

Settings, fixed before any result was seen, each on every checkpoint, one thread per evaluation: depth 1, 2, 4 and 8
x the trained 2 segments (`segments`, every row running them all) and 4 x the cycles in each segment
(`cycles_scale`); breadth K = 8 and 32 trajectories (noise of std 1.0 on the initial state, which is EqR's start
distribution) and A = 8 augmentations (32 on Sudoku), at the trained depth; K = 8, and A = 8 x K = 4, at 4 x the
segments. Every selector is scored
on the same variants: vote, q (the highest q_halt), converged (the least latent change in the last segment), valid
(the task's check, then votes: uses the rules), valid+q, and the oracle (any variant right). Exact accuracy of the
selected answer; mazes also valid_shortest_path (the selected answer is a shortest path). The wall time per puzzle
is that of running the variants.

One JSON line per (checkpoint, setting, selector) goes to --out (appended, so an interrupted run continues where it
stopped); --report prints the table of medians over the seeds and draws --plot.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from scripts.compare_models import ensure_task  # noqa: E402  (a script beside this one)

TASKS = {"sudoku": "minimal", "maze": "maze"}  # compare_models.py's names of the datasets
EPOCHS = {"sudoku": 15, "maze": 75}  # about 4,700 steps of batch 32 each: the demo's budget
TASK_OVERRIDES = {"sudoku": [], "maze": ["arch.mlp_t=false", "arch.pos_encodings=learned"]}
VARIANTS = {"plain": [], "eqr": ["arch.init_noise=1.0", "arch.path_noise=0.01"]}
TRAINED_SEGMENTS = 2  # config/demo.yaml's halt_max_steps
NOISE = {"noise_std": 1.0, "noise_at": "init"}
# name -> (depth multiple, test_time settings)
SETTINGS: Dict[str, tuple] = {
    "depth x1": (1, {}),
    "depth x2": (2, {"segments": 2 * TRAINED_SEGMENTS}),
    "depth x4": (4, {"segments": 4 * TRAINED_SEGMENTS}),
    "depth x8": (8, {"segments": 8 * TRAINED_SEGMENTS}),
    "cycles x4": (4, {"cycles_scale": 4}),
    "K=8": (1, {"trajectories": 8, **NOISE}),
    "K=32": (1, {"trajectories": 32, **NOISE}),
    "A=8": (1, {"augmentations": 8}),
    "A=32": (1, {"augmentations": 32}),
    "K=8 depth x4": (4, {"trajectories": 8, "segments": 4 * TRAINED_SEGMENTS, **NOISE}),
    "A=8 K=4 depth x4": (4, {"augmentations": 8, "trajectories": 4, "segments": 4 * TRAINED_SEGMENTS, **NOISE}),
}
# A maze has 8 dihedral transforms: 32 augmentations would repeat them.
ONLY = {"A=32": {"sudoku"}}
SELECTORS = {"vote": ["vote"], "q": ["q"], "converged": ["converged"], "valid": ["valid", "vote"],
             "valid+q": ["valid", "q"]}


def run_dir(task: str, variant: str, seed: int) -> str:
    return os.path.join(REPO, "checkpoints", "scaling", f"{task}-{variant}-seed{seed}")


def final_checkpoint(folder: str) -> Optional[str]:
    steps = sorted((int(name[5:]), name) for name in os.listdir(folder) if name.startswith("step_")
                   and name[5:].isdigit()) if os.path.isdir(folder) else []
    return os.path.join(folder, steps[-1][1]) if steps else None


def train(task: str, variant: str, seed: int) -> str:
    folder = run_dir(task, variant, seed)
    checkpoint = final_checkpoint(folder)
    if checkpoint is not None:
        return checkpoint
    epochs = EPOCHS[task]
    command = [sys.executable, "pretrain.py", "--config-name", "demo", f"data_path={ensure_task(TASKS[task])}",
               f"checkpoint_path={folder}", f"seed={seed}", f"epochs={epochs}", f"eval_interval={epochs}",
               "logger=none", "eval_save_outputs=[]", *TASK_OVERRIDES[task], *VARIANTS[variant]]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"training {task} {variant} seed {seed} failed:\n{result.stderr[-2000:]}")
    print(f"trained {task} {variant} seed {seed} in {time.perf_counter() - start:.0f} s", flush=True)
    return final_checkpoint(folder)


def evaluate(checkpoint: str, task: str, variant: str, settings: Sequence[str], puzzles: int, done: set
             ) -> List[dict]:
    """Every setting on the first `puzzles` held-out puzzles; one row per selector."""
    import torch

    from tasks import dataset_codec
    from training.build import create_dataloader
    from training.config import TestTimeConfig
    from training.distributed import single_process
    from training.restore import load_trained
    from training.test_time import build_test_time

    torch.set_num_threads(1)
    info = single_process(torch.device("cpu"))
    run = load_trained(checkpoint, info, device="cpu", compile=False)
    rows = []
    for name in settings:
        if (checkpoint, name) in done or task not in ONLY.get(name, {task}):
            continue
        depth, values = SETTINGS[name]
        config = TestTimeConfig(**values)
        per_batch = max(1, min(puzzles, 2048 // config.variants))
        loader = create_dataloader(run.config.model_copy(update=dict(global_batch_size=per_batch)), "test", info)
        codec = dataset_codec([source.metadata for source in loader.sources])
        test_time = build_test_time(config, loader.metadata, codec, run.config.seed, checkpoint)
        sums: Dict[str, Dict[str, float]] = {selector: {} for selector in [*SELECTORS, "oracle"]}
        seen, seconds = 0, 0.0
        with torch.inference_mode():
            for _, batch, _ in loader:
                start = time.perf_counter()
                variants = test_time.run_variants(run.model, batch, changes=True)
                seconds += time.perf_counter() - start
                for selector, criteria in SELECTORS.items():
                    metrics, _ = test_time.score(variants, batch["labels"], TestTimeConfig(select=criteria))
                    for key in ("count", "exact_accuracy", "accuracy", "valid", f"oracle@{config.variants}"):
                        if key in metrics:
                            sums[selector][key] = sums[selector].get(key, 0.0) + float(metrics[key])
                seen += per_batch
                if seen >= puzzles:
                    break
        count = sums["vote"]["count"]
        oracle = sums["vote"][f"oracle@{config.variants}"] / count
        for selector in SELECTORS:
            row = dict(checkpoint=checkpoint, task=task, training=variant, setting=name, depth=depth,
                       variants=config.variants, selector=selector, puzzles=int(count),
                       exact=sums[selector]["exact_accuracy"] / count, cell=sums[selector]["accuracy"] / count,
                       oracle=oracle,
                       valid=sums[selector].get("valid", float("nan")) / count,
                       wall_s_per_puzzle=seconds / count)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def read_rows(path: str) -> List[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def table(rows: List[dict]) -> str:
    """Medians over the seeds: exact accuracy per selector (and the oracle), the cell accuracy of the voted
    answer; mazes add valid_shortest_path."""
    lines = ["| task | training | setting | variants | " + " | ".join(SELECTORS) + " | oracle | cells (vote) "
             "| valid path (vote) | ms/puzzle | seeds |", "| --- " * (9 + len(SELECTORS)) + "|"]
    groups: Dict[tuple, List[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["training"], row["setting"]), []).append(row)
    order = {name: i for i, name in enumerate(SETTINGS)}
    for (task, variant, setting) in sorted(groups, key=lambda k: (k[0], k[1], order[k[2]])):
        group = groups[(task, variant, setting)]
        median = lambda key, selector="vote": statistics.median(  # noqa: E731
            r[key] for r in group if r["selector"] == selector)
        seeds = len({r["checkpoint"] for r in group})
        valid = f"{median('valid'):.3f}" if task == "maze" else "—"
        lines.append(f"| {task} | {variant} | {setting} | {group[0]['variants']} | "
                     + " | ".join(f"{median('exact', s):.3f}" for s in SELECTORS)
                     + f" | {median('oracle'):.3f} | {median('cell'):.3f} | {valid} | {1000 * median('wall_s_per_puzzle'):.1f} | {seeds} |")
    return "\n".join(lines)


def plot(rows: List[dict], path: str) -> None:
    """Exact accuracy (maze: valid_shortest_path too) against depth and against breadth, medians over the seeds."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    figure, axes = plt.subplots(len(tasks), 2, figsize=(11, 4 * len(tasks)), squeeze=False)
    for t, task in enumerate(tasks):
        for variant, style in (("plain", "-"), ("eqr", "--")):
            def medians(settings, selector="vote", key="exact"):
                values = []
                for setting in settings:
                    found = [r[key] for r in rows if r["task"] == task and r["training"] == variant
                             and r["setting"] == setting and r["selector"] == selector]
                    values.append(statistics.median(found) if found else float("nan"))
                return values
            depth = ["depth x1", "depth x2", "depth x4", "depth x8"]
            axes[t][0].plot([1, 2, 4, 8], medians(depth), style, marker="o", label=f"{variant}: exact")
            if task == "maze":  # whole paths may be out of reach at this budget: the cells show the trend
                axes[t][0].plot([1, 2, 4, 8], medians(depth, key="valid"), style, marker="s",
                                label=f"{variant}: valid shortest path")
                axes[t][0].plot([1, 2, 4, 8], medians(depth, key="cell"), style, marker="^",
                                label=f"{variant}: cell accuracy")
            for selector in ("vote", "q", "converged", "valid"):
                axes[t][1].plot([1, 8, 32], medians(["depth x1", "K=8", "K=32"], selector), style, marker="o",
                                label=f"{variant}: {selector}")
        axes[t][0].set(xscale="log", xticks=[1, 2, 4, 8], xticklabels=["1", "2", "4", "8"],
                       xlabel="depth (x the trained 2 segments)", ylabel="held-out exact", title=f"{task}: depth")
        axes[t][1].set(xscale="log", xticks=[1, 8, 32], xticklabels=["1", "8", "32"],
                       xlabel="breadth (trajectories, noise 1.0 at the start)", ylabel="held-out exact",
                       title=f"{task}: breadth, by selector")
        for axis in axes[t]:
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # the log axis' 3x10^0 labels
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--puzzles", type=int, default=1000, help="held-out puzzles per task, at most [1000]")
    parser.add_argument("--jobs", type=int, default=1, help="trainings / evaluations at a time, one thread each")
    parser.add_argument("--out", default=os.path.join(REPO, "checkpoints", "scaling", "results.jsonl"))
    parser.add_argument("--plot", default=os.path.join(REPO, "checkpoints", "scaling", "scaling.png"))
    parser.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    args = parser.parse_args(argv)
    if not args.report:
        runs = [(task, variant, seed) for task in args.tasks for variant in args.variants for seed in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:  # each training is a subprocess
            checkpoints = list(pool.map(lambda run: train(*run), runs))
        done = {(r["checkpoint"], r["setting"]) for r in read_rows(args.out)}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(evaluate, checkpoint, task, variant, args.settings, args.puzzles, done)
                       for checkpoint, (task, variant, _) in zip(checkpoints, runs)]
            for future in futures:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.writelines(json.dumps(row) + "\n" for row in future.result())
    rows = read_rows(args.out)
    print(table(rows))
    if rows:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
