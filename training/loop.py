"""The training loop: optimizer steps on global batches, periodic evaluation and checkpoints."""
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from tqdm import tqdm

from dataset.puzzle_dataset import PuzzleDataset
from tasks.base import TaskCodec
from training.checkpoint_files import CheckpointWriter, checkpoint_path
from training.checkpointing import save_train_state
from training.config import PretrainConfig
from training.distributed import DistInfo, all_reduce_gradients, largest_vote, reduce_metric_sums
from training.errors import TrainingDivergedError
from training.evaluation import BoundEvaluator, evaluate
from training.inference import to_device
from training.preemption import Preempted, preemption_handlers, stop_requested
from training.run_logger import RunLogger
from training.state import TrainState
from training.test_time import TestTimeCompute


@dataclass
class Services:
    """What a run uses besides its state: the checkpoint writer, the task of its test data, the evaluators and
    test-time compute of its evaluations, and rank 0's logger."""

    writer: CheckpointWriter = field(default_factory=lambda: CheckpointWriter(background=False))
    codec: Optional[TaskCodec] = None
    evaluators: Sequence[BoundEvaluator] = ()
    test_time: Optional[TestTimeCompute] = None
    logger: Optional[RunLogger] = None


def train_batch(config: PretrainConfig, state: TrainState, batch: Dict[str, torch.Tensor], info: DistInfo
                ) -> Optional[Dict[str, float]]:
    """One optimizer step on one global batch (in grad_accum_steps micro-batches, each with its own carry). Every
    log_interval steps (and at the last) returns the metrics of those steps reduced over ranks, on rank 0;
    otherwise None, without waiting for the device."""
    state.schedule.step += 1

    parts = micro_batches(to_device(batch, info.device), config.grad_accum_steps)
    if state.carry.value is None:
        state.carry.value = [state.model.initial_carry(part) for part in parts]
    tables = state.model.sparse_embeddings()
    step_metrics: Dict[str, torch.Tensor] = {}
    for index, part in enumerate(parts):
        for table in tables:  # this micro-batch's slice of the rows the sparse optimizer updates together
            table.row_offset = index * part["inputs"].shape[0]
        result = state.model(carry=state.carry.value[index], batch=part, return_keys=())
        state.carry.value[index] = result.carry
        step_metrics = {k: v.detach() + step_metrics.get(k, 0) for k, v in result.metrics.items()}
        # Divided by the global batch: the micro-batches' gradients add up to the whole batch's.
        ((1.0 / config.global_batch_size) * result.loss).backward()
    state.metrics.add(step_metrics)
    log_now = state.step % config.log_interval == 0 or state.step == state.schedule.total_steps
    if log_now:  # the step's host syncs, once per interval: this check and the metric reduction below
        check_finite(state.metrics.sums, state.step, config.log_interval, info)

    all_reduce_gradients(state.model, info.world_size)
    lr = state.optimizers.step(state.schedule)
    if state.ema is not None:
        state.ema.update(state.model)

    if not log_now:
        return None
    pending, steps = state.metrics.take()
    sums = reduce_metric_sums(pending, info)
    if info.rank != 0:
        return None
    count = sums.pop("count")
    # Losses are sums over the batches, averaged per sample; accuracies are sums over halted rows, so an interval
    # in which no row halted (ACT rows halt every few segments) has none: they are left out, not logged as 0.
    logged = {f"train/{k}": v / (config.global_batch_size * steps) if k.endswith("loss") else v / count
              for k, v in sums.items() if k.endswith("loss") or count > 0}
    logged["train/lr"] = lr  # the last optimizer's (the dense one, unless freeze_weights)
    return logged


def micro_batches(batch: Dict[str, torch.Tensor], count: int) -> List[Dict[str, torch.Tensor]]:
    """The batch as `count` consecutive, equal micro-batches (views)."""
    if count == 1:
        return [batch]
    pieces = {k: v.chunk(count) for k, v in batch.items()}
    return [{k: chunks[i] for k, chunks in pieces.items()} for i in range(count)]


def check_finite(metric_sums: Dict[str, torch.Tensor], step: int, log_interval: int, info: DistInfo) -> None:
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


def evaluate_train_state(config: PretrainConfig, state: TrainState, eval_loader: PuzzleDataset,
                         services: Services, info: DistInfo) -> Dict[str, float]:
    """Evaluate the run's current weights (the EMA ones when enabled), saving requested outputs."""
    with state.ema.applied_to(state.model) if state.ema is not None else nullcontext():
        return evaluate(state.model, eval_loader, info, config.eval_save_outputs,
                        checkpoint_path(config.checkpoint_path, state.step), services.evaluators,
                        test_time=services.test_time, codec=services.codec)


def progress_postfix(metrics: Dict[str, float]) -> Optional[Dict[str, str]]:
    """The progress bar's loss and accuracies, or None for an interval in which no row halted (the bar keeps
    showing the last interval that had some, instead of flickering to 0)."""
    if "train/accuracy" not in metrics:
        return None
    return {"loss": f"{metrics['train/lm_loss']:.4f}", "acc": f"{metrics['train/accuracy']:.3f}",
            "exact": f"{metrics['train/exact_accuracy']:.3f}"}


def _stop_if_preempted(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset, services: Services,
                       info: DistInfo) -> None:
    """After a SIGTERM / SIGUSR1 on any rank: a full checkpoint of this step (unless one was just written), and
    Preempted, once the files are on disk."""
    received = stop_requested(info)
    if received is None:
        return
    if state.saved_step != state.step:
        save_train_state(config, state, train_loader, services.writer, services.logger, info)
    services.writer.wait()
    cause = "stopped by Ctrl-C (SIGINT)" if received == "SIGINT" else f"preempted by {received}"
    raise Preempted(f"{cause} at step {state.step}: checkpoint "
                    f"{checkpoint_path(config.checkpoint_path, state.step)} written; continue with resume=latest "
                    f"checkpoint_path={config.checkpoint_path}")


class Budget:
    """max_steps and max_time: whether the run must stop after this step. Every rank asks after every step; the
    clock is each rank's own, so ranks take the largest vote and all stop after the same step."""

    def __init__(self, config: PretrainConfig):
        self.max_steps, self.max_time = config.max_steps, config.max_time
        self.start = time.monotonic()

    def reached(self, step: int, info: DistInfo) -> Optional[str]:
        """The budget that ran out (as its key=value), or None."""
        if self.max_steps is not None and step >= self.max_steps:
            return f"max_steps={self.max_steps}"
        if self.max_time is not None and largest_vote(int(time.monotonic() - self.start >= self.max_time), info):
            return f"max_time={self.max_time:g}s"
        return None


def evaluate_and_log(config: PretrainConfig, state: TrainState, eval_loader: PuzzleDataset, services: Services,
                     info: DistInfo, progress: tqdm) -> None:
    eval_metrics = evaluate_train_state(config, state, eval_loader, services, info)
    if services.logger is not None:
        services.logger.log(eval_metrics, step=state.step)
        progress.write(f"eval at step {state.step} ({eval_metrics['eval/wall_time_s']:.1f} s): " +
                       ", ".join(f"{k.split('/', 1)[1]} {v:.4f}" for k, v in eval_metrics.items() if "accuracy" in k))


def _stop_at_budget(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                    eval_loader: PuzzleDataset, services: Services, info: DistInfo, progress: tqdm, spent: str) -> None:
    """The final evaluation and a full checkpoint of this step, once the files are on disk."""
    evaluate_and_log(config, state, eval_loader, services, info, progress)
    if state.saved_step != state.step:
        save_train_state(config, state, train_loader, services.writer, services.logger, info)
    services.writer.wait()
    if info.rank == 0:
        progress.write(f"stopped at {spent} after step {state.step} of {state.schedule.total_steps}: checkpoint "
                       f"{checkpoint_path(config.checkpoint_path, state.step)} written; continue with resume=latest "
                       f"checkpoint_path={config.checkpoint_path}")


def train_and_evaluate(config: PretrainConfig, state: TrainState, train_loader: PuzzleDataset,
                       eval_loader: PuzzleDataset, services: Services, info: DistInfo) -> None:
    """The loop: eval_interval epochs of training, an evaluation (from block min_eval_interval on), a checkpoint;
    until `epochs`. A SIGTERM or SIGUSR1 stops it after the current step (or evaluation) with a checkpoint
    (training/preemption.py); max_steps or max_time stop it after the step that reaches them, with an evaluation
    and a checkpoint that resume=latest continues."""
    num_blocks = config.epochs // config.epochs_per_eval
    logger = services.logger
    budget = Budget(config)
    if config.max_steps is not None and state.step >= config.max_steps:
        if info.rank == 0:
            print(f"the run is at step {state.step}, max_steps={config.max_steps}: nothing to train (raise max_steps "
                  f"or leave it out to continue)")
        return
    with preemption_handlers(), tqdm(total=state.schedule.total_steps, initial=state.step, disable=info.rank != 0,
                                     dynamic_ncols=True) as progress:
        while state.schedule.block < num_blocks:
            state.model.train()
            for _set_name, batch, _global_size in train_loader:
                metrics = train_batch(config, state, batch, info)
                progress.update(1)
                if metrics is not None and logger is not None:
                    logger.log(metrics, step=state.step)
                    postfix = progress_postfix(metrics)
                    if postfix is not None:
                        progress.set_postfix(postfix)
                if config.checkpoint_interval is not None and state.step % config.checkpoint_interval == 0:
                    save_train_state(config, state, train_loader, services.writer, logger, info)
                _stop_if_preempted(config, state, train_loader, services, info)
                spent = budget.reached(state.step, info)
                if spent is not None:
                    _stop_at_budget(config, state, train_loader, eval_loader, services, info, progress, spent)
                    return

            if state.schedule.block >= config.min_eval_interval:
                evaluate_and_log(config, state, eval_loader, services, info, progress)
            state.schedule.block += 1
            if config.checkpoint_every_eval or state.schedule.block == num_blocks:
                save_train_state(config, state, train_loader, services.writer, logger, info)
            _stop_if_preempted(config, state, train_loader, services, info)
    services.writer.wait()
