"""Test-time training of a trained model on new puzzles' demonstrations (tools/adapt.py): which weights learn, the
pull back toward the checkpoint, the training steps and the held-out scores that choose their number.

What trains (`train=`):
  embeddings  the new puzzles' rows of the puzzle-embedding table (sparse SignSGD), the only way the model can tell
              new identifiers apart;
  dense       every dense weight too, with the run's optimizer family (AdamATan2, or Muon + AdamW);
  io          the middle ground: the token embedding and the output heads (lm_head, q_head), the recursive core
              frozen. A new task mostly re-labels what the core already does (ARC's colours and shapes, a colour
              rule); the core, which every recursion step reuses, is what pretraining paid for and what a few
              demonstrations overfit most easily. It is a small fraction of the weights (optimizer state and a
              per-task copy stay small) and its backward pass skips the core's weight gradients.
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from dataset.puzzle_dataset import PuzzleDataset
from training.config import PretrainConfig
from training.distributed import DistInfo
from training.loop import progress_postfix, train_batch
from training.state import TrainState
from utils.errors import UserError

TRAINABLE = ("embeddings", "dense", "io")
# The ACT wrapper's input and output layers (models/act.py), shared by HRM, TRM and URM.
IO_MODULES = (".inner.embed_tokens.", ".inner.lm_head.", ".inner.q_head.")


class AdaptationError(UserError, ValueError):
    """Adaptation that cannot go on with this data or model; the message says what to change."""


def set_trainable(model: nn.Module, train: Sequence[str]) -> List[nn.Parameter]:
    """Let exactly the dense weights of `train` learn; returns them. (The puzzle-embedding rows are buffers with
    their own optimizer: `embeddings` concerns them, not this.)"""
    chosen = []
    for name, param in model.named_parameters():
        learns = "dense" in train or ("io" in train and any(part in f".{name}" for part in IO_MODULES))
        param.requires_grad_(learns)
        if learns:
            chosen.append(param)
    return chosen


class DecayToward(torch.optim.Optimizer):
    """Weight decay toward fixed anchors (the checkpoint's weights): w <- w - lr · weight_decay · (w - anchor),
    applied after the dense optimizer's step (with its own decay off). L2-SP (Li et al. 2018): with a few
    demonstrations, decay toward zero would erode what pretraining learned; decay toward the checkpoint keeps the
    adapted model near it, which is the prior worth keeping."""

    def __init__(self, params: Iterable[nn.Parameter], weight_decay: float):
        params = list(params)
        super().__init__(params, dict(lr=0.0, weight_decay=weight_decay))
        self.anchors = {p: p.detach().clone() for p in params}

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None) -> None:
        for group in self.param_groups:
            rate = group["lr"] * group["weight_decay"]
            for p in group["params"]:
                p.sub_(rate * (p - self.anchors[p]))


def train_steps(config: PretrainConfig, state: TrainState, loader: PuzzleDataset, steps: int, info: DistInfo,
                at_steps: Sequence[int] = (), on_step: Optional[Callable[[int], None]] = None,
                desc: str = "adapting") -> None:
    """Train `steps` optimizer steps (repeating the loader's epochs); `on_step(n)` runs after step n of `at_steps`
    (and before the first step for 0)."""
    if on_step is not None and 0 in at_steps:
        on_step(0)
    with tqdm(total=steps, desc=desc, disable=info.rank != 0, dynamic_ncols=True, leave=False) as bar:
        while state.step < steps:
            yielded = False
            for _, batch, _ in loader:
                yielded = True
                metrics = train_batch(config, state, batch, info)
                bar.update(1)
                if metrics is not None and progress_postfix(metrics) is not None:
                    bar.set_postfix(progress_postfix(metrics))
                if on_step is not None and state.step in at_steps:
                    on_step(state.step)
                if state.step == steps:
                    break
            if not yielded:
                raise AdaptationError(f"the new puzzles have fewer demonstration examples than one batch "
                                      f"({config.global_batch_size}); lower global_batch_size=")


def best_steps(scores: Dict[int, Dict[str, float]]) -> int:
    """The step count with the best held-out exact accuracy; ties go to the better cell accuracy, then to the lower
    held-out loss, then to fewer steps. With one held-out pair per task, exact and cell accuracy are often 1 at
    every count: the loss still says how sure the model is of the right answer (it rises again when the
    demonstrations are overfit)."""
    return max(scores, key=lambda n: (scores[n]["exact"], scores[n]["cell"], -scores[n]["loss"], -n))
