"""Running a batch of puzzles through an ACT model to the end: the step evaluation, test-time compute and the
tools share."""
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from dataset.common import IGNORE_LABEL_ID


def to_device(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def run_to_halt(model: nn.Module, batch: Dict[str, torch.Tensor], return_keys: Sequence[str],
                halt_on_q: bool = False, max_steps: Optional[int] = None,
                latent_noise: Optional[Callable[[int], Optional[torch.Tensor]]] = None):
    """Run one evaluation batch through `model` (the loss head) from a fresh carry until every row has halted;
    (metric sums, outputs).

    Default: the model's max_segments (halt_max_steps, URM's loops; `max_steps` to run another number) for all
    rows; metrics and outputs of the
    last one. With `halt_on_q` each row stops when its Q head says halt; the batch keeps running (static shapes)
    until the last row stops, and each row's outputs and accuracy metrics are taken at its own halting segment.
    Finished rows restart on blanked labels so they are never counted twice. Loss sums are not reported then
    (they would mix segments). `latent_noise(segment)` gives the noise added to the latent before each segment.
    """
    carry = model.initial_carry(batch)
    segment = 0

    def step(data, **kwargs):
        nonlocal segment
        noise = latent_noise(segment) if latent_noise is not None else None
        segment += 1
        return model(carry=carry, batch=data, return_keys=return_keys, max_steps=max_steps, latent_noise=noise,
                     **kwargs)

    if not halt_on_q:
        while True:
            carry, _, metrics, outputs, all_halted = step(batch)
            if all_halted:
                return metrics, outputs

    done = torch.zeros_like(carry.halted)
    data, sums, final = batch, {}, {}
    while True:
        carry, _, metrics, outputs, _ = step(data, halt_on_q=True)
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
