"""Learning-rate schedule (docs/DESIGN.md §5): linear warmup from 0, then cosine decay to base · min_ratio.

The trainer calls it with the 1-based number of the update about to be applied, as the original HRM and TRM
trainers do: update 1 uses base / warmup_steps, update warmup_steps the base rate, and the last update
(total_steps) base · min_ratio. URM's trainer calls it one update behind (training/state.py Schedule `lag`).
"""
import math


def cosine_schedule_with_warmup_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                                   min_ratio: float = 0.0) -> float:
    """LR for the optimizer update number `step` (1-based; 0 gives 0) of `total_steps`."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
