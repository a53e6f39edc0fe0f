"""Answer puzzles a trained model never saw: train on their demonstration pairs at test time, then answer.

    python -m tools.adapt checkpoint=runs/arc/step_50000 tasks=new_tasks/ steps=200          # ARC task files
    python -m tools.adapt checkpoint=runs/arc/step_50000 tasks=arc-agi_test_challenges.json \
        train=[embeddings,dense] scope=per_task select=demos                                # Kaggle file
    python -m tools.adapt checkpoint=runs/rules/step_3000 dataset=data/colour-rules/new-tasks steps=200
    torchrun --nproc-per-node 8 -m tools.adapt checkpoint=... tasks=... scope=per_task

HRM, TRM and URM condition every answer on a learned embedding of the puzzle's identifier, which a new task lacks.
This tool gives each new puzzle a row of its own, appended to the checkpoint's puzzle-embedding table (`init=`:
from the mean of the trained rows, the blank row, or a random trained row; `steps=0` measures those), and trains
on the new puzzles' demonstration pairs what `train=` names (training/adaptation.py):
  [embeddings]         the new rows only, with the sparse SignSGD (`lr=`, default the run's puzzle_emb_lr), the
                       dense weights frozen: the default;
  [embeddings, dense]  every dense weight too, with the run's optimizer family (`dense_lr=`, default the run's lr);
  [embeddings, io]     the token embedding and output heads too, the recursive core frozen (the middle ground).
All optimizers follow one schedule: linear warm-up for `warmup_steps`, cosine to `lr_min_ratio` at the end. Dense
weights decay toward the checkpoint's values by default (`decay_to=checkpoint`, rate `dense_weight_decay`,
default the run's weight_decay), toward zero with `decay_to=zero`; `ema=true` answers with their moving average.

`scope=all` adapts one model to every new task at once; `scope=per_task` starts each task again from the
checkpoint and trains it on its own demonstrations only (tasks one after another, spread over the processes under
torchrun; a task's result depends only on the checkpoint, its own data and the seed). `select=demos` chooses the
number of steps without the test outputs: it holds out one demonstration pair per puzzle (`select_folds` of
them, in turn), trains on the rest for max(select_steps) steps, scores the held-out pairs at every step count of
`select_steps`, takes the best exact accuracy (then cell accuracy, lower loss, fewer steps), and trains on every
demonstration for that many steps of the same schedule. A task with a single demonstration has nothing to hold
out: it trains `steps` steps, with a note.

Then it answers the new puzzles' test inputs and writes, into a new folder (`output=`, default
`<checkpoint>_adapted`; the checkpoint is never modified): the adapted model `step_<N>` with its all_config.yaml
(evaluate.py and the solve CLI take it; per task under `tasks/<task>/`), metrics.json (per_task: the merged
figures; tasks.json has each task's), selection.json with the chosen steps, and for ARC `submission.json` in the
Kaggle ARC Prize format (per_task: the tasks' answers merged).

Sources:
  tasks=PATH    ARC tasks: a task JSON file, a folder of them, or a Kaggle `*_challenges.json` (its
                `*_solutions.json` beside it is used when there; test inputs without outputs are still answered).
                They are built with the ARC builder's own pipeline (tasks/arc/build.py: `num_aug`
                augmented puzzles per task, each with its own row) into `<output>/data` (per task: into its own
                folder, seeded by its name), and every test input is answered by voting over its augmentations.
  dataset=PATH  new puzzles of any family that uses identifiers, as a dataset in the HRM format: its train split
                holds the demonstrations, its test split the puzzles to answer (a group is a task). It is copied
                with its identifiers after the trained rows. test_time={...} adds test-time compute to the answers.
The update of a row is the sign of its gradient summed over the batch, so with about one demonstration of a row
per batch it is noisy: `global_batch_size=` (default the run's) and `lr=` are the first things to raise (README,
"Puzzles the model never saw", measures them and the weight training).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

import numpy as np
import pydantic
import torch
import torch.distributed as dist

from dataset.builder_common import DatasetBuildError
from dataset.puzzle_dataset import load_metadata
from training.task_split import count_examples, dataset_tasks, write_cut
from training.adaptation import DecayToward, best_steps, set_trainable, train_steps
from training.build import (create_dataloader, create_evaluators, create_model, create_optimizers, create_task_codec,
                            create_test_time, new_train_state)
from training.checkpoint_files import PUZZLE_EMB_KEY_SUFFIX, atomic_torch_save, load_weights
from training.config import PretrainConfig, TestTimeConfig, validate_config
from training.distributed import DistInfo, close_distributed, init_distributed, on_rank_zero, single_process
from training.evaluation import evaluate
from training.restore import read_trained
from training.run_config import save_code_and_config
from training.state import Schedule, TrainState
from utils import hub
from utils.cli import parse_overrides, run_command
from utils.errors import UserError

ARC_EVALUATOR = {"name": "arc@ARC", "pass_ks": [1, 2], "submission_k": 2}
Weights = Dict[str, torch.Tensor]


class AdaptError(UserError, ValueError):
    """A checkpoint or request adaptation cannot work with; the message says what to change."""


class AdaptConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    checkpoint: str = pydantic.Field(description="the trained run's step_<N> file (all_config.yaml beside it)")
    tasks: Optional[str] = pydantic.Field(None, description="ARC tasks: a task JSON file, a folder of them, or a "
                                                            "Kaggle *_challenges.json")
    dataset: Optional[str] = pydantic.Field(None, description="new puzzles as an HRM-format dataset (train split: "
                                                              "demonstrations; test split: puzzles to answer)")
    output: Optional[str] = pydantic.Field(None, description="output folder; default <checkpoint>_adapted")
    train: List[Literal["embeddings", "dense", "io"]] = pydantic.Field(
        ["embeddings"], description="what learns: embeddings (the new rows), dense (every weight) or io (token "
                                    "embedding and output heads)")
    scope: Literal["all", "per_task"] = pydantic.Field("all", description="one model for all new tasks, or one "
                                                                          "per task from the checkpoint")
    steps: int = pydantic.Field(200, ge=0, description="adaptation steps (with select=demos: for a task with one "
                                                       "demonstration)")
    select: Literal["none", "demos"] = pydantic.Field("none", description="demos: choose the steps from "
                                                                          "held-out demonstrations")
    select_steps: List[int] = pydantic.Field([50, 100, 200, 400], description="the step counts select=demos "
                                                                              "tries")
    select_folds: int = pydantic.Field(1, ge=1, description="held-out pairs per puzzle, in turn (the last first)")
    init: str = pydantic.Field("mean", pattern="^(mean|blank|random)$",
                               description="new rows start from the mean trained row, the blank row, or a random one")
    lr: Optional[float] = pydantic.Field(None, gt=0, description="embedding rows; default: the run's puzzle_emb_lr")
    weight_decay: Optional[float] = pydantic.Field(None, ge=0, description="embedding rows; default: the run's "
                                                                           "puzzle_emb_weight_decay")
    dense_lr: Optional[float] = pydantic.Field(None, gt=0, description="dense weights; default: the run's lr")
    dense_weight_decay: Optional[float] = pydantic.Field(None, ge=0, description="default: the run's "
                                                                                 "weight_decay")
    decay_to: Literal["checkpoint", "zero"] = pydantic.Field("checkpoint", description="what dense weights "
                                                                                       "decay toward")
    warmup_steps: Optional[int] = pydantic.Field(None, ge=0, description="default: 0 for embeddings only, a tenth "
                                                                         "of the schedule with dense weights")
    lr_min_ratio: float = pydantic.Field(0.1, ge=0, le=1, description="the cosine ends at lr x this")
    ema: bool = pydantic.Field(False, description="answer with the moving average of the weights (the run's "
                                                  "ema_rate)")
    save_task_models: bool = pydantic.Field(True, description="per_task: write each task's adapted model")
    global_batch_size: Optional[int] = pydantic.Field(None, gt=0, description="default: the run's")
    num_aug: int = pydantic.Field(100, ge=0, description="ARC: augmented puzzles per new task")
    seed: int = pydantic.Field(0, description="seed of the batches, the augmentations and init=random")
    device: str = pydantic.Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    test_time: TestTimeConfig = pydantic.Field(TestTimeConfig(), description="test-time compute of the final "
                                                                              "evaluation (dataset= only)")

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if (self.tasks is None) == (self.dataset is None):
            raise ValueError("give exactly one of tasks=<ARC task file or folder> or dataset=<HRM dataset folder>")
        if not self.train or len(set(self.train)) != len(self.train):
            raise ValueError(f"train={self.train}: name each of embeddings, dense, io at most once")
        if {"dense", "io"} <= set(self.train):
            raise ValueError("train= has dense and io: dense already trains the io weights; keep one")
        if not self.select_steps or min(self.select_steps) < 0:
            raise ValueError(f"select_steps={self.select_steps}: give one or more step counts >= 0")
        unused = [k for k in ("select_steps", "select_folds") if k in self.model_fields_set and self.select != "demos"]
        unused += [k for k in ("dense_lr", "dense_weight_decay", "decay_to")
                   if k in self.model_fields_set and not self.trains_weights]
        if unused:
            raise ValueError(f"{unused[0]}= has no effect here: it is for "
                             + ("select=demos" if unused[0].startswith("select") else "train=[embeddings,dense] or "
                                                                                      "[embeddings,io]"))
        return self

    @property
    def output_dir(self) -> str:
        return self.output or hub.output_prefix(self.checkpoint) + "_adapted"

    @property
    def trains_weights(self) -> bool:
        return bool({"dense", "io"} & set(self.train))


@dataclass
class Job:
    """One adaptation: a dataset of new puzzles (identifiers after the trained rows), where its results go, its
    seed; `name` is the task's under scope=per_task."""
    data: str
    output: str
    seed: int
    name: Optional[str] = None


def table_key(state: Weights) -> Optional[str]:
    """The key of the checkpoint's puzzle-embedding table (rows = the puzzles it was trained on), None without one."""
    return next((k for k in state if k.endswith(PUZZLE_EMB_KEY_SUFFIX)), None)


def check_request(config: AdaptConfig, table: Optional[torch.Tensor]) -> None:
    """What train= asks of this checkpoint."""
    if table is None and "embeddings" in config.train:
        raise AdaptError(f"{config.checkpoint} has no puzzle-embedding table (its arch.puzzle_emb_ndim is 0): the "
                         f"model does not condition on puzzle identifiers, so there are no rows to learn; use "
                         f"train=[dense] or train=[io]")
    if table is not None and "embeddings" not in config.train:
        raise AdaptError(f"train={config.train} leaves the new puzzles' embedding rows at init={config.init}, the "
                         f"same row for every new task, so the model cannot tell new identifiers apart: use "
                         f"train=[embeddings,{','.join(config.train)}]")


def task_seed(seed: int, name: str) -> int:
    """A task's own seed, from the run's seed and the task's name only (not its place among the others)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_arc_tasks(tasks: list, path: str, num_aug: int, seed: int, first: int) -> None:
    from tasks.arc.build import write_dataset

    write_dataset(tasks, path, num_aug, seed, identifiers_start=first)


def adaptation_config(run: PretrainConfig, config: AdaptConfig, job: Job, is_arc: bool, world_size: int,
                      held_out: Optional[str] = None) -> PretrainConfig:
    """The trained run's config, turned into one that trains what train= names on the job's new puzzles (or, with
    `held_out`, on that held-out cut of them, answered plainly)."""
    raw = run.model_dump()
    data = held_out or job.data
    metadata = load_metadata(data, "train")
    batch = config.global_batch_size or run.global_batch_size
    # An epoch visits one puzzle of each group (a task), so a few tasks' epoch can be smaller than a batch. The
    # loader's batches straddle the epochs of one iteration (`epochs` here) and it drops the last incomplete one:
    # iterations of enough epochs for 8 batches always yield some and waste little.
    epochs = max(1, math.ceil(8 * batch / (metadata.total_groups * metadata.mean_puzzle_examples)))
    raw.update(data_path=data, data_paths=[], data_paths_test=[],
               freeze_weights=not config.trains_weights, ema=config.ema, epochs=epochs, eval_interval=None,
               min_eval_interval=0, checkpoint_path=job.output, load_checkpoint=None, resume=None, seed=job.seed,
               device=config.device, compile=False, logger="none", eval_save_outputs=[], log_interval=10,
               lr_min_ratio=config.lr_min_ratio, evaluators=[ARC_EVALUATOR] if is_arc and not held_out else [],
               test_time=TestTimeConfig() if held_out else config.test_time,
               run_name=f"{run.run_name or 'run'} adapted",
               checkpoint_interval=None, lr=config.dense_lr or run.lr, use_muon=run.use_muon and config.trains_weights,
               # The dense optimizer decays toward zero itself; toward the checkpoint, DecayToward does it.
               weight_decay=dense_decay(run, config) if config.decay_to == "zero" else 0.0)
    for key, value in (("puzzle_emb_lr", config.lr), ("puzzle_emb_weight_decay", config.weight_decay),
                       ("global_batch_size", config.global_batch_size)):
        if value is not None:
            raw[key] = value
    return validate_config(raw, world_size)


def dense_decay(run: PretrainConfig, config: AdaptConfig) -> float:
    return config.dense_weight_decay if config.dense_weight_decay is not None else run.weight_decay


def schedule_warmup(config: AdaptConfig, schedule_steps: int) -> int:
    if config.warmup_steps is not None:
        return config.warmup_steps
    return schedule_steps // 10 if config.trains_weights else 0


def extended_table(table: torch.Tensor, rows: int, init: str, blank_id: int, seed: int) -> torch.Tensor:
    """The trained table with rows appended up to `rows`: each the mean of the trained rows, the blank row, or a
    random trained (non-blank) row."""
    new = rows - table.shape[0]
    if init == "mean":
        added = table.mean(0, keepdim=True).expand(new, -1)
    elif init == "blank":
        added = table[blank_id].expand(new, -1)
    else:
        picks = np.random.default_rng([seed, 14]).integers(0, table.shape[0] - 1, new)
        picks += picks >= blank_id  # skip the blank row
        added = table[torch.as_tensor(picks)]
    return torch.cat([table, added.to(table.dtype)])


def build_state(adapt: PretrainConfig, config: AdaptConfig, weights: Weights, decay: float, info: DistInfo,
                schedule_steps: int) -> Tuple[TrainState, Any]:
    """The checkpoint's model with rows for the new puzzles, its optimizers on one schedule, and the training
    loader of `adapt`'s data."""
    loader = create_dataloader(adapt, "train", info)
    metadata = loader.metadata
    model = create_model(adapt, metadata, info)
    weights = dict(weights)
    key = table_key(weights)
    if key is not None:
        weights[key] = extended_table(weights[key], metadata.num_puzzle_identifiers, config.init,
                                      metadata.blank_identifier_id, adapt.seed)
    load_weights(model, weights, config.checkpoint)
    dense = set_trainable(model, config.train)
    optimizers = create_optimizers(adapt, model, info)
    if dense and config.decay_to == "checkpoint" and decay > 0:
        optimizers.pairs.append((DecayToward(dense, decay), adapt.lr))
    schedule = Schedule(schedule_steps, schedule_warmup(config, schedule_steps), adapt.lr_min_ratio)
    return new_train_state(adapt, model, optimizers, schedule, info), loader


def answering(state: TrainState):
    """The weights that answer: the moving average with ema=true, else the trained ones."""
    return state.ema.applied_to(state.model) if state.ema is not None else nullcontext(state.model)


def held_out_score(results: Dict[str, float]) -> Dict[str, float]:
    def mean(name: str) -> float:
        return float(np.mean([v for k, v in results.items() if k.endswith(f"/{name}")]))

    return {"exact": mean("exact_accuracy"), "cell": mean("accuracy"), "loss": mean("lm_loss")}


def choose_steps(run: PretrainConfig, config: AdaptConfig, job: Job, weights: Weights, info: DistInfo,
                 first: int) -> Optional[dict]:
    """select=demos: held-out exact accuracy of every step count of select_steps, averaged over the folds, and the
    chosen count; None when no puzzle has a pair to spare. Reads the job's demonstrations only."""
    grid = sorted(set(config.select_steps))
    scores: Dict[int, List[Dict[str, float]]] = {n: [] for n in grid}
    held_out = []
    for fold in range(config.select_folds):
        fold_dir = os.path.join(job.output, "select", f"fold{fold}")
        count = on_rank_zero(info, lambda: write_cut(job.data, fold_dir, first, held_out_fold=fold))
        if count == 0:
            break
        held_out.append(count)
        adapt = adaptation_config(run, config, job, False, info.world_size, held_out=fold_dir)
        state, loader = build_state(adapt, config, weights, dense_decay(run, config), info, max(grid))
        eval_loader = create_dataloader(adapt, "test", info)
        codec = create_task_codec(adapt, eval_loader)

        def score(step: int) -> None:
            with answering(state) as model:
                results = evaluate(model, eval_loader, info, codec=codec)
            if info.rank == 0:
                scores[step].append(held_out_score(results))

        train_steps(adapt, state, loader, max(grid), info, at_steps=grid, on_step=score,
                    desc=f"choosing steps, fold {fold}")
    if not held_out:
        return None
    selection = None
    if info.rank == 0:
        mean = {n: {k: float(np.mean([s[k] for s in runs])) for k in ("exact", "cell", "loss")}
                for n, runs in scores.items()}
        selection = {"chosen_steps": best_steps(mean), "select_steps": grid, "held_out_examples": held_out,
                     "held_out_scores": {str(n): v for n, v in mean.items()}}
    return on_rank_zero(info, lambda: selection)


def run_job(run: PretrainConfig, config: AdaptConfig, job: Job, weights: Weights, info: DistInfo, is_arc: bool,
            first: int, save_model: bool = True) -> dict:
    """Adapt to one job's puzzles (choosing the steps first with select=demos), answer its test inputs, write its
    results; returns them (on rank 0; {} elsewhere)."""
    steps, schedule_steps, selection = config.steps, config.steps, None
    if config.select == "demos":
        selection = choose_steps(run, config, job, weights, info, first)
        if selection is None:
            print(f"note: {job.name or 'the new puzzles'}: no puzzle has two demonstration pairs, so none can be held "
                  f"out to choose the steps; training steps={config.steps}")
        else:
            steps, schedule_steps = selection["chosen_steps"], max(selection["select_steps"])
    adapt = adaptation_config(run, config, job, is_arc, info.world_size)
    state, loader = build_state(adapt, config, weights, dense_decay(run, config), info, schedule_steps)
    train_steps(adapt, state, loader, steps, info)

    eval_loader = create_dataloader(adapt, "test", info)
    prefix = os.path.join(job.output, f"step_{steps}")
    with answering(state) as model:
        codec = create_task_codec(adapt, eval_loader)
        results = evaluate(model, eval_loader, info, (), prefix, create_evaluators(adapt, eval_loader),
                           test_time=create_test_time(adapt, eval_loader, codec), codec=codec)
        if info.rank == 0:
            save_code_and_config(adapt)
            if save_model:
                atomic_torch_save(model.state_dict(), prefix)
    if info.rank != 0:
        return {}
    write_json(os.path.join(job.output, "metrics.json"), results)
    chosen = {"steps": steps, "selection": selection}
    write_json(os.path.join(job.output, "selection.json"), chosen)
    submission = os.path.join(f"{prefix}_ARC", "submission.json")
    return {"metrics": results, "steps": steps, "selection": selection, "model": prefix if save_model else None,
            "test_examples": count_examples(job.data, "test"),
            "submission": read_json(submission) if is_arc else None}


def write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def merged_metrics(per_task: List[dict]) -> Dict[str, float]:
    """The tasks' metrics as one evaluation's: ARC pass@K weighted by test inputs, task-level ARC figures by tasks,
    counts and times summed, every other mean by test examples."""
    merged: Dict[str, float] = {}
    keys = sorted({k for task in per_task for k in task["metrics"]})
    for key in keys:
        rows = [t for t in per_task if key in t["metrics"]]
        if key.endswith(("num_tasks", "num_test_inputs", "wall_time_s")):
            merged[key] = float(sum(t["metrics"][key] for t in rows))
            continue
        stem = key.rsplit("/", 1)[0]
        weight_key = f"{stem}/num_test_inputs" if "/pass@" in key and "task" not in key.rsplit("/", 1)[1] else \
            f"{stem}/num_tasks" if "/task_" in key else None
        weights = [t["metrics"].get(weight_key, 0.0) if weight_key else t["test_examples"] for t in rows]
        total = sum(weights)
        merged[key] = float(sum(w * t["metrics"][key] for w, t in zip(weights, rows)) / total) if total else 0.0
    return merged


def prepare_all(config: AdaptConfig, info: DistInfo, first: int) -> Tuple[Job, bool]:
    """scope=all: the new puzzles as one dataset in <output>/data (rank 0 writes it)."""
    data = os.path.join(config.output_dir, "data")
    if config.dataset is not None:
        on_rank_zero(info, lambda: write_cut(config.dataset, data, first))
        return Job(data=data, output=config.output_dir, seed=config.seed), False
    from tasks.arc.build import load_unseen_tasks

    on_rank_zero(info, lambda: write_arc_tasks(load_unseen_tasks(Path(config.tasks)), data, config.num_aug,
                                               config.seed, first))
    return Job(data=data, output=config.output_dir, seed=config.seed), True


def task_sources(config: AdaptConfig) -> Tuple[List[Tuple[str, Any]], bool]:
    """scope=per_task: (name, what builds its data) of every new task, in order; and whether they are ARC."""
    if config.dataset is not None:
        return [(t.name, t) for t in dataset_tasks(config.dataset)], False
    from tasks.arc.build import load_unseen_tasks

    return [(t.name, t) for t in load_unseen_tasks(Path(config.tasks))], True


def adapt_per_task(run: PretrainConfig, config: AdaptConfig, weights: Weights, info: DistInfo, first: int
                   ) -> Optional[Tuple[List[dict], bool]]:
    """Every task from the checkpoint on its own data, this process's share of them (task i on rank
    i mod world_size, each in this process alone); rank 0 gets every task's results."""
    try:
        sources, is_arc = task_sources(config)
    except DatasetBuildError as err:
        raise AdaptError(str(err)) from None
    names = [name for name, _ in sources]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise AdaptError(f"two new tasks are named {duplicate}; per-task results are kept by name, rename one")
    own: List[dict] = []
    alone = single_process(info.device)
    for index in range(info.rank, len(sources), info.world_size):
        name, source = sources[index]
        folder = os.path.join(config.output_dir, "tasks", folder_name(name))
        job = Job(data=os.path.join(folder, "data"), output=folder, seed=task_seed(config.seed, name), name=name)
        if is_arc:
            write_arc_tasks([source], job.data, config.num_aug, job.seed, first)
        elif write_cut(config.dataset, job.data, first, source.identifiers) == 0:
            print(f"note: task {name} has no test puzzles: nothing to answer, skipped")
            continue
        if info.rank == 0:
            print(f"task {index + 1}/{len(sources)}: {name}")
        own.append({"task": name, **run_job(run, config, job, weights, alone, is_arc, first,
                                            save_model=config.save_task_models)})
    if info.world_size == 1:
        return own, is_arc
    gathered: List[Optional[List[dict]]] = [None] * info.world_size
    dist.all_gather_object(gathered, own)
    if info.rank != 0:
        return None
    return sorted((t for part in gathered for t in part), key=lambda t: names.index(t["task"])), is_arc


def adapt(argv: List[str]) -> None:
    config = parse_overrides(AdaptConfig, argv, __doc__)
    info = init_distributed(config.device)
    output = config.output_dir
    created = not os.path.exists(output)
    try:
        if info.rank == 0 and os.path.exists(os.path.join(output, "metrics.json")):
            raise AdaptError(f"{output} already holds an adapted model; choose another output= or remove it")
        run, weights = read_trained(config.checkpoint, info.world_size, device=config.device, compile=False,
                                    keep_optimizer=True)
        key = table_key(weights)
        table = weights[key] if key is not None else None
        check_request(config, table)
        first = max(table.shape[0] if table is not None else 0, 1)  # new identifiers follow the trained rows
        if info.rank == 0:
            optimizer = ("Muon + AdamW" if run.use_muon else "AdamATan2") if config.trains_weights else "none"
            print(f"new puzzles get rows after the {first} trained ones; training {'+'.join(config.train)} (dense "
                  f"optimizer: {optimizer}), scope={config.scope}, select={config.select}; outputs in {output}")
        if config.scope == "all":
            job, is_arc = prepare_all(config, info, first)
            result = run_job(run, config, job, weights, info, is_arc, first)
            if info.rank == 0:
                print(json.dumps(result["metrics"], indent=2))
                print(f"adapted model: {result['model']} ({result['steps']} steps"
                      + (", chosen on held-out demonstrations)" if result["selection"] else ")"))
                if is_arc:
                    write_json(os.path.join(output, "submission.json"), result["submission"])
        else:
            gathered = adapt_per_task(run, config, weights, info, first)
            if gathered is not None:
                per_task, is_arc = gathered
                metrics = merged_metrics(per_task)
                write_json(os.path.join(output, "metrics.json"), metrics)
                write_json(os.path.join(output, "tasks.json"),
                           {t["task"]: {k: t[k] for k in ("steps", "selection", "metrics", "model")} for t in per_task})
                if is_arc:
                    write_json(os.path.join(output, "submission.json"),
                               {k: v for t in per_task for k, v in t["submission"].items()})
                print(json.dumps(metrics, indent=2))
                print(f"{len(per_task)} tasks adapted one by one; steps per task: "
                      f"{', '.join(str(t['steps']) for t in per_task)}; per-task results in "
                      f"{os.path.join(output, 'tasks.json')}")
        if info.rank == 0 and os.path.isfile(os.path.join(output, "submission.json")):
            print(f"submission: {os.path.join(output, 'submission.json')}")
        close_distributed(wait_for_all=True)
    except BaseException:  # a bad request, a damaged file, Ctrl-C: what this adaptation wrote goes
        if info.rank == 0 and created and os.path.isdir(output):
            shutil.rmtree(output)
        raise
    finally:
        close_distributed()


def main(argv: List[str]) -> int:
    return run_command(adapt, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
