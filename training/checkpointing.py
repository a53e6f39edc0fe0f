"""Full checkpoints of a training run and exact resume (file formats: utils/checkpoint.py)."""
import json
import os
import subprocess
from typing import Optional

import torch

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import PuzzleDataset
from models.adam_atan2 import load_optimizer_state, optimizer_state
from training.build import TrainState
from training.distributed import DistInfo, gather_to_rank0
from training.errors import TrainingDivergedError
from utils.checkpoint import (CheckpointError, find_latest_intact, from_plain, load_checkpoint_pair, load_weights,
                              prune_checkpoints, save_checkpoint, to_plain)
from utils.config import PretrainConfig
from utils.device import is_cuda
from utils.run_logger import METRICS_FILE, RunLogger


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


def _rank_state(state: TrainState, info: DistInfo) -> dict:
    """What differs between ranks: the ACT carry, metric sums not yet logged, the model's own generators
    (ACT exploration), torch's global RNGs (Python's and numpy's global generators are not used by training:
    only the run's name draws from Python's). CPU copies: they are gathered on rank 0 and saved from there."""
    return {
        "carry": to_plain(state.carry),
        "pending_metrics": to_plain(state.pending_metrics),
        "pending_steps": state.pending_steps,
        "model_rng": state.model.model.rng_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if is_cuda(info.device) else [],
    }


def save_train_state(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                     logger: Optional[RunLogger], info: DistInfo) -> None:
    """Checkpoint step_<N> (+ .state); every rank takes part, rank 0 writes. Never with non-finite weights."""
    ranks = gather_to_rank0(_rank_state(state, info), info)
    if info.rank != 0:
        return
    raw_weights = state.model.state_dict()
    bad = [k for k, v in raw_weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDivergedError(f"weights {bad[:3]} are not finite at step {state.step}; checkpoint not saved")
    train_state = {
        "step": state.step,
        "block": state.block,
        "optimizers": [optimizer_state(optimizer) for optimizer in state.optimizers],
        "loader": train_loader.state_dict(),
        "ranks": ranks,
        "ema": state.ema.state_dict() if state.ema is not None else None,
        # The model file holds the EMA weights when EMA is on; training resumes from the raw ones.
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
    save_checkpoint(config.checkpoint_path, state.step, model_state, train_state)
    if config.checkpoint_keep_last is not None:
        prune_checkpoints(config.checkpoint_path, config.checkpoint_keep_last)


def _check_resumable(config: PretrainConfig, metadata: PuzzleDatasetMetadata, saved: dict, path: str,
                     info: DistInfo) -> None:
    """Refuse to continue a run on another architecture, dataset, batch size or number of processes."""
    problems = []
    if saved["config"]["arch"] != config.model_dump()["arch"]:
        problems.append(f"arch differs (checkpoint: {saved['config']['arch']})")
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups", "sets"):
        if saved["dataset"][key] != getattr(metadata, key):
            problems.append(f"dataset {key} is {getattr(metadata, key)}, checkpoint has {saved['dataset'][key]}")
    if saved["config"]["global_batch_size"] != config.global_batch_size:
        problems.append(f"global_batch_size is {config.global_batch_size}, checkpoint has "
                        f"{saved['config']['global_batch_size']}")
    if saved["world_size"] != info.world_size:
        problems.append(f"{info.world_size} processes, checkpoint was written by {saved['world_size']}")
    if problems:
        raise CheckpointError(f"cannot resume from {path}: " + "; ".join(problems))


def restore_train_state(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                        info: DistInfo) -> Optional[str]:
    """Continue from `config.resume` exactly where it stopped; returns the W&B run id to continue, if any."""
    if config.resume == "latest":
        path, model_state, saved = find_latest_intact(config.checkpoint_path)
    else:
        path = config.resume
        model_state, saved = load_checkpoint_pair(path)
    _check_resumable(config, train_loader.metadata, saved, path, info)

    load_weights(state.model, saved["raw_weights"] or model_state, path)
    for optimizer, saved_state in zip(state.optimizers, saved["optimizers"]):
        load_optimizer_state(optimizer, saved_state)
    if state.ema is not None and saved["ema"] is not None:
        state.ema.load_state_dict(saved["ema"])
    state.step, state.block = saved["step"], saved["block"]
    train_loader.load_state_dict(saved["loader"])

    mine = saved["ranks"][info.rank]
    state.carry = from_plain(mine["carry"], info.device)
    state.pending_metrics = from_plain(mine["pending_metrics"], info.device)
    state.pending_steps = mine["pending_steps"]
    state.model.model.load_rng_state(mine["model_rng"])
    torch.set_rng_state(mine["torch_rng"])
    if mine["cuda_rng"]:
        torch.cuda.set_rng_state_all(mine["cuda_rng"])
    if info.rank == 0:
        print(f"resumed from {path} at step {state.step}")
    return saved["wandb_id"]


def rewind_metrics(config: PretrainConfig, step: int) -> None:
    """On resume, drop metrics logged after the checkpoint (they will be logged again, identically)."""
    path = os.path.join(config.checkpoint_path, METRICS_FILE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)
