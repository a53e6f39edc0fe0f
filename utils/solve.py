"""Solve one puzzle with a trained checkpoint and check the answer.

    python -m utils.solve checkpoint=runs/a/step_5000 puzzle=53..7....6..195....98....6.8...6...34..8.3..17...
    python -m utils.solve checkpoint=runs/a/step_5000 puzzle_file=sudoku.txt
    python -m utils.solve checkpoint=runs/maze/step_5000 puzzle_file=maze.txt          # 30 lines over "# SGo"
    python -m utils.solve checkpoint=runs/arc/step_5000 puzzle_file=00576224.json       # an ARC task file

Keys (key=value, like evaluate.py; values are taken literally, so a Sudoku string of digits stays a string):
  checkpoint   a step_<N> model file with the run's all_config.yaml beside it (required)
  puzzle       the puzzle as one string (Sudoku: N*N characters, '.' or '0' for blanks; maze: 900 characters)
  puzzle_file  a file holding it (Sudoku: the string or a pretty grid; maze: a text grid; ARC: a task JSON)
  task         sudoku | maze | arc (default: told by the dataset's vocabulary and sequence length)
  data_path    dataset folder for the metadata (default: the run's); without one the sizes come from the
               checkpoint
  device       auto | cpu | cuda | cuda:N | mps (default auto)
  box          Sudoku box shape RxC, e.g. box=2x3 (default: the squarest boxes, rows <= columns)
  name         ARC: the task name looked up in the dataset's identifiers.json (default: the file name)

The model runs in evaluation mode for all its ACT segments (halt_max_steps), like evaluate.py. The answer is
printed in the form of the input, followed by checks: Sudoku rules, maze path connectivity and length, ARC grid
shape (and the expected output when the task file has one). Bad input: one line `error: ...`, exit status 2.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import pydantic
import torch

from dataset.codecs import (ARC_MAX_GRID as ARC_SIDE, ARC_SEQ_LEN, ARC_VOCAB_SIZE as ARC_VOCAB, MAZE_CHARSET,
                            MAZE_GOAL, MAZE_OPEN, MAZE_PATH, MAZE_START, SudokuCodec, apply_augmentation,
                            check_maze, check_sudoku, codec_for, crop_prediction, encode_arc_grid,
                            invert_augmentation, parse_augmentation_name, squarest_box)

TASKS = ("sudoku", "maze", "arc")
DIGIT_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # cell values 1..35 as one character


class SolveError(ValueError):
    """A bad puzzle, puzzle file or request; reported as one line."""


class SolveConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    checkpoint: str
    puzzle: Optional[str] = None
    puzzle_file: Optional[str] = None
    task: Optional[Literal["sudoku", "maze", "arc"]] = None
    data_path: Optional[str] = None
    device: str = "auto"
    box: Optional[str] = None
    name: Optional[str] = None
    # Test-time compute (utils/config.py TestTimeConfig, README "Test-time compute"). ARC's augmentations are the
    # task's augmented puzzles in the run's identifiers.json.
    augmentations: int = pydantic.Field(1, ge=1)
    trajectories: int = pydantic.Field(1, ge=1)
    noise_std: float = pydantic.Field(0.0, ge=0)
    noise_at: Literal["init", "segment"] = "init"
    segments: Optional[int] = pydantic.Field(None, gt=0)
    filter_invalid: bool = False
    select: Literal["vote", "q_halt"] = "vote"
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _one_source(self):
        if (self.puzzle is None) == (self.puzzle_file is None):
            raise ValueError("give exactly one of puzzle=... or puzzle_file=...")
        self.test_time_config(self.augmentations)  # its own checks, now (e.g. trajectories without noise)
        return self

    def test_time_config(self, augmentations: int):
        from utils.config import TestTimeConfig

        return TestTimeConfig(augmentations=augmentations, trajectories=self.trajectories, noise_std=self.noise_std,
                              noise_at=self.noise_at, segments=self.segments, filter_invalid=self.filter_invalid,
                              select=self.select)


def parse_args(argv: Sequence[str]) -> SolveConfig:
    """key=value pairs, values kept as strings (pydantic converts); unknown keys are an error naming them."""
    from utils.config import ConfigError, format_validation_error

    raw: Dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {arg!r} (e.g. checkpoint=runs/a/step_100 puzzle=...)")
        key = key.lstrip("+")
        if key in raw:
            raise ConfigError(f"key '{key}' given twice")
        raw[key] = value
    try:
        return SolveConfig(**raw)
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


# ---------------------------------------------------------------------------------------------------------------
# Sudoku


def sudoku_box_shape(size: int, box: Optional[str] = None) -> Tuple[int, int]:
    """(box rows, box columns): from "RxC", else the most square split with rows <= columns (9 -> 3x3, 6 -> 2x3)."""
    if box is not None:
        try:
            rows, cols = (int(part) for part in box.lower().split("x"))
        except ValueError:
            raise SolveError(f"box={box!r} is not of the form RxC (e.g. box=2x3)") from None
        if rows <= 0 or cols <= 0 or rows * cols != size:
            raise SolveError(f"box={box}: {rows}x{cols} boxes do not tile a {size}x{size} Sudoku")
        return rows, cols
    return squarest_box(size)


def parse_sudoku(text: str, size: Optional[int] = None) -> np.ndarray:
    """A Sudoku as an (N, N) array of digits, 0 = blank.

    Accepts one string of N*N cells or a pretty grid: whitespace and the separators `|`, `+`, `-` are ignored;
    '.', '0' and '_' are blanks; 1-9 then A-Z (10..35) are digits.
    """
    cells = [c for c in text if not c.isspace() and c not in "|+-"]
    n = len(cells)
    side = math.isqrt(n)
    if n == 0:
        raise SolveError("the Sudoku is empty")
    if size is not None and n != size * size:
        raise SolveError(f"the Sudoku has {n} cells, the model expects {size * size} ({size}x{size})")
    if side * side != n:
        raise SolveError(f"the Sudoku has {n} cells, not a square number")
    digits = np.zeros(n, dtype=np.int64)
    for i, c in enumerate(cells):
        if c in "._0":
            continue
        value = DIGIT_CHARS.find(c.upper()) + 1
        if value <= 0 or value > side:
            raise SolveError(f"cell {i + 1} holds {c!r}: a {side}x{side} Sudoku takes '.', '0' or digits 1-"
                             f"{DIGIT_CHARS[side - 1]}")
        digits[i] = value
    return digits.reshape(side, side)


def sudoku_to_string(grid: np.ndarray) -> str:
    """Digits (0 = blank, -1 = not a digit) -> one string, '.' for blanks and '?' for non-digits."""
    return "".join("." if v == 0 else "?" if v < 0 else DIGIT_CHARS[v - 1] for v in np.asarray(grid).reshape(-1))


def format_sudoku(grid: np.ndarray, box: Tuple[int, int]) -> str:
    """A pretty grid with box separators."""
    grid = np.asarray(grid)
    size = grid.shape[0]
    rows, cols = box
    text = sudoku_to_string(grid)
    lines = []
    rule = "+".join("-" * (2 * cols + 1) for _ in range(size // cols))
    for r in range(size):
        if r and r % rows == 0:
            lines.append(rule)
        row = text[r * size:(r + 1) * size]
        lines.append("|".join(" " + " ".join(row[c:c + cols]) + " " for c in range(0, size, cols)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Maze


def parse_maze(text: str, side: Optional[int] = None) -> np.ndarray:
    """A maze text grid over "# SGo" (lines of equal length, or one line of side*side characters) -> token grid.

    Lines shorter than the grid (trailing spaces lost by an editor) are padded with open cells. 'o' marks in the
    input (a solved maze) are read as open cells. Needs exactly one 'S' and one 'G'.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise SolveError("the maze is empty")
    if len(lines) == 1:  # the CSV form: one row-major string
        n = math.isqrt(len(lines[0]))
        if n * n != len(lines[0]):
            raise SolveError(f"a one-line maze needs a square number of characters, got {len(lines[0])}")
        lines = [lines[0][i * n:(i + 1) * n] for i in range(n)]
    n = side if side is not None else len(lines)
    if len(lines) != n:
        raise SolveError(f"the maze has {len(lines)} lines, the model expects {n} lines of {n} characters")
    widest = max(len(line) for line in lines)
    if widest > n:
        raise SolveError(f"a maze line has {widest} characters, the model expects {n}")
    grid = np.empty((n, n), dtype=np.int64)
    for r, line in enumerate(lines):
        line = line.ljust(n)
        for c, ch in enumerate(line):
            index = MAZE_CHARSET.find(ch)
            if index < 0:
                raise SolveError(f"maze line {r + 1}, column {c + 1}: {ch!r} is not one of {MAZE_CHARSET!r}")
            grid[r, c] = index + 1
    grid[grid == MAZE_PATH] = MAZE_OPEN
    for token, what in ((MAZE_START, "start 'S'"), (MAZE_GOAL, "goal 'G'")):
        count = int((grid == token).sum())
        if count != 1:
            raise SolveError(f"the maze needs exactly one {what}, it has {count}")
    return grid


def format_maze(grid: np.ndarray) -> str:
    """Token grid -> text lines ('?' for tokens outside the charset, e.g. padding)."""
    return "\n".join("".join(MAZE_CHARSET[v - 1] if 1 <= v <= len(MAZE_CHARSET) else "?" for v in row)
                     for row in np.asarray(grid))


# ---------------------------------------------------------------------------------------------------------------
# ARC


def _arc_grid(value, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise SolveError(f"{where}: a grid must be a non-empty list of rows")
    width = len(value[0])
    if width == 0 or any(len(row) != width for row in value):
        raise SolveError(f"{where}: grid rows must be non-empty and of equal length")
    if len(value) > ARC_SIDE or width > ARC_SIDE:
        raise SolveError(f"{where}: the grid is {len(value)}x{width}, larger than {ARC_SIDE}x{ARC_SIDE}")
    for r, row in enumerate(value):
        for c, x in enumerate(row):
            if type(x) is not int or not 0 <= x <= 9:
                raise SolveError(f"{where}: colour {x!r} at row {r}, column {c} is not an integer 0-9")
    return np.array(value, dtype=np.int64)


def parse_arc_task(text: str) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """The test pairs of an ARC task JSON: [(input grid, expected output grid or None)]."""
    try:
        task = json.loads(text)
    except json.JSONDecodeError as err:
        raise SolveError(f"the ARC task is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") \
            from None
    if not isinstance(task, dict) or not isinstance(task.get("test"), list) or not task["test"]:
        raise SolveError('an ARC task must be a JSON object with a non-empty "test" list of {"input": grid}')
    pairs = []
    for k, pair in enumerate(task["test"]):
        if not isinstance(pair, dict) or "input" not in pair:
            raise SolveError(f'test[{k}] must be an object with an "input" grid')
        expected = _arc_grid(pair["output"], f"test[{k}].output") if "output" in pair else None
        pairs.append((_arc_grid(pair["input"], f"test[{k}].input"), expected))
    return pairs


def format_arc(grid: np.ndarray) -> str:
    """JSON rows, one per line."""
    rows = [json.dumps(row) for row in np.asarray(grid).tolist()]
    return "[" + ",\n ".join(rows) + "]" if rows else "[]"


# ---------------------------------------------------------------------------------------------------------------
# Model


@dataclass
class LoadedModel:
    model: torch.nn.Module
    device: torch.device
    vocab_size: int
    seq_len: int
    blank_identifier: int
    halt_max_steps: int
    identifiers: Optional[List[str]] = None  # the dataset's identifiers.json, when there
    notes: List[str] = field(default_factory=list)


def _metadata_from_checkpoint(state: Dict[str, torch.Tensor], seq_len: Optional[int]):
    """Dataset metadata rebuilt from the weights' shapes (when the run's dataset folder is not here)."""
    from dataset.common import PuzzleDatasetMetadata

    vocab = state.get("model.inner.embed_tokens.embedding_weight")
    if vocab is None:
        raise SolveError("cannot read the vocabulary size from the checkpoint; pass data_path=<dataset folder>")
    puzzle_emb = state.get("model.inner.puzzle_emb.weights")
    if seq_len is None:
        raise SolveError("the run's dataset is not here; pass data_path=<dataset folder> or task=sudoku|maze|arc")
    return PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab.shape[0],
                                 seq_len=seq_len, num_puzzle_identifiers=puzzle_emb.shape[0] if puzzle_emb is not None
                                 else 1, total_groups=1, mean_puzzle_examples=1.0, sets=["all"])


def _prefix_len(run, state: Dict[str, torch.Tensor]) -> int:
    """Positions the model prepends for the puzzle embedding, from the run's arch config and the weights."""
    from utils.functions import load_model_class

    emb = state.get("model.inner.puzzle_emb.weights")
    ndim = emb.shape[1] if emb is not None else 0
    hidden = state["model.inner.embed_tokens.embedding_weight"].shape[1]
    default = load_model_class(run.arch.name).config_class.model_fields["puzzle_emb_len"].default
    length = run.arch.extra.get("puzzle_emb_len", default) if ndim else 0
    return length if length > 0 else -(-ndim // hidden)


def load_model(config: SolveConfig, seq_len_hint=None) -> LoadedModel:
    """Rebuild the run like evaluate.py: all_config.yaml beside the checkpoint, sizes from the dataset metadata
    (or, without the dataset, from the checkpoint's shapes), weights loaded strictly, evaluation mode."""
    from dataset.puzzle_dataset import DatasetNotFoundError
    from training.build import create_model, training_metadata
    from training.distributed import init_distributed
    from training.run_config import load_run_config
    from utils.checkpoint import load_model_state_dict, load_weights

    run = load_run_config(config.checkpoint, world_size=1, data_path=config.data_path, device=config.device,
                          compile=False, global_batch_size=1)
    info = init_distributed(config.device)
    state = load_model_state_dict(config.checkpoint)
    notes = []
    identifiers = None
    try:
        metadata = training_metadata(run)
        names_path = os.path.join(run.train_data_paths[0], "identifiers.json")
        if os.path.isfile(names_path):
            with open(names_path, encoding="utf-8") as f:
                identifiers = json.load(f)
    except DatasetNotFoundError:
        metadata = _metadata_from_checkpoint(state, seq_len_hint(state, _prefix_len(run, state)) if seq_len_hint
                                             else None)
        notes.append(f"dataset {', '.join(run.train_data_paths)} not found: sizes taken from the checkpoint (vocab "
                     f"{metadata.vocab_size}, seq_len {metadata.seq_len})")
    model, _ = create_model(run, metadata, info)
    load_weights(model, state, config.checkpoint)
    model.eval()
    return LoadedModel(model=model, device=info.device, vocab_size=metadata.vocab_size, seq_len=metadata.seq_len,
                       blank_identifier=metadata.blank_identifier_id,
                       halt_max_steps=int(run.arch.extra.get("halt_max_steps", 1)), identifiers=identifiers,
                       notes=notes)


@torch.inference_mode()
def predict(loaded: LoadedModel, inputs: np.ndarray, puzzle_identifiers: Sequence[int], test_time=None
            ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run every ACT segment on a batch of token rows, as evaluation does (with `test_time`, a
    training.test_time.TestTimeCompute: each row's variants, and the selected answer). Returns (preds (B, seq_len),
    final q_halt logits (B,), distinct candidates per row (B,))."""
    from training.evaluation import run_to_halt

    device = loaded.device
    inputs_t = torch.as_tensor(np.asarray(inputs), dtype=torch.int32, device=device)
    batch = {
        "inputs": inputs_t,
        "labels": torch.full_like(inputs_t, -100),  # unknown: the loss ignores them
        "puzzle_identifiers": torch.as_tensor(list(puzzle_identifiers), dtype=torch.int32, device=device),
    }
    keys = ["preds", "q_halt_logits"]
    if test_time is None:
        _, outputs = run_to_halt(loaded.model, loaded.model, batch, keys)
        candidates = np.ones(len(inputs), dtype=np.int64)
    else:
        _, outputs = test_time.run_batch(loaded.model, loaded.model, batch, keys)
        candidates = outputs["candidates"].cpu().numpy()
    return (outputs["preds"].cpu().numpy().astype(np.int64), outputs["q_halt_logits"].float().cpu().numpy(),
            candidates)


def _test_time(config: SolveConfig, loaded: LoadedModel, augmentations: int, codec=None):
    """The solve's test-time compute (None when plain), for the loaded model's task."""
    from dataset.common import PuzzleDatasetMetadata
    from training.test_time import build_test_time

    settings = config.test_time_config(augmentations)
    if settings.plain:
        return None
    metadata = PuzzleDatasetMetadata(pad_id=0, ignore_label_id=None, blank_identifier_id=loaded.blank_identifier,
                                     vocab_size=loaded.vocab_size, seq_len=loaded.seq_len, num_puzzle_identifiers=1,
                                     total_groups=1, mean_puzzle_examples=1.0, sets=["all"])
    return build_test_time(settings, metadata, config.seed, "the model's task", codec=codec)


def _segments(config: SolveConfig, loaded: LoadedModel) -> int:
    return config.segments or loaded.halt_max_steps


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
    test_time = _test_time(config, loaded, config.augmentations, codec=SudokuCodec(side, box))
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
    test_time = _test_time(config, loaded, config.augmentations)
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
    if loaded.seq_len != ARC_SEQ_LEN or loaded.vocab_size != ARC_VOCAB:
        raise SolveError(f"the model (vocab_size {loaded.vocab_size}, seq_len {loaded.seq_len}) is not an ARC model "
                         f"(vocab_size {ARC_VOCAB}, seq_len {ARC_SEQ_LEN})")
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
    variants = _arc_variants(loaded, name, identifier, config.augmentations)
    if len(variants) > 1:
        say(f"voting over the task and {len(variants) - 1} of its augmented puzzles")
    test_time = _test_time(config, loaded, 1)  # trajectories and segments; the augmentations are the task's puzzles
    inputs = np.stack([encode_arc_grid(apply_augmentation(grid, tid, colours)) for grid, _ in pairs
                       for _, tid, colours in variants])
    preds, q_halt, _ = predict(loaded, inputs, [ident for _ in pairs for ident, _, _ in variants], test_time)
    preds, q_halt = preds.reshape(len(pairs), len(variants), -1), q_halt.reshape(len(pairs), len(variants))

    all_ok = True
    for k, (grid, expected) in enumerate(pairs):
        answer, distinct, best = _arc_vote(preds[k], q_halt[k], variants, config.select)
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
    from training.test_time import select_candidates

    grids = [crop_prediction(tokens) for tokens in preds]
    valid = np.array([g.size > 0 for g in grids])
    canvases = np.stack([encode_arc_grid(invert_augmentation(g, tid, colours)) if g.size else
                         np.zeros(ARC_SEQ_LEN, dtype=np.uint8) for g, (_, tid, colours) in zip(grids, variants)])
    confidence = 1.0 / (1.0 + np.exp(-q_halt.astype(np.float64)))
    chosen, distinct = select_candidates(canvases[None], confidence[None], valid[None], rule)
    best = int(chosen[0])
    return crop_prediction(canvases[best]).astype(np.int64), int(distinct[0]), best


def main(argv: Sequence[str]) -> int:
    from training.errors import USER_ERRORS

    try:
        config = parse_args(argv)
        solve(config)
    except (SolveError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
