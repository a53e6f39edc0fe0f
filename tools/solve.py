"""Solve one puzzle with a trained checkpoint and check the answer.

    python -m tools.solve checkpoint=runs/a/step_5000 puzzle=53..7....6..195....98....6.8...6...34..8.3..17...
    python -m tools.solve checkpoint=runs/a/step_5000 puzzle_file=sudoku.txt test_time.augmentations=8
    python -m tools.solve checkpoint=runs/maze/step_5000 puzzle_file=maze.txt          # 30 lines over "# SGo"
    python -m tools.solve checkpoint=runs/arc/step_5000 puzzle_file=00576224.json       # an ARC task file

Keys are key=value, as for evaluate.py (`--help` lists them). The puzzle's text forms (a Sudoku string of N*N
cells with '.' or '0' for blanks, or a pretty grid; a maze's lines over "# SGo"; an ARC task JSON) are read by
the task's codec (tasks/<task>/codec.py), which also prints the answer and its checks. The task is the one the
run's dataset names (task= for a dataset built elsewhere that names none; without the dataset, the task the puzzle's
text form is). The run is rebuilt from the all_config.yaml beside the checkpoint; without the run's dataset
folder, the sizes come from the checkpoint. The model runs in evaluation mode for all its ACT segments, like
evaluate.py, with the same `test_time` block (for ARC, test_time.augmentations counts the task's augmented puzzles
in the run's identifiers.json, each with its learned embedding). The answer is printed in the form of the input,
followed by checks: Sudoku rules, maze path connectivity and length, ARC grid shape (and the expected output when
the task file has one). Bad input: one line `error: ...`, exit status 2.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import pydantic
import torch

from dataset.common import IGNORE_LABEL_ID, PuzzleDatasetMetadata
from models.registry import model_class
from tasks import codec_class, dataset_codec, text_codec
from tasks.base import Prediction, SolveRequest, TaskCodec, TaskError
from training.config import PretrainConfig, TestTimeConfig, check_task_name
from training.distributed import init_distributed
from training.inference import run_to_halt
from training.restore import TrainedRun, load_trained
from training.test_time import TestTimeCompute, build_test_time
from utils.cli import parse_overrides, run_command
from utils.errors import UserError

# Older command lines gave the test-time keys without their block (augmentations=8); they still work.
FLAT_TEST_TIME_KEYS = tuple(TestTimeConfig.model_fields)


class SolveError(UserError, ValueError):
    """A request the loaded model cannot answer; reported as one line."""


class SolveConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    checkpoint: str = pydantic.Field(description="a step_<N> model file with the run's all_config.yaml beside it, "
                                                 "or hf://OWNER/REPO/FILE")
    puzzle: Optional[str] = pydantic.Field(None, description="the puzzle as one string (Sudoku: N*N cells, '.' or "
                                                             "'0' blank; maze: the grid's characters)")
    puzzle_file: Optional[str] = pydantic.Field(None, description="a file holding it (Sudoku: a string or a pretty "
                                                                  "grid; maze: a text grid; ARC: a task JSON)")
    task: Optional[str] = pydantic.Field(None, description="the task of a run whose dataset names none (built "
                                                           "elsewhere) or is not here: sudoku, maze, arc")
    data_path: Optional[str] = pydantic.Field(None, description="dataset folder for the metadata; default: the run's")
    device: str = pydantic.Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    box: Optional[str] = pydantic.Field(None, description="Sudoku box shape RxC, e.g. 2x3; default: the squarest")
    name: Optional[str] = pydantic.Field(None, description="ARC: the task name in the run's identifiers.json; "
                                                           "default: the file name")
    test_time: TestTimeConfig = pydantic.Field(TestTimeConfig(), description="test-time compute, as evaluate.py's")
    seed: int = pydantic.Field(0, description="seed of the test-time augmentations and noise")

    _known_task = pydantic.field_validator("task")(check_task_name)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _flat_test_time_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in FLAT_TEST_TIME_KEYS):
            data = dict(data)
            block = dict(data.get("test_time") or {})
            block.update({k: data.pop(k) for k in FLAT_TEST_TIME_KEYS if k in data})
            data["test_time"] = block
        return data

    @pydantic.model_validator(mode="after")
    def _one_source(self):
        if (self.puzzle is None) == (self.puzzle_file is None):
            raise ValueError("give exactly one of puzzle=... or puzzle_file=...")
        return self


# ---------------------------------------------------------------------------------------------------------------
# Model


@dataclass
class LoadedModel:
    run: TrainedRun
    device: torch.device
    identifiers: Optional[List[str]] = None  # the dataset's identifiers.json, when there
    notes: List[str] = field(default_factory=list)

    @property
    def vocab_size(self) -> int:
        return self.run.metadata.vocab_size

    @property
    def seq_len(self) -> int:
        return self.run.metadata.seq_len

    @property
    def blank_identifier(self) -> int:
        return self.run.metadata.blank_identifier_id

    @property
    def max_segments(self) -> int:
        return self.run.model.model_config.max_segments


def _metadata_from_checkpoint(state: Dict[str, torch.Tensor], seq_len: Optional[int]) -> PuzzleDatasetMetadata:
    """Dataset metadata rebuilt from the weights' shapes (when the run's dataset folder is not here)."""
    vocab = state.get("model.inner.embed_tokens.embedding_weight")
    if vocab is None:
        raise SolveError("cannot read the vocabulary size from the checkpoint; pass data_path=<dataset folder>")
    puzzle_emb = state.get("model.inner.puzzle_emb.weights")
    if seq_len is None:
        raise SolveError("the run's dataset is not here; pass data_path=<dataset folder> or task=<its task>")
    return PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab.shape[0],
                                 seq_len=seq_len, num_puzzle_identifiers=puzzle_emb.shape[0] if puzzle_emb is not None
                                 else 1, total_groups=1, mean_puzzle_examples=1.0, sets=["all"])


def _prefix_len(run: PretrainConfig, state: Dict[str, torch.Tensor]) -> int:
    """Positions the model prepends for the puzzle embedding, from the run's arch config and the weights."""
    emb = state.get("model.inner.puzzle_emb.weights")
    ndim = emb.shape[1] if emb is not None else 0
    hidden = state["model.inner.embed_tokens.embedding_weight"].shape[1]
    declared = model_class(run.arch.name).config_class.model_fields.get("puzzle_emb_len")
    length = run.arch.extra.get("puzzle_emb_len", declared.default if declared else 0) if ndim else 0
    return length if length > 0 else -(-ndim // hidden)


def load_model(config: SolveConfig, seq_len_hint=None) -> LoadedModel:
    """The run rebuilt as evaluate.py rebuilds it (training/restore.py); without its dataset, the sizes come from
    the checkpoint's shapes."""
    info = init_distributed(config.device)
    notes = []

    def from_weights(run: PretrainConfig, weights: Dict[str, torch.Tensor]) -> PuzzleDatasetMetadata:
        metadata = _metadata_from_checkpoint(weights, seq_len_hint(weights, _prefix_len(run, weights))
                                             if seq_len_hint else None)
        notes.append(f"dataset {', '.join(run.train_data_paths)} not found: sizes taken from the checkpoint (vocab "
                     f"{metadata.vocab_size}, seq_len {metadata.seq_len})")
        return metadata

    run = load_trained(config.checkpoint, info, data_path=config.data_path, when_data_missing=from_weights,
                       device=config.device, compile=False, global_batch_size=1)
    identifiers = None
    names_path = os.path.join(run.config.train_data_paths[0], "identifiers.json")
    if not notes and os.path.isfile(names_path):
        with open(names_path, encoding="utf-8") as f:
            identifiers = json.load(f)
    return LoadedModel(run=run, device=info.device, identifiers=identifiers, notes=notes)


@torch.inference_mode()
def predict(loaded: LoadedModel, inputs: np.ndarray, puzzle_identifiers: Sequence[int],
            test_time: Optional[TestTimeCompute] = None) -> Prediction:
    """Run every ACT segment on a batch of token rows, as evaluation does (with `test_time`, a
    training.test_time.TestTimeCompute: each row's variants, and the selected answer)."""
    device = loaded.device
    inputs_t = torch.as_tensor(np.asarray(inputs), dtype=torch.int32, device=device)
    batch = {
        "inputs": inputs_t,
        "labels": torch.full_like(inputs_t, IGNORE_LABEL_ID),  # unknown: the loss ignores them
        "puzzle_identifiers": torch.as_tensor(list(puzzle_identifiers), dtype=torch.int32, device=device),
    }
    keys = ["preds", "q_halt_logits"]
    if test_time is None:
        _, outputs = run_to_halt(loaded.run.model, batch, keys)
        candidates = np.ones(len(inputs), dtype=np.int64)
    else:
        _, outputs = test_time.run_batch(loaded.run.model, batch, keys)
        candidates = outputs["candidates"].cpu().numpy()
    return Prediction(outputs["preds"].cpu().numpy().astype(np.int64), outputs["q_halt_logits"].float().cpu().numpy(),
                      candidates, test_time.variants if test_time is not None else 1)


def _test_time(config: SolveConfig, loaded: LoadedModel, augmentations: int, codec: TaskCodec
               ) -> Optional[TestTimeCompute]:
    """The solve's test-time compute (None when plain), for the loaded model's task, with `augmentations`."""
    settings = config.test_time.model_copy(update={"augmentations": augmentations})
    if settings.plain:
        return None
    metadata = loaded.run.metadata.model_copy(update={"num_puzzle_identifiers": 1, "sets": ["all"]})
    return build_test_time(settings, metadata, codec, config.seed, "the model's task")


# ---------------------------------------------------------------------------------------------------------------
# The command


def _read_puzzle(config: SolveConfig) -> Tuple[str, Optional[str]]:
    """(text, file name) of the puzzle."""
    if config.puzzle is not None:
        return config.puzzle, None
    path = config.puzzle_file
    if not os.path.isfile(path):
        raise SolveError(f"puzzle file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except UnicodeDecodeError:
        raise SolveError(f"puzzle file {path} is not a UTF-8 text file") from None
    except OSError as err:
        raise SolveError(f"cannot read puzzle file {path}: {err.strerror}") from None


def _text_task(config: SolveConfig, text: str, file_name: Optional[str]) -> Optional[Type[TaskCodec]]:
    """The task the puzzle's text form is (task= when given), None when it cannot be told."""
    if config.task is not None:
        return codec_class(config.task)
    try:
        return text_codec(text, file_name)
    except TaskError:
        return None


def _seq_len_for(text_task: Optional[Type[TaskCodec]], text: str):
    """A function of the checkpoint's weights (and the model's prefix length) giving seq_len, for runs whose
    dataset is not here."""
    def hint(state: Dict[str, torch.Tensor], prefix: int) -> Optional[int]:
        # Learned positions and mlp_t's token mixer span the puzzle-embedding prefix and the sequence.
        spans = [v.shape[0] for k, v in state.items()
                 if k == "model.inner.embed_pos.embedding_weight" or k.endswith("mlp_t.down_proj.weight")]
        if spans:
            return spans[0] - prefix
        return text_task.text_seq_len(text) if text_task is not None else None
    return hint


def _model_task(config: SolveConfig, loaded: LoadedModel, text_task: Optional[Type[TaskCodec]]) -> TaskCodec:
    """The codec of the model's task: its dataset's (task= for one that names none), or without the dataset the
    task of the puzzle's text (task= when given), sized from the checkpoint."""
    if loaded.run.sources:
        codec = dataset_codec([source.metadata for source in loaded.run.sources], config.task,
                              ", ".join(loaded.run.config.train_data_paths), needed_for="the solve CLI")
        if codec is None:
            raise SolveError(f"cannot tell the task of the run's dataset (vocab_size {loaded.vocab_size}, seq_len "
                             f"{loaded.seq_len}); pass task=<its task>")
        return codec
    if text_task is None:
        raise SolveError("cannot tell the task of the puzzle, and the run's dataset is not here; pass task=<its task>")
    return text_task.from_metadata(loaded.run.metadata)


def solve(config: SolveConfig, out=None) -> bool:
    """Solve, print (to `out`, default stdout), and return whether the answer is valid."""
    out = out if out is not None else sys.stdout
    text, file_name = _read_puzzle(config)
    text_task = _text_task(config, text, file_name)
    loaded = load_model(config, seq_len_hint=_seq_len_for(text_task, text))
    codec = _model_task(config, loaded, text_task)
    if config.task is None and text_task is not None and text_task.name != codec.name:
        given = f"{file_name} looks like" if file_name else "the puzzle looks like"
        raise SolveError(f"{given} a {text_task.title}, but {config.checkpoint} is a {codec.title} model "
                         f"(vocab_size {loaded.vocab_size}, seq_len {loaded.seq_len}): give a {codec.title}, or the "
                         f"checkpoint of a {text_task.title} model")

    def say(line: str = "") -> None:
        print(line, file=out)

    for note in loaded.notes:
        say(f"note: {note}")
    say(f"task: {codec.name}  checkpoint: {config.checkpoint}  device: {loaded.device}")
    request = SolveRequest(
        text=text, file_name=file_name, vocab_size=loaded.vocab_size, seq_len=loaded.seq_len,
        predict=lambda inputs, identifiers, augmentations, task_codec: predict(
            loaded, inputs, identifiers, _test_time(config, loaded, augmentations, task_codec)),
        identifiers=loaded.identifiers, blank_identifier=loaded.blank_identifier,
        segments=config.test_time.segments or loaded.max_segments, augmentations=config.test_time.augmentations,
        select=config.test_time.ranking, options={"box": config.box, "name": config.name}, say=say)
    return codec.solve_text(request)


def main(argv: Sequence[str]) -> int:
    """The command: solve and print; the exit status (0, or 2 on bad input)."""
    return run_command(lambda args: solve(parse_overrides(SolveConfig, args, __doc__)), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
