"""Full checkpoints of a training run: what they hold of each state component, exact resume, elastic resume.

Files (their layout, atomic writes and discovery: training/checkpoint_files.py):
  step_<N>          the model state dict (the EMA weights when EMA is on), interchangeable with published ones
  step_<N>.state    shared by every rank (rank 0 writes it): {"format": 2, "schedule", "optimizers", "loader",
                    "raw_weights" (EMA runs), "config", "dataset", "world_size", "code_version", "wandb_id"}
  step_<N>.rank<r>  rank r's own: {"format": 2, "carry", "metrics", "rng"}
Files without "format" are the first layout (flat keys, the carry stored under its class's import path); they
are read by upgrading them first, so runs checkpointed by earlier versions resume bit for bit.
"""
import functools
import json
import os
import subprocess
from typing import Dict, List, Optional, Tuple

import torch

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import PuzzleDataset
from models.registry import model_class
from training.checkpoint_files import (TRAIN_STATE_SUFFIX, CheckpointError, CheckpointWriter, checkpoint_path,
                                       cpu_copy, find_latest_intact, load_checkpoint, load_weights, prune_checkpoints,
                                       rank_shard_path)
from training.config import PretrainConfig
from training.distributed import DistInfo
from training.errors import TrainingDivergedError
from training.run_logger import METRICS_FILE, RunLogger
from training.state import TrainState

# 1 (no "format" key): flat keys, the carry stored under its class's import path; 2: components; 3: one carry
# per micro-batch (grad_accum_steps), a list.
FORMAT = 3


def code_version() -> str:
    """The git commit of this code (with '+dirty' for uncommitted changes), or 'unknown' outside a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def _plain_carry(saved: Optional[dict]) -> Optional[dict]:
    """A carry of the first layout ({"__dataclass__": ..., fields}, nested) as the plain dicts of now."""
    if not isinstance(saved, dict):
        return saved
    return {k: _plain_carry(v) for k, v in saved.items() if k != "__dataclass__"}


def upgrade(shared: dict, ranks: List[dict]) -> Tuple[dict, List[dict]]:
    """The shared and per-rank states of a checkpoint in the current layout (older layouts' entries moved into
    their places; nothing is computed, so the resume stays exact)."""
    if "format" not in shared:  # the first layout -> 2
        shared = {**{k: v for k, v in shared.items() if k not in ("step", "block")}, "format": 2,
                  "schedule": {"step": shared["step"], "block": shared["block"]}}
        ranks = [{"format": 2, "carry": _plain_carry(r["carry"]),
                  "metrics": {"sums": r["pending_metrics"], "steps": r["pending_steps"]},
                  "rng": {"model": r["model_rng"], "torch": r["torch_rng"], "cuda": r["cuda_rng"]}} for r in ranks]
    if shared["format"] == 2:  # one carry per process -> a list of one
        shared = {**shared, "format": 3}
        ranks = [{**r, "format": 3, "carry": None if r["carry"] is None else [r["carry"]]} for r in ranks]
    return shared, ranks


def save_train_state(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset, writer: CheckpointWriter,
                     logger: Optional[RunLogger], info: DistInfo) -> None:
    """Checkpoint step_<N>: each rank writes its own .rank<r> part, rank 0 the shared .state and the model
    file, then prunes older training states. Only the snapshot (CPU copies) is taken here; the files are written
    in the background when checkpoint_in_background is on (writer.wait() blocks until they are). Never with
    non-finite weights."""
    path = checkpoint_path(config.checkpoint_path, state.step)
    own = {"format": FORMAT, "carry": state.carry.state_dict(), "metrics": state.metrics.state_dict(),
           "rng": state.rng.state_dict()}
    files = [(cpu_copy(own), rank_shard_path(path, info.rank))]
    prune = None
    if info.rank == 0:
        raw_weights = state.model.state_dict()
        bad = [k for k, v in raw_weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise TrainingDivergedError(f"weights {bad[:3]} are not finite at step {state.step}; checkpoint not "
                                        f"saved")
        shared = {
            "format": FORMAT,
            "schedule": state.schedule.state_dict(),
            "optimizers": state.optimizers.state_dict(),
            "loader": train_loader.state_dict(),
            # The model file holds the EMA weights when EMA is on (they also restore the average); training
            # resumes from the raw ones.
            "raw_weights": raw_weights if state.ema is not None else None,
            "config": config.model_dump(),
            "dataset": train_loader.metadata.model_dump(),
            "world_size": info.world_size,
            "code_version": code_version(),
            "wandb_id": logger.wandb_id if logger is not None else None,
        }
        model_state = raw_weights
        if state.ema is not None:  # the average covers the floating-point entries; the rest are shared
            model_state = {k: state.ema.shadow.get(k, v) for k, v in raw_weights.items()}
        files += [(cpu_copy(shared), path + TRAIN_STATE_SUFFIX), (cpu_copy(model_state), path)]
        prune = functools.partial(prune_checkpoints, config.checkpoint_path, config.checkpoint_keep_last,
                                  config.checkpoint_keep_states)
    writer.submit(files, then=prune)
    state.saved_step = state.step


def _check_resumable(config: PretrainConfig, metadata: PuzzleDatasetMetadata, saved: dict, path: str) -> None:
    """Refuse to continue a run on another architecture, dataset or global batch size (the number of processes
    may change: see restore_train_state)."""
    # A key the checkpoint lacks (a run older than the field) had the field's default.
    defaults = _arch_defaults(config.arch.name)
    problems = [f"arch.{key} is {mine!r}, the checkpoint's {theirs!r}"
                for key, mine, theirs in _differences({**defaults, **config.model_dump()["arch"]},
                                                      {**defaults, **saved["config"]["arch"]})]
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups", "sets"):
        if saved["dataset"][key] != getattr(metadata, key):
            problems.append(f"dataset {key} is {getattr(metadata, key)}, checkpoint has {saved['dataset'][key]}")
    if saved["config"]["global_batch_size"] != config.global_batch_size:
        problems.append(f"global_batch_size is {config.global_batch_size}, checkpoint has "
                        f"{saved['config']['global_batch_size']}")
    if problems:
        raise CheckpointError(f"cannot resume from {path}: " + "; ".join(problems))


def _arch_defaults(name: str) -> dict:
    """The optional fields of the model's config with their defaults."""
    fields = model_class(name).config_class.model_fields
    return {key: field.default for key, field in fields.items() if not field.is_required()}


def _differences(mine: dict, theirs: dict, prefix: str = "") -> List[Tuple[str, object, object]]:
    """(dotted key, this value, that value) of every key whose values differ (None where a side lacks it)."""
    found = []
    for key in sorted(set(mine) | set(theirs), key=str):
        a, b = mine.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append((f"{prefix}{key}", a, b))
    return found


def _sum_metrics(parts: List[Optional[Dict[str, torch.Tensor]]]) -> Optional[Dict[str, torch.Tensor]]:
    parts = [p for p in parts if p]
    return {k: sum(p[k] for p in parts) for k in parts[0]} if parts else None


def restore_train_state(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                        info: DistInfo) -> Optional[str]:
    """Continue from `config.resume` where it stopped; returns the W&B run id to continue, if any.

    With the number of processes of the checkpoint, exactly (bit for bit). With another number (and the same
    global batch: elastic resume), the optimizers, EMA, data position, step and pending metric sums continue
    exactly; the ACT carries restart (every row starts a new puzzle), and rank r continues rank r's generators
    where the checkpoint has one.
    """
    if config.resume == "latest":
        path, model_state, saved, ranks = find_latest_intact(config.checkpoint_path)
    else:
        path = config.resume
        model_state, saved, ranks = load_checkpoint(path)
    _check_resumable(config, train_loader.metadata, saved, path)
    saved, ranks = upgrade(saved, ranks)

    load_weights(state.model, saved["raw_weights"] or model_state, path)
    state.optimizers.load_state_dict(saved["optimizers"])
    if state.ema is not None:
        state.ema.load_state_dict(model_state)
    state.schedule.load_state_dict(saved["schedule"])
    state.saved_step = state.step
    train_loader.load_state_dict(saved["loader"])

    if len(ranks) == info.world_size:
        mine = ranks[info.rank]
        carries = mine["carry"]
        if carries is not None and len(carries) != config.grad_accum_steps:
            carries = None  # other micro-batches: their rows start new puzzles
            if info.rank == 0:
                print(f"note: {path} was written with grad_accum_steps={len(mine['carry'])}, this run has "
                      f"{config.grad_accum_steps}: the ACT carries restart, everything else continues exactly")
        state.carry.load_state_dict(carries, info.device)
        state.metrics.load_state_dict(mine["metrics"], info.device)
        state.rng.load_state_dict(mine["rng"])
    else:
        state.carry.load_state_dict(None)  # a fresh carry: every row halted, taking a new puzzle from the next batch
        # Every rank's sums add up at the next log; rank 0 carries them all.
        sums = _sum_metrics([r["metrics"]["sums"] for r in ranks]) if info.rank == 0 else None
        state.metrics.load_state_dict({"sums": sums, "steps": ranks[0]["metrics"]["steps"]}, info.device)
        if info.rank < len(ranks):
            state.rng.load_model_generators(ranks[info.rank]["rng"])
        if info.rank == 0:
            print(f"note: {path} was written by {len(ranks)} processes, this run has {info.world_size}: "
                  f"optimizers, EMA, data position and step continue exactly; the ACT carries restart")
    if info.rank == 0:
        print(f"resumed from {path} at step {state.step}")
    return saved["wandb_id"]


def rewind_metrics(config: PretrainConfig, step: int) -> bool:
    """On resume, drop metrics logged after the checkpoint (they will be logged again); True if any were."""
    path = os.path.join(config.checkpoint_path, METRICS_FILE)
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)
    return len(kept) < len(lines)
