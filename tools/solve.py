"""Solve one puzzle with a trained checkpoint and check the answer.

    python -m tools.solve checkpoint=runs/a/step_5000 puzzle=53..7....6..195....98....6.8...6...34..8.3..17...
    python -m tools.solve checkpoint=runs/a/step_5000 puzzle_file=sudoku.txt test_time.augmentations=8
    python -m tools.solve checkpoint=runs/maze/step_5000 puzzle_file=maze.txt          # 30 lines over "# SGo"
    python -m tools.solve checkpoint=runs/arc/step_5000 puzzle_file=00576224.json       # an ARC task file

Keys are key=value, as for evaluate.py (`--help` lists them). The puzzle's text forms (a Sudoku string of N*N
cells with '.' or '0' for blanks, or a pretty grid; a maze's lines over "# SGo"; an ARC task JSON) are read by
dataset/codecs.py. The run is rebuilt from the all_config.yaml beside the checkpoint; without the run's dataset
folder, the sizes come from the checkpoint. The model runs in evaluation mode for all its ACT segments, like
evaluate.py, with the same `test_time` block (for ARC, test_time.augmentations counts the task's augmented puzzles
in the run's identifiers.json, each with its learned embedding). The answer is printed in the form of the input,
followed by checks: Sudoku rules, maze path connectivity and length, ARC grid shape (and the expected output when
the task file has one). Bad input: one line `error: ...`, exit status 2.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import pydantic
import torch

from dataset.codecs import (
    ARC_SEQ_LEN,
    ARC_VOCAB_SIZE,
    SudokuCodec,
    apply_augmentation,
    check_maze,
    check_sudoku,
    codec_for,
    crop_prediction,
    encode_arc_grid,
    format_arc,
    format_maze,
    format_sudoku,
    invert_augmentation,
    parse_arc_task,
    parse_augmentation_name,
    parse_maze,
    parse_sudoku,
    sudoku_box_shape,
    sudoku_to_string,
)
from dataset.common import IGNORE_LABEL_ID, PuzzleDatasetMetadata
from training.config import PretrainConfig, TestTimeConfig
from training.distributed import init_distributed
from training.inference import run_to_halt
from training.restore import TrainedRun, load_trained
from training.test_time import TestTimeCompute, build_test_time, select_candidates
from utils.cli import parse_overrides, run_command
from utils.errors import UserError
from utils.functions import load_model_class

TASK_NAMES = {"sudoku": "Sudoku", "maze": "maze", "arc": "ARC task"}
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
    task: Optional[Literal["sudoku", "maze", "arc"]] = pydantic.Field(
        None, description="default: told by the dataset's vocabulary and sequence length")
    data_path: Optional[str] = pydantic.Field(None, description="dataset folder for the metadata; default: the run's")
    device: str = pydantic.Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    box: Optional[str] = pydantic.Field(None, description="Sudoku box shape RxC, e.g. 2x3; default: the squarest")
    name: Optional[str] = pydantic.Field(None, description="ARC: the task name in the run's identifiers.json; "
                                                           "default: the file name")
    test_time: TestTimeConfig = pydantic.Field(TestTimeConfig(), description="test-time compute, as evaluate.py's")
    seed: int = pydantic.Field(0, description="seed of the test-time augmentations and noise")

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
        raise SolveError("the run's dataset is not here; pass data_path=<dataset folder> or task=sudoku|maze|arc")
    return PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab.shape[0],
                                 seq_len=seq_len, num_puzzle_identifiers=puzzle_emb.shape[0] if puzzle_emb is not None
                                 else 1, total_groups=1, mean_puzzle_examples=1.0, sets=["all"])


def _prefix_len(run: PretrainConfig, state: Dict[str, torch.Tensor]) -> int:
    """Positions the model prepends for the puzzle embedding, from the run's arch config and the weights."""
    emb = state.get("model.inner.puzzle_emb.weights")
    ndim = emb.shape[1] if emb is not None else 0
    hidden = state["model.inner.embed_tokens.embedding_weight"].shape[1]
    declared = load_model_class(run.arch.name).config_class.model_fields.get("puzzle_emb_len")
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
            test_time: Optional[TestTimeCompute] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run every ACT segment on a batch of token rows, as evaluation does (with `test_time`, a
    training.test_time.TestTimeCompute: each row's variants, and the selected answer). Returns (preds (B, seq_len),
    final q_halt logits (B,), distinct candidates per row (B,))."""
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
    return (outputs["preds"].cpu().numpy().astype(np.int64), outputs["q_halt_logits"].float().cpu().numpy(),
            candidates)


def _test_time(config: SolveConfig, loaded: LoadedModel, augmentations: int,
               codec=None) -> Optional[TestTimeCompute]:
    """The solve's test-time compute (None when plain), for the loaded model's task, with `augmentations`."""
    settings = config.test_time.model_copy(update={"augmentations": augmentations})
    if settings.plain:
        return None
    metadata = loaded.run.metadata.model_copy(update={"num_puzzle_identifiers": 1, "sets": ["all"]})
    return build_test_time(settings, metadata, config.seed, "the model's task", codec=codec)


def _segments(config: SolveConfig, loaded: LoadedModel) -> int:
    return config.test_time.segments or loaded.max_segments


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


def _guess_task_from_input(text: str, file_name: Optional[str]) -> str:
    stripped = text.lstrip()
    if (file_name or "").lower().endswith(".json") or stripped.startswith("{"):
        return "arc"
    if any(ch in text for ch in "#SG"):
        return "maze"
    return "sudoku"


def _seq_len_for(task: str, text: str):
    """A function of the checkpoint's weights (and the model's prefix length) giving seq_len, for runs whose
    dataset is not here."""
    def hint(state: Dict[str, torch.Tensor], prefix: int) -> int:
        # Learned positions and mlp_t's token mixer span the puzzle-embedding prefix and the sequence.
        spans = [v.shape[0] for k, v in state.items()
                 if k == "model.inner.embed_pos.embedding_weight" or k.endswith("mlp_t.down_proj.weight")]
        if spans:
            return spans[0] - prefix
        if task == "arc":
            return ARC_SEQ_LEN
        if task == "maze":
            lines = [line for line in text.splitlines() if line.strip()]
            return len(lines) ** 2 if len(lines) > 1 else len(lines[0]) if lines else 0
        return len([c for c in text if not c.isspace() and c not in "|+-"])
    return hint


def solve(config: SolveConfig, out=None) -> bool:
    """Solve, print (to `out`, default stdout), and return whether the answer is valid."""
    out = out if out is not None else sys.stdout
    text, file_name = _read_puzzle(config)
    guessed = config.task or _guess_task_from_input(text, file_name)
    loaded = load_model(config, seq_len_hint=_seq_len_for(guessed, text))
    codec = codec_for(loaded.vocab_size, loaded.seq_len)
    task = config.task or (codec.name if codec is not None else None)
    if task is None:
        raise SolveError(f"cannot tell the task from the dataset (vocab_size {loaded.vocab_size}, seq_len "
                         f"{loaded.seq_len}); pass task=sudoku|maze|arc")
    if config.task is None and guessed != task:
        given = f"{file_name} looks like" if file_name else "the puzzle looks like"
        raise SolveError(f"{given} {TASK_NAMES[guessed]}, but {config.checkpoint} is a {TASK_NAMES[task]} model "
                         f"(vocab_size {loaded.vocab_size}, seq_len {loaded.seq_len}): give a {TASK_NAMES[task]}, or "
                         f"the checkpoint of a {TASK_NAMES[guessed]} model")

    def say(line: str = "") -> None:
        print(line, file=out)

    for note in loaded.notes:
        say(f"note: {note}")
    say(f"task: {task}  checkpoint: {config.checkpoint}  device: {loaded.device}")
    if task == "sudoku":
        return _solve_sudoku(config, loaded, text, say)
    if task == "maze":
        return _solve_maze(config, loaded, text, say)
    return _solve_arc(config, loaded, text, file_name, say)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _check_model_size(loaded: LoadedModel, task: str, side: int) -> None:
    if side * side != loaded.seq_len:
        raise SolveError(f"the model takes sequences of {loaded.seq_len} tokens; a {side}x{side} {task} does not fit")


def _halting(say, q_halt: float, segments: int, candidates: int = 1, variants: int = 1) -> None:
    say(f"segments: {segments}  q_halt logit: {q_halt:+.2f} (the model {'is' if q_halt > 0 else 'is not'} confident "
        f"its answer is right)")
    if variants > 1:
        say(f"test-time compute: {variants} variants gave {candidates} distinct answer(s); the selected one is shown")


def _solve_sudoku(config: SolveConfig, loaded: LoadedModel, text: str, say) -> bool:
    side = math.isqrt(loaded.seq_len)
    _check_model_size(loaded, "Sudoku", side)
    if loaded.vocab_size != side + 2:
        raise SolveError(f"the model's vocabulary ({loaded.vocab_size}) is not a {side}x{side} Sudoku's ({side + 2})")
    box = sudoku_box_shape(side, config.box)
    puzzle = parse_sudoku(text, side)
    before = check_sudoku(puzzle, puzzle, box)
    test_time = _test_time(config, loaded, config.test_time.augmentations, codec=SudokuCodec(side, box))
    preds, q_halt, candidates = predict(loaded, (puzzle + 1).reshape(1, -1), [loaded.blank_identifier], test_time)
    tokens = preds[0].reshape(side, side)
    answer = np.where(tokens >= 2, tokens - 1, -1)  # pad/blank tokens are not digits

    say(f"puzzle ({side}x{side}, {before.clues} clues):")
    say(format_sudoku(puzzle, box))
    say("answer:")
    say(format_sudoku(answer, box))
    say(f"answer string: {sudoku_to_string(answer)}")
    check = check_sudoku(puzzle, answer, box)
    say(f"clues kept: {_yes(check.clues_kept)}" + ("" if check.clues_kept else
                                                    f" ({check.clues_changed} of {check.clues} changed)"))
    say(f"rows valid: {check.rows_valid}/{side}, columns valid: {check.cols_valid}/{side}, "
        f"boxes valid: {check.boxes_valid}/{side}")
    _halting(say, float(q_halt[0]), _segments(config, loaded), int(candidates[0]),
             test_time.variants if test_time else 1)
    say(f"valid solution: {_yes(check.valid)}")
    return check.valid


def _solve_maze(config: SolveConfig, loaded: LoadedModel, text: str, say) -> bool:
    side = math.isqrt(loaded.seq_len)
    _check_model_size(loaded, "maze", side)
    maze = parse_maze(text, side)
    test_time = _test_time(config, loaded, config.test_time.augmentations)
    preds, q_halt, candidates = predict(loaded, maze.reshape(1, -1), [loaded.blank_identifier], test_time)
    answer = preds[0].reshape(side, side)
    check = check_maze(maze, answer)

    say(f"maze ({side}x{side}):")
    say(format_maze(maze))
    say("answer:")
    say(format_maze(answer))
    say(f"walls kept: {_yes(check.walls_changed == 0 and check.path_on_walls == 0)}"
        + (f" ({check.walls_changed} wall cells changed, {check.path_on_walls} path marks off open cells)"
           if check.walls_changed or check.path_on_walls else ""))
    say(f"start and goal kept: {_yes(check.endpoints_kept)}")
    say(f"path cells: {check.path_cells}, connects S to G: {_yes(check.connected)}"
        + (f", cells off the route: {check.stray_cells}" if check.stray_cells else "")
        + (f", dead ends: {check.dead_ends}" if check.dead_ends else ""))
    if check.shortest_length is None:
        say("shortest path: G cannot be reached from S in this maze")
    else:
        say(f"shortest path: {_yes(check.shortest)} (a shortest path has {check.shortest_length - 1} cells"
            + (f", the marked route {check.route_length - 1})" if check.route_length is not None else ")"))
    _halting(say, float(q_halt[0]), _segments(config, loaded), int(candidates[0]),
             test_time.variants if test_time else 1)
    say(f"valid path: {_yes(check.valid)}")
    return check.valid


def _solve_arc(config: SolveConfig, loaded: LoadedModel, text: str, file_name: Optional[str], say) -> bool:
    if loaded.seq_len != ARC_SEQ_LEN or loaded.vocab_size != ARC_VOCAB_SIZE:
        raise SolveError(f"the model (vocab_size {loaded.vocab_size}, seq_len {loaded.seq_len}) is not an ARC model "
                         f"(vocab_size {ARC_VOCAB_SIZE}, seq_len {ARC_SEQ_LEN})")
    pairs = parse_arc_task(text)
    name = config.name or (os.path.splitext(os.path.basename(file_name))[0] if file_name else None)
    identifier = loaded.blank_identifier
    if name is not None and loaded.identifiers is not None and name in loaded.identifiers:
        identifier = loaded.identifiers.index(name)
        say(f"ARC task {name}: puzzle identifier {identifier}")
    else:
        why = ("no task name (give name=...)" if name is None else
               "the run's dataset has no identifiers.json" if loaded.identifiers is None else
               f"task {name!r} is not in the run's identifiers.json")
        say(f"warning: {why}; using the blank puzzle identifier {identifier} (the model has learned no embedding "
            f"for this task, expect a poor answer)")
    variants = _arc_variants(loaded, name, identifier, config.test_time.augmentations)
    if len(variants) > 1:
        say(f"voting over the task and {len(variants) - 1} of its augmented puzzles")
    test_time = _test_time(config, loaded, 1)  # trajectories and segments; the augmentations are the task's puzzles
    inputs = np.stack([encode_arc_grid(apply_augmentation(grid, tid, colours)) for grid, _ in pairs
                       for _, tid, colours in variants])
    preds, q_halt, _ = predict(loaded, inputs, [ident for _ in pairs for ident, _, _ in variants], test_time)
    preds, q_halt = preds.reshape(len(pairs), len(variants), -1), q_halt.reshape(len(pairs), len(variants))

    all_ok = True
    for k, (grid, expected) in enumerate(pairs):
        answer, distinct, best = _arc_vote(preds[k], q_halt[k], variants, config.test_time.select)
        say(f"test input {k} ({grid.shape[0]}x{grid.shape[1]}):")
        say(format_arc(grid))
        say(f"answer {k} ({answer.shape[0]}x{answer.shape[1]}):")
        say(format_arc(answer))
        well_formed = answer.size > 0
        ok = well_formed
        say(f"grid well formed: {_yes(well_formed)}")
        if expected is not None:
            correct = answer.shape == expected.shape and bool(np.array_equal(answer, expected))
            say(f"matches the expected output: {_yes(correct)}"
                + ("" if correct or answer.shape != expected.shape else
                   f" ({int((answer != expected).sum())} cells differ)")
                + ("" if answer.shape == expected.shape else
                   f" (shape {answer.shape[0]}x{answer.shape[1]}, expected {expected.shape[0]}x{expected.shape[1]})"))
            ok = ok and correct
        variant_count = len(variants) * (test_time.variants if test_time else 1)
        _halting(say, float(q_halt[k, best]), _segments(config, loaded), distinct, variant_count)
        all_ok = all_ok and ok
    say(f"valid answer: {_yes(all_ok)}")
    return all_ok


def _arc_variants(loaded: LoadedModel, name: Optional[str], identifier: int, augmentations: int
                  ) -> List[Tuple[int, int, np.ndarray]]:
    """(puzzle identifier, dihedral id, colour map) of up to `augmentations` puzzles of the task: the task itself,
    then its augmented puzzles in the order of the run's identifiers.json (each has its learned embedding)."""
    variants = [(identifier, 0, np.arange(10, dtype=np.uint8))]
    if augmentations == 1:
        return variants
    if name is None or loaded.identifiers is None or name not in loaded.identifiers:
        raise SolveError(f"augmentations={augmentations} for ARC votes over the task's augmented puzzles in the "
                         f"run's identifiers.json, which does not have task {name!r}; use augmentations=1")
    for index, full_name in enumerate(loaded.identifiers):
        task, tid, colours = parse_augmentation_name(full_name)
        if task == name and full_name != name and len(variants) < augmentations:
            variants.append((index, tid, colours))
    return variants


def _arc_vote(preds: np.ndarray, q_halt: np.ndarray, variants, rule: str) -> Tuple[np.ndarray, int, int]:
    """(answer grid, distinct answers, chosen variant) of one test input's variants: each prediction cropped and
    mapped back to the task's frame, then voted on like evaluation's candidates (a crop that fails is dropped)."""
    grids = [crop_prediction(tokens) for tokens in preds]
    valid = np.array([g.size > 0 for g in grids])
    canvases = np.stack([encode_arc_grid(invert_augmentation(g, tid, colours)) if g.size else
                         np.zeros(ARC_SEQ_LEN, dtype=np.uint8) for g, (_, tid, colours) in zip(grids, variants)])
    confidence = 1.0 / (1.0 + np.exp(-q_halt.astype(np.float64)))
    chosen, distinct = select_candidates(canvases[None], confidence[None], valid[None], rule)
    best = int(chosen[0])
    return crop_prediction(canvases[best]).astype(np.int64), int(distinct[0]), best


def main(argv: Sequence[str]) -> int:
    """The command: solve and print; the exit status (0, or 2 on bad input)."""
    return run_command(lambda args: solve(parse_overrides(SolveConfig, args, __doc__)), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
