"""Exponential moving average of a model's weights (parameters and floating-point buffers).

The buffers matter for HRM: the puzzle-embedding table is a buffer trained by its own optimizer. Evaluation and
saved checkpoints use the average when `ema=true`; training continues on the raw weights.
"""
from contextlib import contextmanager
from typing import Dict, Iterator

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, rate: float):
        self.rate = rate
        self.shadow: Dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in self._tracked(model).items()}

    @staticmethod
    def _tracked(model: nn.Module) -> Dict[str, torch.Tensor]:
        return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- rate · shadow + (1 − rate) · weights, after every optimizer step."""
        current = self._tracked(model)
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in names], [current[k].detach() for k in names], 1.0 - self.rate)

    @contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into `model` (for evaluation or saving), then restore."""
        tracked = self._tracked(model)
        backup = {k: v.detach().clone() for k, v in tracked.items()}
        with torch.no_grad():
            for k, v in tracked.items():
                v.copy_(self.shadow[k])
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in tracked.items():
                    v.copy_(backup[k])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"EMA state lacks {missing[:3]}")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])
