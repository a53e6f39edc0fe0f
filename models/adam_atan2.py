"""AdamATan2 (Everett et al. 2024, "Scaling Exponents Across Parameterizations and Optimizers"): Adam whose
update is atan2(m, sqrt(v)) instead of m / (sqrt(v) + eps), so it needs no epsilon and is bounded.

The `adam-atan2` package ships a fused CUDA kernel that often fails to build or import; we use it only when it
imports and the parameters live on CUDA, and otherwise this multi-tensor (foreach) PyTorch implementation of the
same update (docs/DESIGN.md §5):

    p <- p * (1 - lr * wd)
    m <- lerp(m, g, 1 - beta1);   v <- lerp(v, g^2, 1 - beta2)
    p <- p - lr / (1 - beta1^t) * atan2(m, sqrt(v) / sqrt(1 - beta2^t))
"""
import math
from typing import Iterable, Tuple

import torch

try:
    from adam_atan2 import AdamATan2 as FusedAdamATan2  # type: ignore[import-not-found]
except ImportError:  # no compiled backend on this machine (the usual case off CUDA): use ours
    FusedAdamATan2 = None


class AdamATan2(torch.optim.Optimizer):
    keeps_int_steps = True  # `step` is an int in its state (the fused package keeps a tensor; checkpoints convert)

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 1e-2):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("closures are not supported by AdamATan2")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            # All parameters of a group are created together and step together, so they share one step count.
            steps = {self.state[p]["step"] for p in params}
            if len(steps) != 1:
                raise RuntimeError(f"AdamATan2: parameters of one group are at different steps {sorted(steps)}")
            _foreach_adam_atan2(params, [p.grad for p in params], [self.state[p]["exp_avg"] for p in params],
                                [self.state[p]["exp_avg_sq"] for p in params], step=steps.pop(), lr=group["lr"],
                                beta1=group["betas"][0], beta2=group["betas"][1],
                                weight_decay=group["weight_decay"])


def _foreach_adam_atan2(params, grads, exp_avgs, exp_avg_sqs, step: int, lr: float, beta1: float, beta2: float,
                        weight_decay: float) -> None:
    torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_lerp_(exp_avg_sqs, torch._foreach_mul(grads, grads), 1.0 - beta2)

    step_size = lr / (1.0 - beta1 ** step)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, math.sqrt(1.0 - beta2 ** step))
    # No foreach atan2 exists; one small kernel per tensor is fine next to the forward's cost.
    updates = [torch.atan2(m, d) for m, d in zip(exp_avgs, denom)]
    torch._foreach_add_(params, updates, alpha=-step_size)


def build_adam_atan2(params: Iterable, lr: float, betas: Tuple[float, float], weight_decay: float,
                     on_cuda: bool) -> torch.optim.Optimizer:
    """The fused kernel when the parameters are on CUDA and it is installed, else the PyTorch version above."""
    if FusedAdamATan2 is not None and on_cuda:
        return FusedAdamATan2(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return AdamATan2(params, lr=lr, betas=betas, weight_decay=weight_decay)

