"""Task evaluators run at every evaluation (configured as `evaluators: [{name: arc@ARC, ...}]`).

An evaluator sees every test example's batch rows and model outputs, and reports task-level metrics that the
per-token ones cannot express (e.g. ARC pass@K after undoing augmentations and voting). The trainer calls, on
every rank: `begin_eval()`, then `update_batch(batch, outputs)` per batch (real rows only, padding removed;
tensors on the CPU or the device), then `result(save_path)`, which gathers across ranks itself and returns the
metrics dict on rank 0 (None elsewhere). `save_path` is a folder the evaluator may write files into.
"""
from typing import Dict, Optional, Set

import torch

from dataset.common import PuzzleDatasetMetadata


class Evaluator:
    """Base class; subclasses set `required_outputs` (model outputs they need, e.g. {"preds", "q_halt_logits"})."""

    required_outputs: Set[str] = set()

    def __init__(self, data_path: str, eval_metadata: PuzzleDatasetMetadata):
        self.data_path = data_path
        self.eval_metadata = eval_metadata

    def begin_eval(self) -> None:
        raise NotImplementedError

    def update_batch(self, batch: Dict[str, torch.Tensor], outputs: Dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def result(self, save_path: Optional[str]) -> Optional[Dict[str, float]]:
        raise NotImplementedError
