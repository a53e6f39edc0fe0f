"""Evaluation: every test batch run to its end from a fresh carry; metric sums per set, evaluators, saved outputs."""
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from dataset.common import IGNORE_LABEL_ID
from dataset.puzzle_dataset import PuzzleDataset
from evaluators import Evaluator
from training.distributed import DistInfo
from utils.checkpoint import atomic_torch_save

if TYPE_CHECKING:  # test_time.py builds on run_to_halt below
    from training.test_time import TestTimeCompute


@dataclass
class BoundEvaluator:
    """An evaluator fed the rows of one dataset of the (possibly merged) test loader."""

    evaluator: Evaluator
    dataset_index: int         # position in the test data paths
    identifier_offset: int     # subtracted from the merged puzzle identifiers: the dataset's own ids again

    @property
    def name(self) -> str:
        """Folder suffix and metric-group suffix: the class name, plus the dataset index after the first."""
        return f"{type(self.evaluator).__name__}{self.dataset_index or ''}"


def to_device(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def run_to_halt(model: nn.Module, forward: Callable, batch: Dict[str, torch.Tensor], return_keys: Sequence[str],
                halt_on_q: bool = False, max_steps: Optional[int] = None,
                latent_noise: Optional[Callable[[int], Optional[torch.Tensor]]] = None):
    """Run one evaluation batch from a fresh carry until every row has halted; (metric sums, outputs).

    Default: halt_max_steps segments (`max_steps` to run another number) for all rows; metrics and outputs of the
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
        return forward(carry=carry, batch=data, return_keys=return_keys, max_steps=max_steps, latent_noise=noise,
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


def evaluate(model: nn.Module, forward: Callable, eval_loader: PuzzleDataset, info: DistInfo,
             save_outputs: Sequence[str] = (), save_prefix: Optional[str] = None,
             evaluators: Sequence[BoundEvaluator] = (), halt_on_q: bool = False,
             test_time: Optional["TestTimeCompute"] = None) -> Dict[str, float]:
    """Run every test example to the end (fresh carry per batch); metric means per set on rank 0, and
    `eval/wall_time_s`. Rank 0 shows a progress bar. With `test_time` each example runs as its variants and the
    selected answer is scored and saved (training/test_time.py).

    Requested outputs are written per rank to `<save_prefix>_all_preds.<rank>`; each evaluator sees every real
    row of its dataset (with that dataset's own puzzle identifiers) and adds its metrics (it may write files
    under `<save_prefix>_<EvaluatorClass>/`).
    """
    start = time.perf_counter()
    model.eval()
    for bound in evaluators:
        bound.evaluator.begin_eval()
    return_keys = sorted(set(save_outputs).union(*(b.evaluator.required_outputs for b in evaluators)))
    sums: Dict[str, Dict[str, torch.Tensor]] = {}
    saved: Dict[str, List[torch.Tensor]] = {k: [] for k in save_outputs}
    local_batch = eval_loader.local_batch_size
    progress = tqdm(eval_loader, total=eval_loader.num_eval_batches(), desc="eval", unit="batch", leave=False,
                    disable=info.rank != 0, dynamic_ncols=True)
    with torch.inference_mode():
        for set_name, batch, effective_size in progress:
            batch = to_device(batch, info.device)
            if test_time is None:
                metrics, outputs = run_to_halt(model, forward, batch, return_keys, halt_on_q)
            else:
                metrics, outputs = test_time.run_batch(model, forward, batch, return_keys, halt_on_q)
            set_sums = sums.setdefault(set_name, {})
            for k, v in metrics.items():
                set_sums[k] = set_sums.get(k, 0) + v.to(torch.float64)

            # The last global batch is padded; keep only this rank's real rows.
            real_rows = min(max(effective_size - info.rank * local_batch, 0), local_batch)
            real_batch = {k: v[:real_rows] for k, v in batch.items()}
            real_outputs = {k: v[:real_rows] for k, v in outputs.items()}
            dataset_index, _ = eval_loader.source_of(set_name)
            for bound in evaluators:
                if bound.dataset_index == dataset_index:
                    own = {**real_batch, "puzzle_identifiers": real_batch["puzzle_identifiers"] - bound.identifier_offset}
                    bound.evaluator.update_batch(own, real_outputs)
            for k in saved:
                saved[k].append((real_batch if k in real_batch else real_outputs)[k].cpu())
    model.train()

    if saved and save_prefix is not None:
        atomic_torch_save({k: torch.cat(v) if v else torch.empty(0) for k, v in saved.items()},
                          f"{save_prefix}_all_preds.{info.rank}")
    results = reduce_eval_metrics(sums, eval_loader.metadata.sets, info)
    for bound in evaluators:
        save_path = f"{save_prefix}_{bound.name}" if save_prefix is not None else None
        evaluator_metrics = bound.evaluator.result(save_path)
        if info.rank == 0 and evaluator_metrics:
            results.update({f"eval/{_for_dataset(k, bound.dataset_index)}": v for k, v in evaluator_metrics.items()})
    if info.rank == 0:
        results["eval/wall_time_s"] = time.perf_counter() - start
    return results


def _for_dataset(key: str, dataset_index: int) -> str:
    """An evaluator's metric name for the dataset_index-th test dataset: 'ARC/pass@1' -> 'ARC1/pass@1' (i > 0)."""
    if dataset_index == 0:
        return key
    group, sep, rest = key.partition("/")
    return f"{group}{dataset_index}{sep}{rest}"


def reduce_eval_metrics(sums: Dict[str, Dict[str, torch.Tensor]], sets: Sequence[str], info: DistInfo
                        ) -> Dict[str, float]:
    """Sum per-set metric sums over ranks (same order everywhere, zeros for unseen sets); means on rank 0."""
    keys = sorted({k for set_sums in sums.values() for k in set_sums})
    table = torch.zeros(len(sets), len(keys), dtype=torch.float64, device=info.device)
    for i, set_name in enumerate(sets):
        for j, key in enumerate(keys):
            table[i, j] = sums.get(set_name, {}).get(key, 0)
    if info.world_size > 1:
        dist.reduce(table, dst=0)
    if info.rank != 0:
        return {}
    results = {}
    for i, set_name in enumerate(sets):
        row = dict(zip(keys, table[i].tolist()))
        count = max(row.pop("count", 0.0), 1.0)
        results.update({f"eval/{set_name}/{k}": v / count for k, v in row.items()})
    return results
