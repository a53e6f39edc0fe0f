"""Reading and writing checkpoint files safely.

`step_<N>` files hold a model state dict, exactly like the original HRM (so published checkpoints and ours are
interchangeable). Writes go to a temporary name, are fsynced and renamed, so a crash never leaves a torn file
under a checkpoint's name.
"""
import os
import pickle
import zipfile
from typing import Dict

import torch
from torch import nn

COMPILED_PREFIX = "_orig_mod."  # torch.compile'd modules prefix their state-dict keys with this


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


def load_model_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Load a model state dict (ours or a published one), without any `_orig_mod.` prefix."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        # torch raises any of these for a truncated or corrupted file
        raise CheckpointError(f"checkpoint file {path} is unreadable ({type(err).__name__}: {err}); "
                              f"it may be truncated or corrupted") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint file {path} does not hold a model state dict")
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()}


def load_weights(model: nn.Module, state: Dict[str, torch.Tensor], path: str) -> None:
    """Copy `state` into `model`, with one clear message for missing/unexpected keys or shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing keys {missing[:5]}, "
                              f"unexpected keys {unexpected[:5]} (is arch.name the one it was trained with?)")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise CheckpointError(
                f"checkpoint {path} has {key} of shape {tuple(value.shape)} but this run builds "
                f"{tuple(own[key].shape)}: the dataset (vocab_size, seq_len, puzzle identifiers) or arch "
                f"settings differ from the checkpoint's")
    model.load_state_dict(state)
