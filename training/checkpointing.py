"""Full checkpoints of a training run, exact resume, and elastic resume (file layout: utils/checkpoint.py)."""
import functools
import json
import os
import subprocess
from typing import Dict, List, Optional

import torch

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import PuzzleDataset
from models.adam_atan2 import AdamATan2
from training.build import TrainState
from training.distributed import DistInfo
from training.errors import TrainingDivergedError
from utils.checkpoint import (TRAIN_STATE_SUFFIX, CheckpointError, checkpoint_path, cpu_copy, find_latest_intact,
                              from_plain, load_checkpoint, load_weights, prune_checkpoints, rank_shard_path,
                              to_plain)
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


# Optimizer group settings that describe the run, not the optimizer's progress: an elastic resume keeps its own.
RUN_GROUP_SETTINGS = ("world_size",)


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """`optimizer.state_dict()` in the one format checkpoints hold, whichever AdamATan2 backend made it: every
    `step` count a 0-d float32 CPU tensor, as the fused package keeps it (models/adam_atan2.py's keeps an
    int). So a run checkpointed on one machine resumes on another that has the other backend."""
    state = optimizer.state_dict()
    state["state"] = {k: ({**entry, "step": torch.tensor(float(entry["step"]), dtype=torch.float32)}
                          if "step" in entry else entry)  # copies: the live state is not touched
                      for k, entry in state["state"].items()}
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a state saved by `optimizer_state` (or by either backend's own `state_dict`), converting the step
    counts to what this optimizer keeps: an int for the PyTorch AdamATan2, a float32 tensor on the parameter's
    device for the fused one (torch's loader would leave it on the CPU, where the CUDA kernel cannot use it).
    Group settings of this run (the sparse optimizer's number of processes) stay this run's."""
    run_settings = [{k: group[k] for k in RUN_GROUP_SETTINGS if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, run_settings):
        group.update(settings)
    keeps_int = isinstance(optimizer, AdamATan2)
    for param, entry in optimizer.state.items():
        if "step" in entry:
            step = float(entry["step"])
            entry["step"] = int(step) if keeps_int else torch.tensor(step, dtype=torch.float32, device=param.device)


def _rank_state(state: TrainState, info: DistInfo) -> dict:
    """What differs between ranks: the ACT carry, metric sums not yet logged, the model's own generators
    (ACT exploration), torch's global RNGs (Python's and numpy's global generators are not used by training:
    only the run's name draws from Python's). The carry and the sums are new tensors every step, never changed
    in place, so moving them to the CPU is a snapshot."""
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
    """Checkpoint step_<N>: each rank writes its own .rank<r> part, rank 0 the shared .state and the model
    file, then prunes older training states. Only the snapshot (CPU copies) is taken here; the files are written
    in the background when checkpoint_in_background is on (state.writer.wait() blocks until they are). Never
    with non-finite weights."""
    path = checkpoint_path(config.checkpoint_path, state.step)
    files = [(_rank_state(state, info), rank_shard_path(path, info.rank))]
    prune = None
    if info.rank == 0:
        raw_weights = state.model.state_dict()
        bad = [k for k, v in raw_weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise TrainingDivergedError(f"weights {bad[:3]} are not finite at step {state.step}; checkpoint not "
                                        f"saved")
        shared = {
            "step": state.step,
            "block": state.block,
            "optimizers": [optimizer_state(optimizer) for optimizer in state.optimizers],
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
    state.writer.submit(files, then=prune)
    state.saved_step = state.step


def _check_resumable(config: PretrainConfig, metadata: PuzzleDatasetMetadata, saved: dict, path: str) -> None:
    """Refuse to continue a run on another architecture, dataset or global batch size (the number of processes
    may change: see restore_train_state)."""
    problems = []
    if saved["config"]["arch"] != config.model_dump()["arch"]:
        problems.append(f"arch differs (checkpoint: {saved['config']['arch']})")
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups", "sets"):
        if saved["dataset"][key] != getattr(metadata, key):
            problems.append(f"dataset {key} is {getattr(metadata, key)}, checkpoint has {saved['dataset'][key]}")
    if saved["config"]["global_batch_size"] != config.global_batch_size:
        problems.append(f"global_batch_size is {config.global_batch_size}, checkpoint has "
                        f"{saved['config']['global_batch_size']}")
    if problems:
        raise CheckpointError(f"cannot resume from {path}: " + "; ".join(problems))


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

    load_weights(state.model, saved["raw_weights"] or model_state, path)
    for optimizer, saved_state in zip(state.optimizers, saved["optimizers"]):
        load_optimizer_state(optimizer, saved_state)
    if state.ema is not None:
        state.ema.load_state_dict(model_state)
    state.step, state.block = saved["step"], saved["block"]
    state.saved_step = state.step
    train_loader.load_state_dict(saved["loader"])

    state.pending_steps = ranks[0]["pending_steps"]
    if len(ranks) == info.world_size:
        mine = ranks[info.rank]
        state.carry = from_plain(mine["carry"], info.device)
        state.pending_metrics = from_plain(mine["pending_metrics"], info.device)
        state.model.model.load_rng_state(mine["model_rng"])
        torch.set_rng_state(mine["torch_rng"])
        if mine["cuda_rng"]:
            torch.cuda.set_rng_state_all(mine["cuda_rng"])
    else:
        state.carry = None  # a fresh carry: every row halted, taking a new puzzle from the next batch
        # Every rank's sums add up at the next log; rank 0 carries them all.
        state.pending_metrics = _sum_metrics([from_plain(r["pending_metrics"], info.device) for r in ranks]) \
            if info.rank == 0 else None
        if info.rank < len(ranks):
            state.model.model.load_rng_state(ranks[info.rank]["model_rng"])
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
