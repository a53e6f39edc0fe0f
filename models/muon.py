"""Muon and its AdamW companion, as URM trains ARC-AGI-2 (`use_muon=true`; Gao et al. 2025, code UbiquantAI/URM).

Every 2-D dense weight (the token embedding and the heads included) goes to Muon: a momentum buffer b = μ·b + g, the
Nesterov update g + μ·b rounded to bfloat16 (URM's; `ns_input_dtype` keeps it in float32), orthogonalised by five
Newton–Schulz iterations in float32 (each with its own coefficients), then
p <- p·(1 - lr·wd) - lr·0.2·sqrt(max(rows, cols))·update: the learning rate matched to AdamW's update RMS
(Moonlight, arXiv 2502.16982). The other dense parameters go to `MatchedAdamW`. The puzzle embeddings keep their
sparse SignSGD; every optimizer follows the run's schedule.

torch.optim.Muon holds the parameter groups, their checks and the momentum buffers (its `_init_group`); its own
update cannot express this one (its momentum is an average, its iterations use one set of coefficients in
bfloat16), so `step` is written here.
"""
import math
from typing import Iterable, Sequence, Tuple

import torch

# (a, b, c) of each Newton–Schulz iteration X <- a·X + (b·A + c·A²)·X, A = X·Xᵀ: URM's five.
NS_COEFFICIENTS = ((7.2086, -15.5131, 9.0178), (3.9623, -2.5813, 0.4542), (3.9466, -2.5765, 0.4544),
                   (3.8991, -2.5671, 0.4566), (3.7186, -2.5308, 0.4653))
NS_EPS = 1e-7  # the Frobenius norm is clamped at this before dividing
# The dtype the update is rounded to before the iterations: URM's bfloat16. The rounding amplifies float32
# rounding: two runs that differ only in it end 30 steps up to 1.3e-2 of a weight's largest entry apart, and
# within 3e-6 with float32 here (docs/DESIGN.md §5).
NS_INPUT_DTYPE = torch.bfloat16


def newton_schulz(update: torch.Tensor, coefficients: Sequence[Tuple[float, float, float]] = NS_COEFFICIENTS,
                  eps: float = NS_EPS, input_dtype: torch.dtype = NS_INPUT_DTYPE) -> torch.Tensor:
    """The update made near-orthogonal: rounded to `input_dtype` (bfloat16, as URM does; float32 rounds nothing
    for a float32 update), in float32 from there; a wide matrix is iterated on its transpose's side so that
    A = X·Xᵀ is the smaller Gram matrix."""
    x = update.to(input_dtype).float()
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / x.norm().clamp_min(eps)
    for a, b, c in coefficients:
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class Muon(torch.optim.Muon):
    """URM's Muon on 2-D parameters (see the module docstring); lr is set by the schedule every step.
    `ns_input_dtype` (a group key too) is the dtype the update is rounded to before Newton–Schulz: bfloat16 is
    URM's (bitwise), float32 takes a float32 update as it is."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.0, weight_decay: float = 0.1,
                 momentum: float = 0.95, ns_input_dtype: torch.dtype = NS_INPUT_DTYPE):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=True,
                         ns_coefficients=NS_COEFFICIENTS, eps=NS_EPS, ns_steps=len(NS_COEFFICIENTS),
                         adjust_lr_fn="match_rms_adamw")
        self.defaults["ns_input_dtype"] = ns_input_dtype
        for group in self.param_groups:
            group.setdefault("ns_input_dtype", ns_input_dtype)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("closures are not supported by Muon here")
        for group in self.param_groups:
            params, grads, buffers = [], [], []
            self._init_group(group, params, grads, buffers)
            momentum, lr = group["momentum"], group["lr"]
            for param, grad, buffer in zip(params, grads, buffers):
                buffer.mul_(momentum).add_(grad)  # a sum with decay, not an average
                update = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                # a group loaded from a state dict written before the key existed rounds to bfloat16
                update = newton_schulz(update, group["ns_coefficients"], group["eps"],
                                       group.get("ns_input_dtype", NS_INPUT_DTYPE))
                param.mul_(1.0 - lr * group["weight_decay"])
                # torch's "match_rms_adamw" rule: updates of the RMS AdamW's would have
                param.add_(update.to(param.dtype), alpha=-lr * 0.2 * math.sqrt(max(param.shape)))


class MatchedAdamW(torch.optim.Optimizer):
    """The AdamW beside URM's Muon (its biases and the convolution's weights): m, v by lerp; decoupled weight
    decay; p <- p - lr·sqrt(1 - β2^t)/(1 - β1^t) · m/(sqrt(v) + eps), with eps added before the bias correction
    (torch.optim.AdamW adds it after)."""

    keeps_int_steps = True  # `step` is an int in its state, as models/adam_atan2.py's (checkpoints convert it)

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.0, betas: Tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.1):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"lr, eps, weight_decay must be >= 0 and betas in [0, 1): lr={lr}, eps={eps}, "
                             f"weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("closures are not supported by MatchedAdamW")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(param.grad, 1.0 - beta1)
                v.lerp_(param.grad.square(), 1.0 - beta2)
                param.mul_(1.0 - group["lr"] * group["weight_decay"])
                scale = math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
                param.add_(m / (v.sqrt() + group["eps"]), alpha=-group["lr"] * scale)
