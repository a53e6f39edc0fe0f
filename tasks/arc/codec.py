"""ARC's codec (docs/DESIGN.md §9): grids up to 30x30 drawn on a 30x30 canvas, colour c -> token c + 2, 1 end-of-grid
marks (the row just below the grid and the column just right of it), 0 pad. Group: dihedral transforms and
permutations of colours 1-9 (0, black, stays); an augmented puzzle is a puzzle of its own, with its own identifier,
named `<task>_t<id>_<colour map>`, so no member acts on token rows (evaluators=[arc@ARC] votes over them, after
mapping each answer back: tasks/arc/evaluator.py). No check: any grid may be an answer. Text form: an ARC task file
(JSON); the solve CLI answers its test inputs.

The canvas, the augmentation names and their inverses here are shared by the builder (build.py), the evaluator and
the solve CLI.
"""
from __future__ import annotations

import json
import os
from typing import List, Optional, Tuple

import numpy as np

from dataset.common import DIHEDRAL_INVERSE, PuzzleDatasetMetadata, dihedral_transform
from evaluators.voting import select_candidates
from tasks.base import PuzzleFormatError, SolveRequest, TaskCodec, TaskError, yes

ARC_MAX_GRID = 30
ARC_SEQ_LEN = ARC_MAX_GRID * ARC_MAX_GRID
ARC_PAD, ARC_EOS, ARC_COLOUR_OFFSET = 0, 1, 2
ARC_NUM_COLOURS = 10
ARC_VOCAB_SIZE = ARC_NUM_COLOURS + 2
IDENTITY_COLOURS = np.arange(ARC_NUM_COLOURS, dtype=np.uint8)
ORIGINAL_NAME_SEPARATOR = "|||"  # the original HRM builder's separator in augmented puzzle names


def draw_on_canvas(grids: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Draw k grids of one shape (uint8 [k, h, w], colours) at top-left offsets (rows[k], cols[k]) onto 30x30
    canvases with the end-of-grid marks; returns uint8 [k, 900]."""
    k, h, w = grids.shape
    canvas = np.zeros((k, ARC_MAX_GRID, ARC_MAX_GRID), dtype=np.uint8)
    idx = np.arange(k)[:, None, None]
    r = rows[:, None, None] + np.arange(h)[None, :, None]
    c = cols[:, None, None] + np.arange(w)[None, None, :]
    canvas[idx, r, c] = grids + ARC_COLOUR_OFFSET
    below = rows + h
    sel = np.flatnonzero(below < ARC_MAX_GRID)
    if sel.size:
        canvas[sel[:, None], below[sel][:, None], cols[sel][:, None] + np.arange(w)[None, :]] = ARC_EOS
    right = cols + w
    sel = np.flatnonzero(right < ARC_MAX_GRID)
    if sel.size:
        canvas[sel[:, None], rows[sel][:, None] + np.arange(h)[None, :], right[sel][:, None]] = ARC_EOS
    return canvas.reshape(k, ARC_SEQ_LEN)


def encode_arc_grid(grid: np.ndarray) -> np.ndarray:
    """One grid on the canvas at the top-left corner, as the builder draws test inputs: (900,) tokens."""
    grid = np.asarray(grid, dtype=np.uint8)
    return draw_on_canvas(grid[None], np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))[0]


def crop_canvas(tokens: np.ndarray) -> np.ndarray:
    """The grid (colours) drawn on a well-formed canvas (900 or 30x30 tokens): the bounding box of the colour
    tokens. Only for canvases written by a builder (pad or end marks inside the box would wrap around); model
    predictions are cropped by `crop_predictions`' stricter rule."""
    canvas = np.asarray(tokens).reshape(ARC_MAX_GRID, ARC_MAX_GRID)
    rows = np.flatnonzero(np.any(canvas >= ARC_COLOUR_OFFSET, axis=1))
    cols = np.flatnonzero(np.any(canvas >= ARC_COLOUR_OFFSET, axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    return (canvas[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] - ARC_COLOUR_OFFSET).astype(np.uint8)


def crop_predictions(preds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 (B, 900) token ids -> (heights, widths) of each row's grid: the largest-area rectangle anchored at
    the top-left corner whose cells are all colour tokens (fewer rows on equal areas), i.e. up to the model's
    end-of-grid marks; 0 x 0 when there is none (the top-left cell is not a colour)."""
    canvas = np.asarray(preds, dtype=np.uint8).reshape(-1, ARC_MAX_GRID, ARC_MAX_GRID)
    colour = (canvas - np.uint8(ARC_COLOUR_OFFSET)) < ARC_NUM_COLOURS  # pad and end marks wrap around to >= 254
    # Per canvas row: the length of the colour run starting at column 0; a rectangle of r+1 rows is as wide as
    # the narrowest of its rows' runs.
    runs = np.where(colour.all(axis=2), ARC_MAX_GRID, colour.argmin(axis=2))
    widths = np.minimum.accumulate(runs, axis=1)
    areas = widths * np.arange(1, ARC_MAX_GRID + 1)
    best = areas.argmax(axis=1)  # the first maximum: fewest rows
    valid = areas.max(axis=1) > 0
    heights = np.where(valid, best + 1, 0)
    widths = np.where(valid, widths[np.arange(len(best)), best], 0)
    return heights, widths


def crop_prediction(tokens: np.ndarray) -> np.ndarray:
    """One predicted canvas -> its grid (colours), possibly 0 x 0 (see `crop_predictions`)."""
    canvas = np.asarray(tokens, dtype=np.uint8).reshape(ARC_MAX_GRID, ARC_MAX_GRID)
    (h,), (w,) = crop_predictions(canvas[None])
    return (canvas[:h, :w] - ARC_COLOUR_OFFSET).astype(np.uint8)


def augmentation_name(task: str, tid: int, colours: np.ndarray) -> str:
    if tid == 0 and np.array_equal(colours, IDENTITY_COLOURS):
        return task
    return f"{task}_t{tid}_{''.join(str(int(c)) for c in colours)}"


def parse_augmentation_name(name: str) -> Tuple[str, int, np.ndarray]:
    """`<task>_t<id>_<10 digits>` -> (task, dihedral id, colour map); a plain task name -> identity.

    Also reads the original HRM builder's names, `<task>|||t<id>|||<10 digits>` (same transform semantics), so
    predictions on datasets built by it map back too.
    """
    for separator in ("_", ORIGINAL_NAME_SEPARATOR):
        parts = name.rsplit(separator, 2)
        if len(parts) == 3 and len(parts[1]) == 2 and parts[1][0] == "t" and parts[1][1].isdigit() \
                and len(parts[2]) == 10 and parts[2].isdigit():
            return parts[0], int(parts[1][1]), np.array([int(c) for c in parts[2]], dtype=np.uint8)
    return name, 0, IDENTITY_COLOURS.copy()


def apply_augmentation(grid: np.ndarray, tid: int, colours: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(dihedral_transform(colours[np.asarray(grid)], tid))


def invert_augmentation(grid: np.ndarray, tid: int, colours: np.ndarray) -> np.ndarray:
    """Map a grid of an augmented puzzle back to the original task's colours and orientation."""
    inverse = np.argsort(colours).astype(np.uint8)
    return np.ascontiguousarray(inverse[dihedral_transform(np.asarray(grid), DIHEDRAL_INVERSE[tid])])


class ArcCodec(TaskCodec):
    name = "arc"
    title = "ARC task"
    no_kinds_because = ("an augmented ARC task is a puzzle of its own, with its own identifier: the test split "
                        "already holds every test input under its augmentations, voted by "
                        "evaluators=[{name: arc@ARC}]")

    @classmethod
    def from_metadata(cls, metadata: PuzzleDatasetMetadata) -> "ArcCodec":
        if not cls.recognises(metadata):
            raise TaskError(f"an ARC dataset has vocab_size {ARC_VOCAB_SIZE} and seq_len {ARC_SEQ_LEN}; this one has "
                            f"vocab_size {metadata.vocab_size} and seq_len {metadata.seq_len}")
        return cls()

    @classmethod
    def recognises(cls, metadata: PuzzleDatasetMetadata) -> bool:
        return metadata.vocab_size == ARC_VOCAB_SIZE and metadata.seq_len == ARC_SEQ_LEN

    # -- text form ----------------------------------------------------------------------------------------------

    @classmethod
    def reads_text(cls, text: str, file_name: Optional[str]) -> bool:
        return (file_name or "").lower().endswith(".json") or text.lstrip().startswith("{")

    @classmethod
    def text_seq_len(cls, text: str) -> Optional[int]:
        return ARC_SEQ_LEN

    def solve_text(self, request: SolveRequest) -> bool:
        say = request.say
        pairs = parse_arc_task(request.text)
        name = request.options.get("name") or (os.path.splitext(os.path.basename(request.file_name))[0]
                                               if request.file_name else None)
        identifier = request.blank_identifier
        if name is not None and request.identifiers is not None and name in request.identifiers:
            identifier = request.identifiers.index(name)
            say(f"ARC task {name}: puzzle identifier {identifier}")
        else:
            why = ("no task name (give name=...)" if name is None else
                   "the run's dataset has no identifiers.json" if request.identifiers is None else
                   f"task {name!r} is not in the run's identifiers.json")
            say(f"warning: {why}; using the blank puzzle identifier {identifier} (the model has learned no "
                f"embedding for this task, expect a poor answer)")
        if "converged" in request.select:
            raise PuzzleFormatError("select=converged needs the latent of every variant; ARC's votes over its "
                                    "augmented puzzles have their answers only: use vote or q")
        variants = task_variants(request.identifiers, name, identifier, request.augmentations)
        if len(variants) > 1:
            say(f"voting over the task and {len(variants) - 1} of its augmented puzzles")
        inputs = np.stack([encode_arc_grid(apply_augmentation(grid, tid, colours)) for grid, _ in pairs
                           for _, tid, colours in variants])
        # The augmentations are the task's puzzles; the command's trajectories and segments still apply.
        prediction = request.predict(inputs, [ident for _ in pairs for ident, _, _ in variants], 1, self)
        preds = prediction.preds.reshape(len(pairs), len(variants), -1)
        q_halt = prediction.q_halt.reshape(len(pairs), len(variants))

        all_ok = True
        for k, (grid, expected) in enumerate(pairs):
            answer, distinct, best = vote(preds[k], q_halt[k], variants, request.select)
            say(f"test input {k} ({grid.shape[0]}x{grid.shape[1]}):")
            say(format_arc(grid))
            say(f"answer {k} ({answer.shape[0]}x{answer.shape[1]}):")
            say(format_arc(answer))
            well_formed = answer.size > 0
            ok = well_formed
            say(f"grid well formed: {yes(well_formed)}")
            if expected is not None:
                correct = answer.shape == expected.shape and bool(np.array_equal(answer, expected))
                say(f"matches the expected output: {yes(correct)}"
                    + ("" if correct or answer.shape != expected.shape else
                       f" ({int((answer != expected).sum())} cells differ)")
                    + ("" if answer.shape == expected.shape else
                       f" (shape {answer.shape[0]}x{answer.shape[1]}, expected {expected.shape[0]}x"
                       f"{expected.shape[1]})"))
                ok = ok and correct
            request.say_halting(float(q_halt[k, best]), distinct, len(variants) * prediction.variants)
            all_ok = all_ok and ok
        say(f"valid answer: {yes(all_ok)}")
        return all_ok


def task_variants(identifiers: Optional[List[str]], name: Optional[str], identifier: int, augmentations: int
                  ) -> List[Tuple[int, int, np.ndarray]]:
    """(puzzle identifier, dihedral id, colour map) of up to `augmentations` puzzles of the task: the task itself,
    then its augmented puzzles in the order of the run's identifiers.json (each has its learned embedding)."""
    variants = [(identifier, 0, IDENTITY_COLOURS.copy())]
    if augmentations == 1:
        return variants
    if name is None or identifiers is None or name not in identifiers:
        raise PuzzleFormatError(f"augmentations={augmentations} for ARC votes over the task's augmented puzzles in "
                                f"the run's identifiers.json, which does not have task {name!r}; use augmentations=1")
    for index, full_name in enumerate(identifiers):
        task, tid, colours = parse_augmentation_name(full_name)
        if task == name and full_name != name and len(variants) < augmentations:
            variants.append((index, tid, colours))
    return variants


def vote(preds: np.ndarray, q_halt: np.ndarray, variants, rule: str) -> Tuple[np.ndarray, int, int]:
    """(answer grid, distinct answers, chosen variant) of one test input's variants: each prediction cropped and
    mapped back to the task's frame, then selected like evaluation's candidates (a crop that fails is dropped)."""
    grids = [crop_prediction(tokens) for tokens in preds]
    valid = np.array([g.size > 0 for g in grids])
    canvases = np.stack([encode_arc_grid(invert_augmentation(g, tid, colours)) if g.size else
                         np.zeros(ARC_SEQ_LEN, dtype=np.uint8) for g, (_, tid, colours) in zip(grids, variants)])
    confidence = 1.0 / (1.0 + np.exp(-q_halt.astype(np.float64)))
    chosen, distinct = select_candidates(canvases[None], confidence[None], valid[None], rule)
    best = int(chosen[0])
    return crop_prediction(canvases[best]).astype(np.int64), int(distinct[0]), best


# ---------------------------------------------------------------------------------------------------------------
# Text form: an ARC task file

def parse_arc_grid(value, where: str) -> np.ndarray:
    """A grid of an ARC task file (a list of rows of colours 0-9, at most 30x30), checked; `where` names it."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise PuzzleFormatError(f"{where}: a grid must be a non-empty list of rows")
    width = len(value[0])
    if width == 0 or any(len(row) != width for row in value):
        raise PuzzleFormatError(f"{where}: grid rows must be non-empty and of equal length")
    if len(value) > ARC_MAX_GRID or width > ARC_MAX_GRID:
        raise PuzzleFormatError(f"{where}: the grid is {len(value)}x{width}, larger than "
                                f"{ARC_MAX_GRID}x{ARC_MAX_GRID}")
    for r, row in enumerate(value):
        for c, x in enumerate(row):
            if type(x) is not int or not 0 <= x <= 9:
                raise PuzzleFormatError(f"{where}: colour {x!r} at row {r}, column {c} is not an integer 0-9")
    return np.array(value, dtype=np.int64)


def parse_arc_task(text: str) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """The test pairs of an ARC task JSON: [(input grid, expected output grid or None)]."""
    try:
        task = json.loads(text)
    except json.JSONDecodeError as err:
        raise PuzzleFormatError(f"the ARC task is not valid JSON: {err.msg} (line {err.lineno}, column "
                                f"{err.colno})") from None
    if not isinstance(task, dict) or not isinstance(task.get("test"), list) or not task["test"]:
        raise PuzzleFormatError('an ARC task must be a JSON object with a non-empty "test" list of {"input": grid}')
    pairs = []
    for k, pair in enumerate(task["test"]):
        if not isinstance(pair, dict) or "input" not in pair:
            raise PuzzleFormatError(f'test[{k}] must be an object with an "input" grid')
        expected = parse_arc_grid(pair["output"], f"test[{k}].output") if "output" in pair else None
        pairs.append((parse_arc_grid(pair["input"], f"test[{k}].input"), expected))
    return pairs


def format_arc(grid: np.ndarray) -> str:
    """JSON rows, one per line."""
    rows = [json.dumps(row) for row in np.asarray(grid).tolist()]
    return "[" + ",\n ".join(rows) + "]" if rows else "[]"
