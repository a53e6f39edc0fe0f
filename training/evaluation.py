"""Evaluation: every test batch run to its end from a fresh carry; metric sums per set, evaluators, saved outputs."""
import itertools
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from dataset.puzzle_dataset import PuzzleDataset
from evaluators import Evaluator
from tasks.base import TaskCodec
from training.checkpoint_files import atomic_torch_save
from training.distributed import DistInfo, on_rank_zero
from training.inference import run_to_halt, to_device
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


def evaluate(model: nn.Module, eval_loader: PuzzleDataset, info: DistInfo,
             save_outputs: Sequence[str] = (), save_prefix: Optional[str] = None,
             evaluators: Sequence[BoundEvaluator] = (), halt_on_q: bool = False,
             test_time: Optional[TestTimeCompute] = None, codec: Optional[TaskCodec] = None) -> Dict[str, float]:
    """Run every test example to the end (fresh carry per batch); metric means per set on rank 0, and
    `eval/wall_time_s`. Rank 0 shows a progress bar. With `test_time` each example runs as its variants and the
    selected answer is scored and saved (training/test_time.py). A task whose codec names a `check_metric` gets the
    fraction of answers that pass its check (mazes: `valid_shortest_path`, a shortest path from start to goal, any
    one of them, where exact accuracy asks for the one the label marks; papers report both).

    Requested outputs are written per rank to `<save_prefix>_all_preds.<rank>`; each evaluator sees every real
    row of its dataset (with that dataset's own puzzle identifiers) and adds its metrics (it may write files
    under `<save_prefix>_<EvaluatorClass>/`).
    """
    start = time.perf_counter()
    model.eval()
    for bound in evaluators:
        bound.evaluator.begin_eval()
    checked = codec if codec is not None and codec.check_metric is not None else None
    return_keys = sorted(set(save_outputs).union({"preds"} if checked else set(),
                                                 *(b.evaluator.required_outputs for b in evaluators)))
    sums: Dict[str, Dict[str, torch.Tensor]] = {}
    saved: Dict[str, List[torch.Tensor]] = {k: [] for k in save_outputs}
    local_batch = eval_loader.local_batch_size
    progress = tqdm(eval_loader, total=eval_loader.num_eval_batches(), desc="eval", unit="batch", leave=False,
                    disable=info.rank != 0, dynamic_ncols=True)
    with torch.inference_mode():
        for set_name, batch, effective_size in progress:
            batch = to_device(batch, info.device)
            if test_time is None:
                metrics, outputs = run_to_halt(model, batch, return_keys, halt_on_q)
            else:
                metrics, outputs = test_time.run_batch(model, batch, return_keys, halt_on_q)
            set_sums = sums.setdefault(set_name, {})
            for k, v in metrics.items():
                set_sums[k] = set_sums.get(k, 0) + v.to(torch.float64)

            # The last global batch is padded; keep only this rank's real rows.
            real_rows = min(max(effective_size - info.rank * local_batch, 0), local_batch)
            real_batch = {k: v[:real_rows] for k, v in batch.items()}
            real_outputs = {k: v[:real_rows] for k, v in outputs.items()}
            if checked is not None:
                valid = checked.check(real_batch["inputs"].cpu().numpy(), real_outputs["preds"].cpu().numpy())
                metric = checked.check_metric
                set_sums[metric] = set_sums.get(metric, 0) + float(valid.sum())
            dataset_index, _ = eval_loader.source_of(set_name)
            for bound in evaluators:
                if bound.dataset_index == dataset_index:
                    own = {**real_batch,
                           "puzzle_identifiers": real_batch["puzzle_identifiers"] - bound.identifier_offset}
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


def unused_output_prefix(prefix: str, info: DistInfo) -> str:
    """`prefix`, or `<prefix>_eval<k>` for the first k that names no file yet: an evaluation of a checkpoint never
    replaces outputs it did not write (the training's own step_<N>_all_preds.<rank>, an earlier evaluation's).
    Rank 0 chooses; every rank gets its choice."""
    def choose() -> str:
        folder, name = os.path.split(os.path.abspath(prefix))
        existing = os.listdir(folder) if os.path.isdir(folder) else []
        taken = lambda stem: any(entry.startswith(stem + "_") for entry in existing)  # noqa: E731
        stem = next(candidate for candidate in itertools.chain([name], (f"{name}_eval{k}" for k in itertools.count(1)))
                    if not taken(candidate))
        return os.path.join(os.path.dirname(prefix), stem)

    return on_rank_zero(info, choose)


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
