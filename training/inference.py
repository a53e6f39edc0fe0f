"""Running a batch of puzzles through an ACT model to the end: the step evaluation, test-time compute and the
tools share."""
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from dataset.common import IGNORE_LABEL_ID


def to_device(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# An output of run_to_halt beside the model's: how far each row's latent states moved in its last segment.
LATENT_CHANGE = "latent_change"


def latent_change(before: Dict[str, torch.Tensor], after: Dict[str, torch.Tensor]) -> torch.Tensor:
    """(rows,) ||after - before|| / ||after|| over every latent state of a row: 0 at a fixed point."""
    moved = sum(((after[k].float() - before[k].float()) ** 2).sum((1, 2)) for k in after)
    size = sum((after[k].float() ** 2).sum((1, 2)) for k in after)
    return (moved / size.clamp_min(1e-30)).sqrt()


def run_to_halt(model: nn.Module, batch: Dict[str, torch.Tensor], return_keys: Sequence[str],
                halt_on_q: bool = False, max_steps: Optional[int] = None,
                latent_noise: Optional[Callable[[int], Optional[torch.Tensor]]] = None):
    """Run one evaluation batch through `model` (the loss head) from a fresh carry until every row has halted;
    (metric sums, outputs).

    Default: the model's max_segments (halt_max_steps, URM's loops; `max_steps` to run another number, more than
    trained included) for all rows; metrics and outputs of the last one. With `halt_on_q` each row stops when its
    Q head says halt; the batch keeps running (static shapes) until the last row stops, and each row's outputs and
    accuracy metrics are taken at its own halting segment. Finished rows restart on blanked labels so they are
    never counted twice. Loss sums are not reported then (they would mix segments). `latent_noise(segment)` gives
    the noise added to the latent before each segment. LATENT_CHANGE in `return_keys` adds each row's
    `latent_change` in its last segment.
    """
    carry = model.initial_carry(batch)
    with_change = LATENT_CHANGE in return_keys
    segment = 0

    def step(data, **kwargs):
        nonlocal carry, segment
        noise = latent_noise(segment) if latent_noise is not None else None
        segment += 1
        before = carry.inner_carry if with_change else None
        result = model(carry=carry, batch=data, return_keys=return_keys, max_steps=max_steps, latent_noise=noise,
                       **kwargs)
        carry = result.carry
        if with_change:
            result.outputs[LATENT_CHANGE] = latent_change(before, carry.inner_carry)
        return result

    if not halt_on_q:
        while True:
            result = step(batch)
            if result.all_halted:
                return result.metrics, result.outputs

    done = torch.zeros_like(carry.halted)
    data, sums, final = batch, {}, {}
    while True:
        result = step(data, halt_on_q=True)
        newly_halted = carry.halted & ~done
        for k, v in result.metrics.items():
            if not k.endswith("loss"):
                sums[k] = sums.get(k, 0) + v
        for k, v in result.outputs.items():
            final[k] = torch.where(newly_halted.view((-1,) + (1,) * (v.ndim - 1)), v, final.get(k, v))
        done = done | carry.halted
        if bool(done.all()):
            return sums, final
        data = {**batch, "labels": torch.where(done.unsqueeze(-1), IGNORE_LABEL_ID, batch["labels"])}
