"""Answer puzzles a trained model never saw: learn their puzzle embeddings with the weights frozen, then answer.

    python -m tools.adapt checkpoint=runs/arc/step_50000 tasks=new_tasks/ steps=200          # ARC task files
    python -m tools.adapt checkpoint=runs/arc/step_50000 tasks=arc-agi_test_challenges.json num_aug=100
    python -m tools.adapt checkpoint=runs/rules/step_3000 dataset=data/colour-rules/new-tasks steps=200
    torchrun --nproc-per-node 8 -m tools.adapt checkpoint=... tasks=...

HRM and TRM condition every answer on a learned embedding of the puzzle's identifier, which a new task lacks. This
tool gives each new puzzle a row of its own, appended to the checkpoint's puzzle-embedding table, and trains only
those rows on the new puzzles' demonstration pairs (dense weights frozen, no optimizer for them; the trained rows
never appear in a batch, so they stay as they are) for `steps` steps of the sparse SignSGD, seeded. Then it
evaluates the new puzzles' test inputs and writes, into a new folder (`output=`, default `<checkpoint>_adapted`;
the checkpoint is never modified): the adapted model `step_<steps>` with its all_config.yaml (evaluate.py and the
solve CLI take it), the metrics, and for ARC `submission.json` in the Kaggle ARC Prize format.

Sources:
  tasks=PATH    ARC tasks: a task JSON file, a folder of them, or a Kaggle `*_challenges.json` (its
                `*_solutions.json` beside it is used when there; test inputs without outputs are still answered).
                They are built with the ARC builder's own pipeline (dataset/build_arc_dataset.py: `num_aug`
                augmented puzzles per task, each with its own row) into `<output>/data`, and every test input is
                answered by voting over its augmentations (evaluators=[arc@ARC]).
  dataset=PATH  new puzzles of any family that uses identifiers, as a dataset in the HRM format: its train split
                holds the demonstrations, its test split the puzzles to answer; its identifiers take the rows after
                the trained ones. test_time={...} adds test-time compute to its evaluation.
New rows start (`init=`) from the mean of the trained rows (as load_checkpoint= does for a resized table), from
the blank identifier's row, or each from a random trained row: `steps=0` measures those starting points.
The update of a row is the sign of its gradient summed over the batch, so with about one demonstration of a row
per batch it is noisy: `global_batch_size=` (default the run's) and `lr=` (default the run's puzzle_emb_lr) are
the first things to raise (README, "Puzzles the model never saw", measures both).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pydantic
import torch
import torch.distributed as dist
from tqdm import tqdm

from dataset.builder_common import DatasetBuildError
from training.build import create_dataloader, create_evaluators, create_model, create_optimizers, create_test_time
from training.checkpoint_files import PUZZLE_EMB_KEY_SUFFIX, atomic_torch_save, load_weights
from training.config import PretrainConfig, validate_config
from training.distributed import DistInfo, close_distributed, init_distributed
from training.evaluation import evaluate
from training.loop import progress_postfix, train_batch
from training.restore import read_trained
from training.run_config import save_code_and_config
from training.state import RNG, Carry, PendingMetrics, Schedule, TrainState
from utils import hub
from utils.cli import parse_overrides, run_command
from utils.errors import UserError

ARC_EVALUATOR = {"name": "arc@ARC", "pass_ks": [1, 2], "submission_k": 2}


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
    steps: int = pydantic.Field(200, ge=0, description="adaptation steps")
    init: str = pydantic.Field("mean", pattern="^(mean|blank|random)$",
                               description="new rows start from the mean trained row, the blank row, or a random one")
    lr: Optional[float] = pydantic.Field(None, gt=0, description="default: the run's puzzle_emb_lr")
    weight_decay: Optional[float] = pydantic.Field(None, ge=0, description="default: the run's "
                                                                           "puzzle_emb_weight_decay")
    global_batch_size: Optional[int] = pydantic.Field(None, gt=0, description="default: the run's")
    num_aug: int = pydantic.Field(100, ge=0, description="ARC: augmented puzzles per new task")
    seed: int = pydantic.Field(0, description="seed of the batches, the augmentations and init=random")
    device: str = pydantic.Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    test_time: Dict[str, Any] = pydantic.Field({}, description="test-time compute of the final evaluation "
                                                               "(dataset= only)")

    @pydantic.model_validator(mode="after")
    def _one_source(self):
        if (self.tasks is None) == (self.dataset is None):
            raise ValueError("give exactly one of tasks=<ARC task file or folder> or dataset=<HRM dataset folder>")
        return self

    @property
    def output_dir(self) -> str:
        return self.output or hub.output_prefix(self.checkpoint) + "_adapted"


def trained_table(state: Dict[str, torch.Tensor], checkpoint: str) -> torch.Tensor:
    """The checkpoint's puzzle-embedding table (rows = the puzzles it was trained on)."""
    tables = [v for k, v in state.items() if k.endswith(PUZZLE_EMB_KEY_SUFFIX)]
    if not tables:
        raise AdaptError(f"{checkpoint} has no puzzle-embedding table (its arch.puzzle_emb_ndim is 0): the model "
                         f"does not condition on puzzle identifiers, so there is nothing to learn for new puzzles")
    return tables[0]


def prepare_data(config: AdaptConfig, trained_rows: int, info: DistInfo) -> tuple:
    """(dataset folder, identifier offset, is ARC) of the new puzzles; ARC tasks are built (by rank 0) into
    <output>/data with identifiers after the trained rows."""
    if config.dataset is not None:
        return config.dataset, trained_rows, False
    data_dir = os.path.join(config.output_dir, "data")
    problem: Optional[str] = None
    if info.rank == 0:
        from dataset.build_arc_dataset import load_unseen_tasks, write_dataset

        try:
            tasks = load_unseen_tasks(Path(config.tasks))
            write_dataset(tasks, data_dir, config.num_aug, config.seed, identifiers_start=trained_rows)
        except DatasetBuildError as err:
            problem = str(err)
    if info.world_size > 1:  # the others wait for the build, and share its outcome
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem is not None:
        raise AdaptError(problem)
    return data_dir, 0, True


def adaptation_config(run: PretrainConfig, config: AdaptConfig, data_dir: str, is_arc: bool, world_size: int
                      ) -> PretrainConfig:
    """The trained run's config, turned into one that trains only puzzle embeddings (cosine to 0.1x) on the
    new puzzles."""
    raw = run.model_dump()
    raw.update(data_path=data_dir, data_paths=[], data_paths_test=[], freeze_weights=True, ema=False,
               lr_warmup_steps=0, lr_min_ratio=0.1, epochs=1, eval_interval=None, min_eval_interval=0,
               checkpoint_path=config.output_dir, load_checkpoint=None, resume=None, seed=config.seed,
               device=config.device, compile=False, logger="none", eval_save_outputs=[], log_interval=10,
               evaluators=[ARC_EVALUATOR] if is_arc else [], test_time=config.test_time,
               run_name=f"{run.run_name or 'run'} adapted", checkpoint_interval=None)
    for key, value in (("puzzle_emb_lr", config.lr), ("puzzle_emb_weight_decay", config.weight_decay),
                       ("global_batch_size", config.global_batch_size)):
        if value is not None:
            raw[key] = value
    return validate_config(raw, world_size)


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


def train_rows(adapt: PretrainConfig, state: TrainState, loader, steps: int, info: DistInfo) -> None:
    with tqdm(total=steps, desc="adapting", disable=info.rank != 0, dynamic_ncols=True) as bar:
        while state.step < steps:
            yielded = False
            for _, batch, _ in loader:
                yielded = True
                metrics = train_batch(adapt, state, batch, info)
                bar.update(1)
                if metrics is not None and progress_postfix(metrics) is not None:
                    bar.set_postfix(progress_postfix(metrics))
                if state.step == steps:
                    break
            if not yielded:
                raise AdaptError(f"the new puzzles have fewer demonstration examples than one batch "
                                 f"({adapt.global_batch_size}); lower global_batch_size=")


def adapt(argv: List[str]) -> None:
    config = parse_overrides(AdaptConfig, argv, __doc__)
    info = init_distributed(config.device)
    output = config.output_dir
    created = not os.path.exists(output)
    try:
        if info.rank == 0 and os.path.exists(os.path.join(output, f"step_{config.steps}")):
            raise AdaptError(f"{output} already holds an adapted model; choose another output= or remove it")
        run, weights = read_trained(config.checkpoint, info.world_size, device=config.device, compile=False)
        table = trained_table(weights, config.checkpoint)
        data_dir, offset, is_arc = prepare_data(config, table.shape[0], info)

        adapt = adaptation_config(run, config, data_dir, is_arc, info.world_size)
        train_loader = create_dataloader(adapt, "train", info, identifier_offset=offset)
        metadata = train_loader.metadata
        model = create_model(adapt, metadata, info)
        key = next(k for k in weights if k.endswith(PUZZLE_EMB_KEY_SUFFIX))
        weights[key] = extended_table(table, metadata.num_puzzle_identifiers, config.init,
                                      metadata.blank_identifier_id, config.seed)
        load_weights(model, weights, config.checkpoint)
        state = TrainState(model=model, optimizers=create_optimizers(adapt, model, info),
                           schedule=Schedule(config.steps, adapt.lr_warmup_steps, adapt.lr_min_ratio), carry=Carry(),
                           metrics=PendingMetrics(), rng=RNG(model, info.device))
        if info.rank == 0:
            print(f"{metadata.num_puzzle_identifiers - table.shape[0]} new puzzle rows after the {table.shape[0]} "
                  f"trained ones; {config.steps} steps of the sparse SignSGD (lr {adapt.puzzle_emb_lr}), dense "
                  f"weights frozen; outputs in {output}")
        train_rows(adapt, state, train_loader, config.steps, info)

        eval_loader = create_dataloader(adapt, "test", info, identifier_offset=offset)
        prefix = os.path.join(output, f"step_{config.steps}")
        results = evaluate(model, eval_loader, info, (), prefix, create_evaluators(adapt, eval_loader),
                           test_time=create_test_time(adapt, eval_loader))
        if info.rank == 0:
            save_code_and_config(adapt)
            atomic_torch_save(model.state_dict(), prefix)
            with open(os.path.join(output, "metrics.json"), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
            if is_arc:
                shutil.copy(os.path.join(f"{prefix}_ARC", "submission.json"), os.path.join(output, "submission.json"))
            print(json.dumps(results, indent=2))
            print(f"adapted model: {prefix}" + (f"; submission: {os.path.join(output, 'submission.json')}"
                                                 if is_arc else ""))
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
