"""Checkpoint files: their names, atomic writes, safe reads, discovery of the newest intact one, pruning.

A checkpoint is a set of files in the run folder:
  step_<N>          the model state dict, exactly like the original HRM (published checkpoints and ours are
                    interchangeable; with EMA on, the averaged weights)
  step_<N>.state    what every rank shares and needs to continue bit for bit (raw weights under EMA, optimizers,
                    data position, config, code version)
  step_<N>.rank<r>  what rank r alone has (ACT carry, RNG states, metric sums not yet logged)
Writes go to a temporary name, are fsynced and renamed, so a kill at any moment leaves earlier checkpoints
intact and never a torn file under a checkpoint's name.
"""
import errno
import os
import re
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from utils import hub
from utils.errors import UserError

COMPILED_PREFIX = "_orig_mod."  # torch.compile'd modules prefix their state-dict keys with this
PUZZLE_EMB_KEY_SUFFIX = "puzzle_emb.weights"  # the sparse puzzle-embedding table (rows = puzzle identifiers)
# URM's trainer saves {"step", "model_state_dict", "optimizer_states", "rng_state", ...} in one file.
URM_MODEL_KEY, URM_OPTIMIZERS_KEY = "model_state_dict", "optimizer_states"
TRAIN_STATE_SUFFIX = ".state"
RANK_SHARD_SUFFIX = ".rank"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model being built."""


def atomic_torch_save(obj, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp_path, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as err:  # a full disk, Ctrl-C: no half-written file stays behind, under any name
        # torch's writer reports a failed write as a RuntimeError without the reason: a disk with no space left
        # (looked at before the partial file is removed) is the usual one.
        full = isinstance(err, (OSError, RuntimeError)) and _no_space_left(directory)
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if full:
            raise CheckpointError(f"cannot write {path}: no space left on device") from None
        if isinstance(err, OSError):
            raise CheckpointError(f"cannot write {path}: {describe_os_error(err)}") from None
        raise
    # fsync the directory so the rename itself survives a power cut.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _no_space_left(directory: str) -> bool:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize < 64 * 1024


def describe_os_error(err: OSError) -> str:
    """What went wrong with a write, in words (a full disk is the usual one)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if err.errno == errno.EFBIG:
        return "file too large (a file-size limit of the filesystem or the process)"
    return err.strerror or type(err).__name__


def load_torch_file(path: str, mmap: bool = False):
    """torch.load a file of tensors and plain containers; a missing or damaged file is a CheckpointError. With
    `mmap` the tensors are mapped from the file, read when used."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        # weights_only: a checkpoint holds tensors and plain containers, never code to unpickle
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds (KeyError for a text file, RuntimeError...)
        # for a truncated, corrupted or foreign file; every one of them means the same to the user
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"checkpoint file {path} is unreadable ({type(err).__name__}: {first_line}); "
                              f"it may be truncated or corrupted") from None


def load_model_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Load a model state dict (ours, a published one, or the model part of URM's trainer checkpoints), without
    any `_orig_mod.` prefix. `path` is a file or an hf://OWNER/REPO/FILE reference, downloaded into the hub cache
    first."""
    state = load_torch_file(hub.resolve(path))
    if isinstance(state, dict) and URM_MODEL_KEY in state:
        state = state[URM_MODEL_KEY]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint file {path} does not hold a model state dict")
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()}


def load_trainer_optimizer_states(path: str) -> Optional[List[dict]]:
    """The optimizer states a URM trainer checkpoint holds beside its model (None for a model file)."""
    state = load_torch_file(hub.resolve(path), mmap=True)
    return state.get(URM_OPTIMIZERS_KEY) if isinstance(state, dict) and URM_MODEL_KEY in state else None


def load_weights(model: nn.Module, state: Dict[str, torch.Tensor], path: str,
                 resize_puzzle_emb: bool = False, strict: bool = True) -> None:
    """Copy `state` into `model`, with one clear message for missing/unexpected keys or shape mismatches (with
    `strict` false, those keys are listed in a note and skipped). Values take the model's dtypes (e.g. URM's
    bfloat16 convolution weights).

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
    if (missing or unexpected) and strict:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing keys {missing[:5]}, "
                              f"unexpected keys {unexpected[:5]} (is arch.name the one it was trained with?)")
    if missing or unexpected:
        print(f"note: load_strict=false: {path} lacks {len(missing)} key(s) of the model {missing[:5]} (they keep "
              f"their initial values) and has {len(unexpected)} it does not use {unexpected[:5]}")
        state = {k: v for k, v in state.items() if k in own}
    for key, value in state.items():
        if value.shape != own[key].shape:
            why = ("mlp_t mixes the seq_len + puzzle_emb_len positions, so its weights fit only the sequence "
                   "length they were trained on" if ".mlp_t." in key else
                   "the dataset (vocab_size, seq_len, puzzle identifiers) or arch settings differ from the "
                   "checkpoint's")
            raise CheckpointError(f"checkpoint {path} has {key} of shape {tuple(value.shape)} but this run builds "
                                  f"{tuple(own[key].shape)}: {why}")
    model.load_state_dict(state, strict=strict)


# -------------------------------------------------------------------------------------------------------------
# Full training state
#
# A full checkpoint is step_<N> (above) plus step_<N>.state, what all ranks share (optimizers, loader position,
# raw weights under EMA, config), written by rank 0, and step_<N>.rank<r>, what rank r alone has (ACT carry, RNG
# states, metric sums not yet logged), written by rank r itself. It counts as intact only when every one of its
# files loads: a kill while any rank is writing leaves the previous checkpoint the newest intact one.


def checkpoint_path(folder: str, step: int) -> str:
    return os.path.join(folder, f"step_{step}")


def rank_shard_path(model_path: str, rank: int) -> str:
    return f"{model_path}{RANK_SHARD_SUFFIX}{rank}"


def list_checkpoints(folder: str) -> List[Tuple[int, str]]:
    """(step, model file path) of every step_<N> checkpoint in `folder`, newest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := _CHECKPOINT_NAME.match(name))]
    return sorted(found, reverse=True)


def load_train_state(model_path: str) -> dict:
    state = load_torch_file(model_path + TRAIN_STATE_SUFFIX)
    if not isinstance(state, dict) or not ("schedule" in state or "step" in state):  # this layout, or the first
        raise CheckpointError(f"checkpoint file {model_path + TRAIN_STATE_SUFFIX} does not hold a training state")
    return state


def load_rank_states(model_path: str, saved: dict) -> List[dict]:
    """Every rank's part of a checkpoint (memory-mapped: a rank reads only the tensors it uses)."""
    return [load_torch_file(rank_shard_path(model_path, r), mmap=True) for r in range(saved["world_size"])]


def load_checkpoint(model_path: str) -> Tuple[Dict[str, torch.Tensor], dict, List[dict]]:
    """(model state dict, shared training state, per-rank states) of a full checkpoint; CheckpointError if any
    of its files is missing or damaged."""
    saved = load_train_state(model_path)
    return load_model_state_dict(model_path), saved, load_rank_states(model_path, saved)


def find_latest_intact(folder: str) -> Tuple[str, Dict[str, torch.Tensor], dict, List[dict]]:
    """The newest full checkpoint in `folder` whose files all load (see `load_checkpoint`). Model files whose
    training state was pruned are passed over; damaged checkpoints are reported and skipped."""
    for _step, path in list_checkpoints(folder):
        if not os.path.exists(path + TRAIN_STATE_SUFFIX):
            continue  # a model-only checkpoint (published format, or its state pruned)
        try:
            return (path, *load_checkpoint(path))
        except CheckpointError as err:
            warnings.warn(f"skipping checkpoint: {err}", stacklevel=2)
    raise CheckpointError(f"no intact checkpoint (step_<N> with its {TRAIN_STATE_SUFFIX} and "
                          f"{RANK_SHARD_SUFFIX}<r> files) in {folder}")


def _training_state_files(model_path: str) -> List[str]:
    folder, name = os.path.split(model_path)
    shard = re.compile(re.escape(name + RANK_SHARD_SUFFIX) + r"\d+$")
    shards = [os.path.join(folder, f) for f in os.listdir(folder) if shard.match(f)]
    return [model_path + TRAIN_STATE_SUFFIX] + sorted(shards)  # state first: without it, nothing is resumable


def prune_checkpoints(folder: str, keep_last: Optional[int], keep_states: int) -> None:
    """Keep the training state (.state, .rank<r>) of the newest `keep_states` full checkpoints only, and delete
    all but the newest `keep_last` checkpoints entirely (None: keep every model file). Saved outputs stay."""
    with_state = [path for _, path in list_checkpoints(folder) if os.path.exists(path + TRAIN_STATE_SUFFIX)]
    doomed = set(with_state[keep_states:])
    if keep_last is not None:
        doomed.update(path for _, path in list_checkpoints(folder)[keep_last:])
    for path in doomed:
        for name in _training_state_files(path):
            if os.path.exists(name):
                os.remove(name)
    if keep_last is not None:
        for _, path in list_checkpoints(folder)[keep_last:]:
            os.remove(path)


def cpu_copy(obj: Any) -> Any:
    """A copy of nested containers with every tensor copied to the CPU: a snapshot that later training steps
    cannot change while it is being written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def intact_note(failed_file: str) -> str:
    """After a failed write of a file of checkpoint step_<N>: which complete checkpoint is left in its folder."""
    folder, name = os.path.split(failed_file)
    failed = os.path.join(folder, name.split(".")[0])  # step_<N>, of step_<N>.state or step_<N>.rank<r>
    for _, path in list_checkpoints(folder):
        if path != failed and os.path.exists(path + TRAIN_STATE_SUFFIX):
            return f"the newest complete checkpoint, {path}, is intact (resume=latest continues from it)"
    return "no earlier checkpoint of this run exists"


class CheckpointWriter:
    """Writes checkpoint files atomically, in the background (a thread) or inline.

    One write is in flight at a time: `submit` first waits for the previous one. A failed write is raised as a
    CheckpointError by the next `submit` or `wait`; call `wait` before the process ends.
    """

    def __init__(self, background: bool):
        self.background = background
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._failed = ""  # a file of the checkpoint whose write failed

    def submit(self, files: Sequence[Tuple[Any, str]], then: Optional[Callable[[], None]] = None) -> None:
        """Write `files` ([(object, path)], in order), then call `then` (e.g. pruning)."""
        self.wait()
        if not self.background:
            self._write(files, then)
            self.wait()
            return
        self._thread = threading.Thread(target=self._write, args=(files, then), name="checkpoint-writer")
        self._thread.start()

    def _write(self, files: Sequence[Tuple[Any, str]], then: Optional[Callable[[], None]]) -> None:
        written = []
        try:
            for obj, path in files:
                atomic_torch_save(obj, path)
                written.append(path)
            if then is not None:
                then()
        except Exception as err:  # noqa: BLE001 - re-raised in the training thread by wait()
            for path in written:  # an incomplete checkpoint is not left looking like one
                os.remove(path)
            self._error, self._failed = err, files[0][1]

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            what = str(err) if isinstance(err, CheckpointError) else f"{type(err).__name__}: {err}"
            raise CheckpointError(f"writing a checkpoint failed ({what}); {intact_note(self._failed)}") from err
