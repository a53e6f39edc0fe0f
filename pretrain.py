"""Train a Hierarchical Reasoning Model.

    python pretrain.py data_path=data/sudoku-extreme-1k-aug-1000 epochs=20000 eval_interval=2000 lr=7e-5
    torchrun --nproc-per-node 8 pretrain.py data_path=...

Config: config/cfg_pretrain.yaml (+ config/arch/*.yaml), validated by utils/config.py. `main` below is the
table of contents; each helper does one step.
"""
import json
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import coolname
import hydra
import pydantic
import torch
import torch.distributed as dist
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from dataset.common import IGNORE_LABEL_ID, PuzzleDatasetMetadata
from dataset.puzzle_dataset import DatasetFormatError, DatasetNotFoundError, PuzzleDataset, PuzzleDatasetConfig
from evaluators import Evaluator
from models.adam_atan2 import build_adam_atan2
from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
from utils.checkpoint import (CheckpointError, atomic_torch_save, checkpoint_path, find_latest_intact, from_plain,
                              load_checkpoint_pair, load_model_state_dict, load_weights, prune_checkpoints,
                              save_checkpoint, to_plain)
from utils.config import ConfigError, PretrainConfig, format_validation_error, validate_config
from utils.device import DeviceError, default_compile, default_forward_dtype, is_cuda, resolve_device
from utils.ema import ModelEMA
from utils.functions import ClassNotFoundError, get_model_source_path, load_model_class
from utils.run_logger import METRICS_FILE, RunLogger
from utils.schedule import cosine_schedule_with_warmup_lr


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stops before the bad update touches the weights."""


# Errors caused by the user's input: reported as one line, without a traceback, exit code 2.
USER_ERRORS = (ConfigError, DatasetNotFoundError, DatasetFormatError, ClassNotFoundError, DeviceError, CheckpointError,
               TrainingDivergedError)


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


@dataclass
class TrainState:
    model: nn.Module        # loss head around the model; its state_dict has the published key names
    forward: Callable       # `model`, or its torch.compile'd version
    optimizers: List[torch.optim.Optimizer]
    optimizer_lrs: List[float]
    carry: Any              # ACT carry, persists across training batches
    step: int
    total_steps: int
    ema: Optional[ModelEMA] = None
    block: int = 0          # index of the current block of eval_interval epochs
    # Training metric sums since the last log, kept on the device (reading them is a host sync).
    pending_metrics: Optional[Dict[str, torch.Tensor]] = None
    pending_steps: int = 0
    evaluators: Sequence[Evaluator] = ()


# ---------------------------------------------------------------------------------------------------------------
# Set-up


def init_distributed(device_name: str) -> DistInfo:
    """Rank and world from torchrun's environment (single process otherwise); NCCL on CUDA, gloo elsewhere."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name, local_rank)
    if world_size > 1:
        if is_cuda(device):
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def load_config(hydra_config: DictConfig, info: DistInfo) -> PretrainConfig:
    """Rank 0 validates the config and fills in the run's names; every rank gets rank 0's result (or error)."""
    objects: List[object] = [None]
    if info.rank == 0:
        try:
            objects = [_name_run(validate_config(OmegaConf.to_container(hydra_config, resolve=True),
                                                 info.world_size))]
        except ConfigError as err:
            objects = [err]  # sent to every rank, so all stop with the same message instead of waiting
    if info.world_size > 1:
        dist.broadcast_object_list(objects, src=0)
    if isinstance(objects[0], ConfigError):
        raise objects[0]
    return objects[0]


def _name_run(config: PretrainConfig) -> PretrainConfig:
    """Project from the data folder, run from the model class and a random slug, folder from both."""
    if config.project_name is None:
        config.project_name = f"{os.path.basename(config.data_path.rstrip('/')).capitalize()} ACT-torch"
    if config.run_name is None:
        config.run_name = f"{config.arch.name.split('@')[-1]} {coolname.generate_slug(2)}"
    if config.checkpoint_path is None:
        if config.resume is not None and config.resume != "latest":  # continue in that checkpoint's folder
            config.checkpoint_path = os.path.dirname(os.path.abspath(config.resume))
        else:
            config.checkpoint_path = os.path.join("checkpoints", config.project_name, config.run_name)
    return config


def create_dataloader(config: PretrainConfig, split: str, info: DistInfo) -> PuzzleDataset:
    return PuzzleDataset(PuzzleDatasetConfig(
        seed=config.seed,
        dataset_path=config.data_path,
        global_batch_size=config.global_batch_size,
        test_set_mode=split != "train",
        epochs_per_iter=config.epochs_per_eval,
        rank=info.rank,
        num_replicas=info.world_size,
    ), split=split)


def _instantiate(cls, where: str, *args, **kwargs):
    """Build a model or loss head from config keys, turning a bad key into a one-line ConfigError."""
    try:
        return cls(*args, **kwargs)
    except pydantic.ValidationError as err:
        raise ConfigError(f"{where}: {format_validation_error(err)}") from None
    except TypeError as err:  # e.g. an unexpected keyword argument for the loss head
        raise ConfigError(f"{where}: {err}") from None


def create_model(config: PretrainConfig, metadata: PuzzleDatasetMetadata, info: DistInfo):
    """Model wrapped in its loss head, on the device, identical on every rank; plus the (compiled) forward."""
    model_cfg = dict(
        forward_dtype=default_forward_dtype(info.device),  # the arch config may override it
        **config.arch.extra,
        batch_size=config.global_batch_size // info.world_size,
        vocab_size=metadata.vocab_size,
        seq_len=metadata.seq_len,
        num_puzzle_identifiers=metadata.num_puzzle_identifiers,
        seed=config.seed + info.rank,  # ACT exploration differs per rank, reproducibly
    )
    model_cls = load_model_class(config.arch.name)
    loss_head_cls = load_model_class(config.arch.loss.name)

    torch.manual_seed(config.seed)  # initial weights depend on the seed only (and are broadcast anyway)
    with torch.device(info.device):  # build in place: no CPU copy of a large puzzle-embedding table
        model = _instantiate(model_cls, "arch", model_cfg)
        model = _instantiate(loss_head_cls, "arch.loss", model, **config.arch.loss.extra)

    if config.load_checkpoint is not None:
        load_weights(model, load_model_state_dict(config.load_checkpoint), config.load_checkpoint,
                     resize_puzzle_emb=True)

    if info.world_size > 1:
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(tensor, src=0)

    use_compile = config.compile if config.compile is not None else default_compile(info.device)
    forward = torch.compile(model, dynamic=False) if use_compile else model
    return model, forward


def create_optimizers(config: PretrainConfig, model: nn.Module, info: DistInfo):
    """Sparse SignSGD for the puzzle embedding table (if any), AdamATan2 for every dense parameter."""
    optimizers, lrs = [], []
    inner = getattr(model.model, "inner", None)
    if inner is not None and hasattr(inner, "puzzle_emb"):
        optimizers.append(CastedSparseEmbeddingSignSGD_Distributed(
            inner.puzzle_emb.buffers(), world_size=info.world_size, lr=0.0,  # lr set every step
            weight_decay=config.puzzle_emb_weight_decay))
        lrs.append(config.puzzle_emb_lr)
    optimizers.append(build_adam_atan2(model.parameters(), lr=0.0, betas=(config.beta1, config.beta2),
                                       weight_decay=config.weight_decay, on_cuda=is_cuda(info.device)))
    lrs.append(config.lr)
    return optimizers, lrs


def create_evaluators(config: PretrainConfig, eval_metadata: PuzzleDatasetMetadata) -> List[Evaluator]:
    """Task evaluators ("module@Class" under evaluators/), e.g. ARC pass@K."""
    return [_instantiate(load_model_class(e.name, prefix="evaluators."), f"evaluators ({e.name})", config.data_path,
                         eval_metadata, **e.extra) for e in config.evaluators]


def init_train_state(config: PretrainConfig, metadata: PuzzleDatasetMetadata, info: DistInfo) -> TrainState:
    total_steps = int(config.epochs * metadata.total_groups * metadata.mean_puzzle_examples
                      / config.global_batch_size)
    model, forward = create_model(config, metadata, info)
    optimizers, lrs = create_optimizers(config, model, info)
    ema = ModelEMA(model, config.ema_rate) if config.ema else None
    return TrainState(model=model, forward=forward, optimizers=optimizers, optimizer_lrs=lrs, carry=None, step=0,
                      total_steps=total_steps, ema=ema)


def save_code_and_config(config: PretrainConfig) -> None:
    """all_config.yaml and the model/loss sources beside the checkpoints, to know later what was trained."""
    os.makedirs(config.checkpoint_path, exist_ok=True)
    for identifier in (config.arch.name, config.arch.loss.name):
        shutil.copy(get_model_source_path(identifier), config.checkpoint_path)
    with open(os.path.join(config.checkpoint_path, "all_config.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(config.model_dump(), f, sort_keys=False)


def create_logger(config: PretrainConfig, wandb_id: Optional[str] = None) -> RunLogger:
    """Rank 0's metric sink: metrics.jsonl in the run folder, plus W&B unless logger=none; curves.png (train/eval
    loss and accuracy) is re-drawn at every evaluation and at the end."""
    return RunLogger(config.checkpoint_path, project=config.project_name, run_name=config.run_name,
                     config=config.model_dump(), use_wandb=config.logger == "wandb", resume_id=wandb_id, plot=True)


def rewind_metrics(config: PretrainConfig, step: int) -> None:
    """On resume, drop metrics logged after the checkpoint (they will be logged again, identically)."""
    path = os.path.join(config.checkpoint_path, METRICS_FILE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)


# ---------------------------------------------------------------------------------------------------------------
# Training and evaluation


def _to_device(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _all_reduce_gradients(model: nn.Module, world_size: int) -> None:
    """Sum dense gradients over ranks with one flat all-reduce (one collective, not one per tensor).

    A sum, not a mean: each rank's loss is already divided by the *global* batch size, so the sum over ranks is
    exactly the single-process gradient of the global batch.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if world_size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    torch._foreach_copy_(grads, [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]),
                                                                        grads)])


def _reduce_metric_sums(metrics: Dict[str, torch.Tensor], info: DistInfo) -> Dict[str, float]:
    """Sum metric values over ranks onto rank 0 (others get {})."""
    keys = sorted(metrics)
    values = torch.stack([metrics[k].to(torch.float64) for k in keys])
    if info.world_size > 1:
        dist.reduce(values, dst=0)
    return dict(zip(keys, values.tolist())) if info.rank == 0 else {}


def train_batch(config: PretrainConfig, state: TrainState, batch: Dict[str, torch.Tensor], info: DistInfo
                ) -> Optional[Dict[str, float]]:
    """One optimizer step on one global batch. Every log_interval steps (and at the last) returns the metrics
    of those steps reduced over ranks, on rank 0; otherwise None, without waiting for the device."""
    state.step += 1

    batch = _to_device(batch, info.device)
    if state.carry is None:
        state.carry = state.model.initial_carry(batch)
    state.carry, loss, metrics, _, _ = state.forward(carry=state.carry, batch=batch, return_keys=())
    state.pending_metrics = {k: v.detach().to(torch.float64) + (state.pending_metrics or {}).get(k, 0)
                             for k, v in metrics.items()}
    state.pending_steps += 1
    log_now = state.step % config.log_interval == 0 or state.step == state.total_steps
    if log_now:  # the step's host syncs, once per interval: this check and the metric reduction below
        _check_finite(state.pending_metrics, state.step, config.log_interval, info)

    ((1.0 / config.global_batch_size) * loss).backward()
    _all_reduce_gradients(state.model, info.world_size)

    lr = 0.0
    for optimizer, base_lr in zip(state.optimizers, state.optimizer_lrs):
        lr = cosine_schedule_with_warmup_lr(state.step - 1, base_lr, config.lr_warmup_steps, state.total_steps,
                                            config.lr_min_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if state.ema is not None:
        state.ema.update(state.model)

    if not log_now:
        return None
    sums = _reduce_metric_sums(state.pending_metrics, info)
    steps, state.pending_metrics, state.pending_steps = state.pending_steps, None, 0
    if info.rank != 0:
        return None
    count = max(sums.pop("count"), 1.0)
    # Losses are sums over the batches, averaged per sample; accuracies are sums over halted rows.
    logged = {f"train/{k}": v / (config.global_batch_size * steps if k.endswith("loss") else count)
              for k, v in sums.items()}
    logged["train/lr"] = lr  # the dense optimizer's (last in the list)
    return logged


def _check_finite(metric_sums: Dict[str, torch.Tensor], step: int, log_interval: int, info: DistInfo) -> None:
    """Stop on a NaN/Inf loss, before this step's update; all ranks agree, so none is left waiting."""
    losses = torch.stack([v for k, v in metric_sums.items() if k.endswith("loss")])
    ok = torch.isfinite(losses).all().to(torch.int32)
    if info.world_size > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if not bool(ok):
        within = f" (or up to {log_interval - 1} steps before: checked every log_interval)" if log_interval > 1 else ""
        raise TrainingDivergedError(
            f"the loss became non-finite at step {step}{within}; stopped before this step's update, without "
            f"saving (the last checkpoint is intact). Lower lr, raise lr_warmup_steps, or use forward_dtype=float32")


def _run_to_halt(model: nn.Module, forward: Callable, batch: Dict[str, torch.Tensor], return_keys: List[str],
                 halt_on_q: bool):
    """Run one evaluation batch from a fresh carry until every row has halted.

    Default: halt_max_steps segments for all rows; metrics and outputs of the last one. With `halt_on_q` each row
    stops when its Q head says halt; the batch keeps running (static shapes) until the last row stops, and each
    row's outputs and accuracy metrics are taken at its own halting segment. Finished rows restart on blanked
    labels so they are never counted twice. Loss sums are not reported then (they would mix segments).
    """
    carry = model.initial_carry(batch)
    if not halt_on_q:
        while True:
            carry, _, metrics, outputs, all_halted = forward(carry=carry, batch=batch, return_keys=return_keys)
            if all_halted:
                return metrics, outputs

    done = torch.zeros_like(carry.halted)
    data, sums, final = batch, {}, {}
    while True:
        carry, _, metrics, outputs, _ = forward(carry=carry, batch=data, return_keys=return_keys, halt_on_q=True)
        newly_halted = carry.halted & ~done
        for k, v in metrics.items():
            if not k.endswith("loss"):
                sums[k] = sums.get(k, 0) + v
        for k, v in outputs.items():
            final[k] = torch.where(newly_halted.view((-1,) + (1,) * (v.ndim - 1)), v, final.get(k, v))
        done = done | carry.halted
        if bool(done.all()):
            return sums, final
        data = {**batch, "labels": torch.where(done.unsqueeze(-1), IGNORE_LABEL_ID, batch["labels"])}


def evaluate(model: nn.Module, forward: Callable, eval_loader: PuzzleDataset, info: DistInfo,
             save_outputs: Sequence[str] = (), save_prefix: Optional[str] = None,
             evaluators: Sequence[Evaluator] = (), halt_on_q: bool = False) -> Dict[str, float]:
    """Run every test example to the end (fresh carry per batch); metric means per set on rank 0.

    Requested outputs are written per rank to `<save_prefix>_all_preds.<rank>`; evaluators see every real row
    and add their metrics (they may write files under `<save_prefix>_<EvaluatorClass>/`).
    """
    model.eval()
    for evaluator in evaluators:
        evaluator.begin_eval()
    return_keys = sorted(set(save_outputs).union(*(e.required_outputs for e in evaluators)))
    sums: Dict[str, Dict[str, torch.Tensor]] = {}
    saved: Dict[str, List[torch.Tensor]] = {k: [] for k in save_outputs}
    local_batch = eval_loader.local_batch_size
    with torch.inference_mode():
        for set_name, batch, effective_size in eval_loader:
            batch = _to_device(batch, info.device)
            metrics, outputs = _run_to_halt(model, forward, batch, return_keys, halt_on_q)
            set_sums = sums.setdefault(set_name, {})
            for k, v in metrics.items():
                set_sums[k] = set_sums.get(k, 0) + v.to(torch.float64)

            # The last global batch is padded; keep only this rank's real rows.
            real_rows = min(max(effective_size - info.rank * local_batch, 0), local_batch)
            real_batch = {k: v[:real_rows] for k, v in batch.items()}
            real_outputs = {k: v[:real_rows] for k, v in outputs.items()}
            for evaluator in evaluators:
                evaluator.update_batch(real_batch, real_outputs)
            for k in saved:
                saved[k].append((real_batch if k in real_batch else real_outputs)[k].cpu())
    model.train()

    if saved and save_prefix is not None:
        atomic_torch_save({k: torch.cat(v) if v else torch.empty(0) for k, v in saved.items()},
                          f"{save_prefix}_all_preds.{info.rank}")
    results = _reduce_eval_metrics(sums, eval_loader.metadata.sets, info)
    for evaluator in evaluators:
        save_path = f"{save_prefix}_{type(evaluator).__name__}" if save_prefix is not None else None
        evaluator_metrics = evaluator.result(save_path)
        if info.rank == 0 and evaluator_metrics:
            results.update({f"eval/{k}": v for k, v in evaluator_metrics.items()})
    return results


def _reduce_eval_metrics(sums: Dict[str, Dict[str, torch.Tensor]], sets: Sequence[str], info: DistInfo
                         ) -> Dict[str, float]:
    """Sum per-set metric sums over ranks (same order everywhere, zeros for unseen sets); means on rank 0."""
    keys = sorted({k for set_sums in sums.values() for k in set_sums})
    table = torch.zeros(len(sets), len(keys), dtype=torch.float64, device=info.device)
    for i, set_name in enumerate(sets):
        for j, key in enumerate(keys):
            table[i, j] = sums.get(set_name, {}).get(key, 0)
    if info.world_size > 1:
        dist.reduce(table, dst=0)
    if info.rank != 0:
        return {}
    results = {}
    for i, set_name in enumerate(sets):
        row = dict(zip(keys, table[i].tolist()))
        count = max(row.pop("count", 0.0), 1.0)
        results.update({f"eval/{set_name}/{k}": v / count for k, v in row.items()})
    return results


def evaluate_train_state(config: PretrainConfig, state: TrainState, eval_loader: PuzzleDataset, info: DistInfo
                         ) -> Dict[str, float]:
    """Evaluate the run's current weights (the EMA ones when enabled), saving requested outputs."""
    with state.ema.applied_to(state.model) if state.ema is not None else nullcontext():
        return evaluate(state.model, state.forward, eval_loader, info, config.eval_save_outputs,
                        checkpoint_path(config.checkpoint_path, state.step), state.evaluators)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def _code_version() -> str:
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
    """What differs between ranks: the ACT carry, metric sums not yet logged, the exploration generator, torch's
    global RNGs (Python's and
    numpy's global generators are not used by training: only the run's name draws from Python's)."""
    # CPU copies: they are gathered on rank 0 and saved from there.
    return {
        "carry": to_plain(state.carry),
        "pending_metrics": to_plain(state.pending_metrics),
        "pending_steps": state.pending_steps,
        "exploration_rng": state.model.model.exploration_generator(info.device).get_state().cpu(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if is_cuda(info.device) else [],
    }


def _gather_to_rank0(obj, info: DistInfo) -> Optional[list]:
    if info.world_size == 1:
        return [obj]
    gathered = [None] * info.world_size if info.rank == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def save_train_state(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                     logger: Optional[RunLogger], info: DistInfo) -> None:
    """Checkpoint step_<N> (+ .state); every rank takes part, rank 0 writes. Never with non-finite weights."""
    ranks = _gather_to_rank0(_rank_state(state, info), info)
    if info.rank != 0:
        return
    raw_weights = state.model.state_dict()
    bad = [k for k, v in raw_weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDivergedError(f"weights {bad[:3]} are not finite at step {state.step}; checkpoint not saved")
    train_state = {
        "step": state.step,
        "block": state.block,
        "optimizers": [optimizer.state_dict() for optimizer in state.optimizers],
        "loader": train_loader.state_dict(),
        "ranks": ranks,
        "ema": state.ema.state_dict() if state.ema is not None else None,
        # The model file holds the EMA weights when EMA is on; training resumes from the raw ones.
        "raw_weights": raw_weights if state.ema is not None else None,
        "config": config.model_dump(),
        "dataset": train_loader.metadata.model_dump(),
        "world_size": info.world_size,
        "code_version": _code_version(),
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
    for optimizer, optimizer_state in zip(state.optimizers, saved["optimizers"]):
        optimizer.load_state_dict(optimizer_state)
    if state.ema is not None and saved["ema"] is not None:
        state.ema.load_state_dict(saved["ema"])
    state.step, state.block = saved["step"], saved["block"]
    train_loader.load_state_dict(saved["loader"])

    mine = saved["ranks"][info.rank]
    state.carry = from_plain(mine["carry"], info.device)
    state.pending_metrics = from_plain(mine["pending_metrics"], info.device)
    state.pending_steps = mine["pending_steps"]
    state.model.model.exploration_generator(info.device).set_state(mine["exploration_rng"])
    torch.set_rng_state(mine["torch_rng"])
    if mine["cuda_rng"]:
        torch.cuda.set_rng_state_all(mine["cuda_rng"])
    if info.rank == 0:
        print(f"resumed from {path} at step {state.step}")
    return saved["wandb_id"]


def _progress_postfix(metrics: Dict[str, float]) -> Dict[str, str]:
    return {"loss": f"{metrics['train/lm_loss']:.4f}", "acc": f"{metrics['train/accuracy']:.3f}",
            "exact": f"{metrics['train/exact_accuracy']:.3f}"}


# ---------------------------------------------------------------------------------------------------------------


def train_and_evaluate(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                       eval_loader: PuzzleDataset, logger: Optional[RunLogger], info: DistInfo) -> None:
    """The loop: eval_interval epochs of training, an evaluation, a checkpoint; until `epochs`."""
    num_blocks = config.epochs // config.epochs_per_eval
    with tqdm(total=state.total_steps, initial=state.step, disable=info.rank != 0, dynamic_ncols=True) as progress:
        while state.block < num_blocks:
            state.model.train()
            for _set_name, batch, _global_size in train_loader:
                if state.step >= state.total_steps:  # the last iteration can hold more batches than needed
                    continue
                metrics = train_batch(config, state, batch, info)
                progress.update(1)
                if metrics is not None and logger is not None:
                    logger.log(metrics, step=state.step)
                    progress.set_postfix(_progress_postfix(metrics))
                if config.checkpoint_interval is not None and state.step % config.checkpoint_interval == 0:
                    save_train_state(config, state, train_loader, logger, info)

            eval_metrics = evaluate_train_state(config, state, eval_loader, info)
            state.block += 1
            if logger is not None:
                logger.log(eval_metrics, step=state.step)
                progress.write(f"eval at step {state.step}: " + ", ".join(
                    f"{k.split('/', 1)[1]} {v:.4f}" for k, v in eval_metrics.items() if "accuracy" in k))
            if config.checkpoint_every_eval or state.block == num_blocks:
                save_train_state(config, state, train_loader, logger, info)


def main(hydra_config: DictConfig) -> None:
    info = init_distributed(hydra_config.get("device", "auto"))
    logger = None
    try:
        config = load_config(hydra_config, info)
        torch.manual_seed(config.seed + info.rank)

        train_loader = create_dataloader(config, "train", info)
        eval_loader = create_dataloader(config, "test", info)
        state = init_train_state(config, train_loader.metadata, info)
        state.evaluators = create_evaluators(config, eval_loader.metadata)
        wandb_id = restore_train_state(config, state, train_loader, info) if config.resume else None

        if info.rank == 0:
            save_code_and_config(config)
            if config.resume:
                rewind_metrics(config, state.step)
            logger = create_logger(config, wandb_id)
            print(f"run {config.run_name!r}: {state.total_steps} steps on {info.device} x{info.world_size}, "
                  f"outputs in {config.checkpoint_path}")
        train_and_evaluate(config, state, train_loader, eval_loader, logger, info)
    finally:
        if logger is not None:
            logger.finish()
        if dist.is_initialized():
            dist.destroy_process_group()


@hydra.main(config_path="config", config_name="cfg_pretrain", version_base=None)
def launch(hydra_config: DictConfig) -> None:
    try:
        main(hydra_config)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    launch()
