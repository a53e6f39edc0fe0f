"""A training run's state, as components that each save and restore themselves (state_dict / load_state_dict).

    TrainState
      model       the loss head around the ACT model (torch.nn.Module; compiled in place when compile is on)
      optimizers  Optimizers: the sparse puzzle-embedding SignSGD and the dense optimizer, with their base rates
      schedule    Schedule: the optimizer step, the block of eval_interval epochs, the learning-rate schedule
      carry       Carry: the ACT carry of this process's rows, which persists across training batches
      metrics     PendingMetrics: training metric sums not logged yet (kept on the device)
      rng         RNG: the model's own generators (ACT exploration) and torch's global ones
      ema         training.ema.ModelEMA, or None

The data loader's position is the loader's own state_dict (dataset/puzzle_dataset.py). What a checkpoint holds of
each, and how the files are laid out, is training/checkpointing.py's business; the services a run uses besides
its state (checkpoint writer, evaluators, test-time compute, logger) are not part of it.
"""
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from models.act import ACTCarry
from training.ema import ModelEMA
from training.schedule import cosine_schedule_with_warmup_lr

# Optimizer group settings that describe the run, not the optimizer's progress: an elastic resume keeps its own.
RUN_GROUP_SETTINGS = ("world_size",)


class Schedule:
    """The run's position (optimizer steps taken, blocks of eval_interval epochs done) and its learning rates:
    linear warm-up, then cosine to base · min_ratio at `total_steps`. With `lag` 1 the schedule is read one update
    behind, at the updates already applied, as URM's trainer does (its first update has rate 0 in warm-up)."""

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float, lag: int = 0):
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio
        self.lag = lag
        self.step = 0
        self.block = 0

    def lr(self, base_lr: float) -> float:
        """The rate of the update about to be applied (number `step`, 1-based) for an optimizer of `base_lr`: the
        schedule at `step - lag`."""
        return cosine_schedule_with_warmup_lr(max(self.step - self.lag, 0), base_lr, self.warmup_steps,
                                              self.total_steps, self.min_ratio)

    def state_dict(self) -> Dict[str, int]:
        return {"step": self.step, "block": self.block}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.step, self.block = int(state["step"]), int(state["block"])


class Optimizers:
    """The run's optimizers with their base learning rates, stepped together on the schedule."""

    def __init__(self, optimizers: List[Tuple[torch.optim.Optimizer, float]]):
        self.pairs = list(optimizers)

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        return (optimizer for optimizer, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> torch.optim.Optimizer:
        return self.pairs[index][0]

    def step(self, schedule: Schedule) -> float:
        """Set each optimizer's rate for this step, apply it, clear the gradients; the last optimizer's rate (the
        dense one's, unless only puzzle embeddings train)."""
        lr = 0.0
        for optimizer, base_lr in self.pairs:
            lr = schedule.lr(base_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return lr

    def state_dict(self) -> List[dict]:
        """Each optimizer's state in the one format checkpoints hold, whichever AdamATan2 backend made it: every
        `step` count a 0-d float32 CPU tensor, as the fused package keeps it (models/adam_atan2.py's keeps an
        int). So a run checkpointed on one machine resumes on another that has the other backend."""
        states = []
        for optimizer in self:
            state = optimizer.state_dict()
            state["state"] = {k: ({**entry, "step": torch.tensor(float(entry["step"]), dtype=torch.float32)}
                                  if "step" in entry else entry)  # copies: the live state is not touched
                              for k, entry in state["state"].items()}
            states.append(state)
        return states

    def load_state_dict(self, states: List[dict]) -> None:
        """Load states saved by `state_dict` (or by either backend's own), converting the step counts to what
        each optimizer keeps: an int for the PyTorch AdamATan2, a float32 tensor on the parameter's device for
        the fused one (torch's loader would leave it on the CPU, where the CUDA kernel cannot use it); an optimizer
        with `keeps_int_steps` keeps ints. Group
        settings of this run (the sparse optimizer's number of processes) stay this run's."""
        for optimizer, state in zip(self, states):
            run_settings = [{k: g[k] for k in RUN_GROUP_SETTINGS if k in g} for g in optimizer.param_groups]
            optimizer.load_state_dict(state)
            for group, settings in zip(optimizer.param_groups, run_settings):
                group.update(settings)
            keeps_int = getattr(optimizer, "keeps_int_steps", False)
            for param, entry in optimizer.state.items():
                if "step" in entry:
                    step = float(entry["step"])
                    entry["step"] = int(step) if keeps_int else torch.tensor(step, dtype=torch.float32,
                                                                             device=param.device)


def _to(obj, device: Optional[torch.device]):
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj.to(device) if isinstance(obj, torch.Tensor) and device is not None else obj


class Carry:
    """The ACT carries of this process's rows, one per micro-batch (gradient accumulation; one without): which
    puzzle each row works on, its latent states and segments. None until the first batch (and after an elastic
    resume: every row then starts a new puzzle)."""

    def __init__(self):
        self.value: Optional[List[ACTCarry]] = None

    def state_dict(self) -> Optional[List[dict]]:
        """Plain tensors and dicts. The carries and their tensors are new every step, never changed in place, so
        this is already a snapshot."""
        if self.value is None:
            return None
        return [{"inner_carry": dict(carry.inner_carry), "steps": carry.steps, "halted": carry.halted,
                 "current_data": dict(carry.current_data)} for carry in self.value]

    def load_state_dict(self, state: Optional[List[dict]], device: Optional[torch.device] = None) -> None:
        if state is None:
            self.value = None
            return
        self.value = [ACTCarry(inner_carry=_to(part["inner_carry"], device), steps=_to(part["steps"], device),
                               halted=_to(part["halted"], device), current_data=_to(part["current_data"], device))
                      for part in state]


class PendingMetrics:
    """Training metric sums since the last log, on the device (reading them makes the host wait for it)."""

    def __init__(self):
        self.sums: Optional[Dict[str, torch.Tensor]] = None
        self.steps = 0

    def add(self, metrics: Dict[str, torch.Tensor]) -> None:
        self.sums = {k: v.detach().to(torch.float64) + (self.sums or {}).get(k, 0) for k, v in metrics.items()}
        self.steps += 1

    def take(self) -> Tuple[Optional[Dict[str, torch.Tensor]], int]:
        """The sums and their number of steps; the component starts over."""
        taken = (self.sums, self.steps)
        self.sums, self.steps = None, 0
        return taken

    def state_dict(self) -> dict:
        return {"sums": self.sums, "steps": self.steps}

    def load_state_dict(self, state: dict, device: Optional[torch.device] = None) -> None:
        self.sums, self.steps = _to(state["sums"], device), int(state["steps"])


class RNG:
    """The generators this process draws from: the model's own (ACT exploration) and torch's global CPU and CUDA
    ones (Python's and numpy's global generators are not used by training: only a run's name draws from
    Python's)."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.model = model
        self.device = device

    def state_dict(self) -> dict:
        return {"model": self.model.rng_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []}

    def load_state_dict(self, state: dict) -> None:
        self.load_model_generators(state)
        torch.set_rng_state(state["torch"])
        if state["cuda"]:
            torch.cuda.set_rng_state_all(state["cuda"])

    def load_model_generators(self, state: dict) -> None:
        """Only the model's own generators (an elastic resume continues those of the rank with this number)."""
        self.model.load_rng_state(state["model"])


@dataclass
class TrainState:
    model: nn.Module
    optimizers: Optimizers
    schedule: Schedule
    carry: Carry
    metrics: PendingMetrics
    rng: RNG
    ema: Optional[ModelEMA] = None
    saved_step: Optional[int] = None  # step of the last checkpoint written or resumed from

    @property
    def step(self) -> int:
        return self.schedule.step
