"""Reading and writing checkpoint files safely.

A checkpoint is a pair of files in the run folder:
  step_<N>        the model state dict, exactly like the original HRM (published checkpoints and ours are
                  interchangeable; with EMA on, the averaged weights)
  step_<N>.state  everything else needed to continue bit for bit (raw weights, optimizers, RNGs, data position,
                  ACT carry, EMA, config, code version)
Writes go to a temporary name, are fsynced and renamed, so a kill at any moment leaves earlier checkpoints
intact and never a torn file under a checkpoint's name.
"""
import dataclasses
import importlib
import os
import pickle
import re
import warnings
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

COMPILED_PREFIX = "_orig_mod."  # torch.compile'd modules prefix their state-dict keys with this
PUZZLE_EMB_KEY_SUFFIX = "puzzle_emb.weights"  # the sparse puzzle-embedding table (rows = puzzle identifiers)
TRAIN_STATE_SUFFIX = ".state"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model being built."""


def atomic_torch_save(obj, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f"{path}.tmp-{os.getpid()}"
    with open(tmp_path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    # fsync the directory so the rename itself survives a power cut.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_torch_file(path: str):
    """torch.load a file of tensors and plain containers; a missing or damaged file is a CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        # weights_only: a checkpoint holds tensors and plain containers, never code to unpickle
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        # torch raises any of these for a truncated or corrupted file
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"checkpoint file {path} is unreadable ({type(err).__name__}: {first_line}); "
                              f"it may be truncated or corrupted") from None


def load_model_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Load a model state dict (ours or a published one), without any `_orig_mod.` prefix."""
    state = load_torch_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint file {path} does not hold a model state dict")
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()}


def load_weights(model: nn.Module, state: Dict[str, torch.Tensor], path: str,
                 resize_puzzle_emb: bool = False) -> None:
    """Copy `state` into `model`, with one clear message for missing/unexpected keys or shape mismatches.

    With `resize_puzzle_emb` (fine-tuning on new puzzles), a puzzle-embedding table with another number of rows
    is replaced by one whose every row is the mean of the loaded rows: a neutral start for unseen puzzles.
    """
    own = model.state_dict()
    state = dict(state)
    for key, value in state.items():
        if (resize_puzzle_emb and key.endswith(PUZZLE_EMB_KEY_SUFFIX) and key in own
                and value.ndim == 2 and value.shape[1] == own[key].shape[1] and value.shape[0] != own[key].shape[0]):
            print(f"note: {key} has {value.shape[0]} rows in {path} but this dataset has {own[key].shape[0]} "
                  f"puzzle identifiers; every row starts from the mean of the loaded rows")
            state[key] = value.mean(0, keepdim=True).expand_as(own[key]).clone()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing keys {missing[:5]}, "
                              f"unexpected keys {unexpected[:5]} (is arch.name the one it was trained with?)")
    for key, value in state.items():
        if value.shape != own[key].shape:
            why = ("mlp_t mixes the seq_len + puzzle_emb_len positions, so its weights fit only the sequence "
                   "length they were trained on" if ".mlp_t." in key else
                   "the dataset (vocab_size, seq_len, puzzle identifiers) or arch settings differ from the "
                   "checkpoint's")
            raise CheckpointError(f"checkpoint {path} has {key} of shape {tuple(value.shape)} but this run builds "
                                  f"{tuple(own[key].shape)}: {why}")
    model.load_state_dict(state)


# -------------------------------------------------------------------------------------------------------------
# Full training state


def checkpoint_path(folder: str, step: int) -> str:
    return os.path.join(folder, f"step_{step}")


def list_checkpoints(folder: str) -> List[Tuple[int, str]]:
    """(step, model file path) of every step_<N> checkpoint in `folder`, newest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := _CHECKPOINT_NAME.match(name))]
    return sorted(found, reverse=True)


def save_checkpoint(folder: str, step: int, model_state: Dict[str, torch.Tensor], train_state: dict) -> str:
    """Write step_<N>.state, then step_<N>: a model file without its state is never the newest intact pair."""
    path = checkpoint_path(folder, step)
    atomic_torch_save(train_state, path + TRAIN_STATE_SUFFIX)
    atomic_torch_save(model_state, path)
    return path


def load_train_state(model_path: str) -> dict:
    state = load_torch_file(model_path + TRAIN_STATE_SUFFIX)
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"checkpoint file {model_path + TRAIN_STATE_SUFFIX} does not hold a training state")
    return state


def load_checkpoint_pair(model_path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    return load_model_state_dict(model_path), load_train_state(model_path)


def find_latest_intact(folder: str) -> Tuple[str, Dict[str, torch.Tensor], dict]:
    """The newest checkpoint in `folder` whose two files both load; broken ones are reported and skipped."""
    for _step, path in list_checkpoints(folder):
        try:
            return (path, *load_checkpoint_pair(path))
        except CheckpointError as err:
            warnings.warn(f"skipping checkpoint: {err}", stacklevel=2)
    raise CheckpointError(f"no intact checkpoint (step_<N> with its {TRAIN_STATE_SUFFIX} file) in {folder}")


def prune_checkpoints(folder: str, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (saved outputs are kept)."""
    for _step, path in list_checkpoints(folder)[keep_last:]:
        for name in (path + TRAIN_STATE_SUFFIX, path):  # state first: a model file alone is never picked
            if os.path.exists(name):
                os.remove(name)


def to_plain(obj: Any) -> Any:
    """Dataclasses (e.g. the ACT carry) to nested dicts of CPU tensors that torch.load(weights_only=True) accepts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                **{f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    return obj


def from_plain(obj: Any, device: Optional[torch.device] = None) -> Any:
    """Inverse of `to_plain`, moving tensors to `device`."""
    if isinstance(obj, dict):
        fields = {k: from_plain(v, device) for k, v in obj.items() if k != "__dataclass__"}
        if "__dataclass__" in obj:
            module_name, qualname = obj["__dataclass__"].split(":")
            cls = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if not dataclasses.is_dataclass(cls):  # never call anything else named in a file
                raise CheckpointError(f"checkpoint names {obj['__dataclass__']}, which is not a dataclass")
            return cls(**fields)
        return fields
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v, device) for v in obj)
    if isinstance(obj, torch.Tensor) and device is not None:
        return obj.to(device)
    return obj
