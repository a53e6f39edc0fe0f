"""Turn the trainer's saved outputs (`step_<N>_all_preds.<rank>`, torch.save'd dicts of tensors) into one .npz
(or a .npy of the predictions) that the visualizer page (tools/visualizer.html) can read.

    python -m tools.export_predictions runs/a/step_5000_all_preds.0 output=preds.npz
    python -m tools.export_predictions runs/a/step_5000_all_preds.{0,1,2,3} output=preds.npz   # torchrun ranks
    python -m tools.export_predictions runs/a/step_5000_all_preds.0 output=preds.npy            # preds only

(The flags of earlier versions, `--output preds.npz`, `--data-path`, `--global-batch-size`, `--keys`, still work.)

Rows come out in the order of the dataset's test split (its sets in dataset.json order, examples in file order),
so row k is the k-th test example. With several ranks each file holds that rank's slice of every global
evaluation batch; putting them back in order needs the evaluation's global batch size (the run's, made smaller as
evaluation makes it for test-time compute's variants) and the test split's set sizes, read from the run's
all_config.yaml beside the files and its dataset (override with global_batch_size= and data_path=; outputs of
evaluate.py with test-time settings of its own need the global_batch_size= of that evaluation). Given only
`..._all_preds.0`, the other ranks' files beside it are picked up too.

Integer arrays are stored in the smallest of uint8/int32 that holds them, floats as float32; `logits` are left
out unless listed in keys= (they are large). When the outputs include `inputs` and the dataset is at hand, the
reassembled inputs are checked against the dataset's.
"""
from __future__ import annotations

import glob
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pydantic
import torch

from dataset.puzzle_dataset import eval_batches, load_metadata
from training.checkpoint_files import CheckpointError, load_torch_file
from training.config import PretrainConfig, eval_batch_size
from training.run_config import run_config_beside
from utils.cli import parse_overrides, run_command
from utils.errors import UserError

_RANK_SUFFIX = re.compile(r"^(.*_all_preds)\.(\d+)$")


class ExportError(UserError, ValueError):
    """Bad input files or settings; reported as one line."""


def _load(path: str) -> Dict[str, np.ndarray]:
    try:
        data = load_torch_file(path)
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ExportError(f"{path} does not hold a dict of tensors (expected a step_<N>_all_preds.<rank> file)")
    return {k: v.numpy() if v.dtype != torch.bfloat16 else v.float().numpy() for k, v in data.items()}


def rank_files(paths: Sequence[str]) -> List[str]:
    """The files in rank order; a lone `..._all_preds.0` brings its sibling ranks along."""
    if len(paths) == 1:
        match = _RANK_SUFFIX.match(paths[0])
        if match and match.group(2) == "0":
            siblings = glob.glob(glob.escape(match.group(1)) + ".*")
            ranks = sorted(int(m.group(2)) for p in siblings if (m := _RANK_SUFFIX.match(p)) and m.group(1) ==
                           match.group(1))
            if ranks != list(range(len(ranks))):
                raise ExportError(f"rank files beside {paths[0]} are not numbered 0..N-1: {ranks}")
            return [f"{match.group(1)}.{r}" for r in ranks]
    ranked = []
    for path in paths:
        match = _RANK_SUFFIX.match(path)
        ranked.append((int(match.group(2)) if match else 0, path))
    ranks = [r for r, _ in ranked]
    if len(paths) > 1 and sorted(ranks) != list(range(len(paths))):
        raise ExportError(f"give the files of ranks 0..{len(paths) - 1} (got ranks {sorted(ranks)})")
    return [p for _, p in sorted(ranked)]


def test_split_sizes(data_path: str) -> Dict[str, int]:
    """Examples per set of the test split, in dataset.json order."""

    metadata = load_metadata(data_path, "test")
    sizes = {}
    for set_name in metadata.sets:
        path = os.path.join(data_path, "test", f"{set_name}__inputs.npy")
        if not os.path.isfile(path):
            raise ExportError(f"{path} does not exist")
        sizes[set_name] = int(np.load(path, mmap_mode="r").shape[0])
    return sizes


def rank_row_order(set_sizes: Sequence[int], global_batch_size: int, world_size: int) -> List[np.ndarray]:
    """For each rank, the test-split example index of each row it saved: the evaluation loader's batches
    (dataset/puzzle_dataset.py eval_batches), set after set."""
    order: List[List[np.ndarray]] = [[] for _ in range(world_size)]
    offset = 0
    for size in set_sizes:
        for rank in range(world_size):
            order[rank] += [offset + examples for examples, _ in eval_batches(size, global_batch_size, rank,
                                                                               world_size)]
        offset += size
    return [np.concatenate(o) if o else np.zeros(0, dtype=np.int64) for o in order]


def _compact(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size == 0 or (array.min() >= 0 and array.max() <= 255):
            return array.astype(np.uint8)
        if array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max:
            return array.astype(np.int32)
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    return array


def _test_folder(config: PretrainConfig) -> str:
    """The dataset folder a run evaluated on (data_path, or TRM's data_paths / data_paths_test)."""
    folders = config.test_data_paths
    if len(folders) > 1:
        raise ExportError(f"the run evaluated on several datasets ({', '.join(folders)}), whose rows its saved "
                          f"outputs interleave; evaluate one with `evaluate.py checkpoint=... data_path=<folder> "
                          f"save_outputs=[...]` and export that")
    return folders[0]


def export(paths: Sequence[str], output: str, data_path: Optional[str] = None,
           global_batch_size: Optional[int] = None, keys: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ExportError(f"{missing[0]} does not exist (expected a step_<N>_all_preds.<rank> file)")
    files = rank_files(paths)
    parts = [_load(p) for p in files]
    available = sorted(set.intersection(*(set(p) for p in parts)))
    if keys is None:
        keys = [k for k in available if k != "logits"]
    missing = sorted(set(keys) - set(available))
    if missing:
        raise ExportError(f"{files[0]} has no {missing} (it holds {available}); save them with "
                          f"eval_save_outputs=[...] or evaluate.py save_outputs=[...]")
    if output.endswith(".npy"):
        if "preds" not in available:
            raise ExportError(f"a .npy output holds the predictions, but {files[0]} has no 'preds' "
                              f"(it holds {available})")
        keys = ["preds"]
    elif not output.endswith(".npz"):
        raise ExportError(f"output= must end with .npz (all outputs) or .npy (predictions only): {output}")
    if not keys:
        raise ExportError(f"nothing to export from {files[0]} (it holds {available})")

    config = run_config_beside(files[0], len(parts))
    data_path = data_path or (_test_folder(config) if config is not None else None)
    sizes = None
    if data_path and os.path.isdir(os.path.join(data_path, "test")):
        sizes = test_split_sizes(data_path)
    rows = [len(p[keys[0]]) for p in parts]

    if len(parts) == 1:
        arrays = {k: parts[0][k] for k in keys}
    else:
        if global_batch_size is None and config is not None:
            # Evaluation's batch: with test-time compute, fewer puzzles than the training batch (training/config.py).
            global_batch_size = eval_batch_size(config.global_batch_size, config.test_time.variants, len(parts))
        if global_batch_size is None or sizes is None:
            raise ExportError("putting several ranks' outputs in order needs the evaluation's global batch size and "
                              "the test split's sizes: pass global_batch_size= and data_path= (or keep the run's "
                              "all_config.yaml beside the files)")
        order = rank_row_order(list(sizes.values()), global_batch_size, len(parts))
        if [len(o) for o in order] != rows:
            raise ExportError(f"the ranks hold {rows} rows, but a global batch of {global_batch_size} over "
                              f"{len(parts)} ranks gives {[len(o) for o in order]}: pass the global_batch_size= "
                              f"the outputs were saved with (evaluate.py with test_time: its evaluation batch)")
        arrays = {}
        for k in keys:
            first = parts[0][k]
            out = np.zeros((sum(rows),) + first.shape[1:], dtype=first.dtype)
            for part, index in zip(parts, order):
                if len(index):
                    out[index] = part[k]
            arrays[k] = out

    total = sum(rows)
    if sizes is not None:
        if total != sum(sizes.values()):
            print(f"warning: {total} saved rows but the test split of {data_path} has {sum(sizes.values())} "
                  f"examples; rows are kept in saved order", file=sys.stderr)
        elif "inputs" in arrays:
            expected = np.concatenate([np.load(os.path.join(data_path, "test", f"{s}__inputs.npy"))
                                       for s in sizes])
            if not np.array_equal(arrays["inputs"].astype(np.int64), expected.astype(np.int64)):
                raise ExportError(f"the reassembled inputs differ from the test split of {data_path}: wrong "
                                  f"dataset or global_batch_size=")
            print(f"checked: inputs match the test split of {data_path}")

    arrays = {k: _compact(v) for k, v in arrays.items()}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if output.endswith(".npy"):
        np.save(output, arrays["preds"])
    else:
        np.savez(output, **arrays)  # stored, not compressed: the page reads rows without loading everything
    print(f"wrote {output}: {total} rows from {len(files)} rank file(s); "
          + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in arrays.items()))
    return arrays


class ExportConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    files: List[str] = pydantic.Field(description="step_<N>_all_preds.<rank> files, one per rank (the first "
                                                  "argument(s); .0 alone brings its sibling ranks)")
    output: str = pydantic.Field(description="preds.npz (all outputs) or preds.npy (the predictions only)")
    data_path: Optional[str] = pydantic.Field(None, description="dataset folder; default: the run's, from "
                                                                "all_config.yaml")
    global_batch_size: Optional[int] = pydantic.Field(None, gt=0, description="evaluation global batch; default: "
                                                                              "the run's evaluation batch (needed "
                                                                              "for several ranks)")
    keys: Optional[str] = pydantic.Field(None, description="comma-separated outputs to keep; default: all but logits")


def main(argv: Optional[Sequence[str]] = None) -> int:
    def run(args: List[str]) -> None:
        config = parse_overrides(ExportConfig, args, __doc__, positional="files", aliases={"o": "output"})
        keys = [k for k in config.keys.split(",") if k] if config.keys else None
        export(config.files, config.output, config.data_path, config.global_batch_size, keys)
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
