"""What a task is to the rest of the trainer (docs/DESIGN.md §6, §9): its codec.

A task (Sudoku, maze, ARC, the colour rules) lives in one folder, tasks/<name>/: its builder, its generator, and its
codec, a subclass of `TaskCodec` named `CODEC` in the folder's `__init__.py` (tasks/__init__.py finds every folder
that has one). The codec knows, for the datasets of its task:

  * how token rows are laid out (`from_metadata`, `options`: what dataset.json's `task_options` hold);
  * its symmetry group, the members that act on token rows (`kinds`, `draw`), each with its inverse
    (`TokenPermutation`), which test-time augmentation votes over;
  * the check a valid answer passes (`check`; a task without one leaves it out), which test-time compute can filter
    or select by, and which evaluation reports as `check_metric` where the task names one;
  * whether an unlabelled dataset (one built elsewhere, e.g. by the original builders) is of this task
    (`recognises`, from its shape);
  * the text form of its puzzles, for the solve CLI (`reads_text`, `solve_text`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from dataset.common import PuzzleDatasetMetadata
from utils.errors import ConfigError, UserError


class TaskError(ConfigError):
    """A dataset whose task cannot be told, or that the named task cannot serve; the message says what to give."""


class PuzzleFormatError(UserError, ValueError):
    """A puzzle in text form that cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class TokenPermutation:
    """A group member acting on token rows: augmented[..., i] = token_map[original[..., positions[i]]]."""

    positions: np.ndarray  # (seq_len,) the original position of each augmented position
    token_map: np.ndarray  # (vocab_size,)

    def apply(self, rows: np.ndarray) -> np.ndarray:
        return self.token_map[np.asarray(rows)[..., self.positions]]

    def invert(self, rows: np.ndarray) -> np.ndarray:
        """Map rows of the augmented frame (e.g. predictions) back to the original frame."""
        inverse_positions = np.argsort(self.positions)
        inverse_tokens = np.argsort(self.token_map)
        return inverse_tokens[np.asarray(rows)[..., inverse_positions]]

    @classmethod
    def identity(cls, seq_len: int, vocab_size: int) -> "TokenPermutation":
        return cls(np.arange(seq_len), np.arange(vocab_size))


def square_side(seq_len: int) -> Optional[int]:
    """The side of a square grid of `seq_len` cells, None when seq_len is not a square."""
    side = math.isqrt(seq_len)
    return side if side * side == seq_len else None


class Prediction(NamedTuple):
    """What the solve CLI's model answers for a batch of token rows: the selected answer of each row (token rows),
    its q_halt logit, the distinct answers among its variants, and the number of variants."""
    preds: np.ndarray
    q_halt: np.ndarray
    candidates: np.ndarray
    variants: int


@dataclass
class SolveRequest:
    """One puzzle in text form for a task's `solve_text`, with the model that answers it (tools/solve.py)."""

    text: str
    file_name: Optional[str]
    vocab_size: int
    seq_len: int
    # predict(token rows, puzzle identifiers, augmentations, codec): the answers, with the command's test-time
    # compute (its trajectories, segments and selection; `augmentations` members of `codec`'s group).
    predict: Callable[[np.ndarray, Sequence[int], int, "TaskCodec"], Prediction]
    identifiers: Optional[List[str]]  # the run's identifiers.json, when its dataset is here
    blank_identifier: int
    segments: int                     # ACT segments each answer runs
    augmentations: int                # test_time.augmentations
    select: List[str]                 # test_time.select's ranking criteria (valid aside)
    options: Dict[str, Optional[str]]  # the command's task options: box (Sudoku), name (ARC)
    say: Callable[[str], None]

    def say_halting(self, q_halt: float, candidates: int = 1, variants: int = 1) -> None:
        self.say(f"segments: {self.segments}  q_halt logit: {q_halt:+.2f} (the model "
                 f"{'is' if q_halt > 0 else 'is not'} confident its answer is right)")
        if variants > 1:
            self.say(f"test-time compute: {variants} variants gave {candidates} distinct answer(s); the selected one "
                     f"is shown")


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


class TaskCodec:
    """A task's token layout, symmetry group on token rows, answer check and text form (see the module docstring).
    Subclasses set `name` and override what their task has."""

    name: ClassVar[str]
    title: ClassVar[str] = ""            # how messages name one puzzle of the task ("Sudoku", "maze", "ARC task")
    kinds: Tuple[str, ...] = ()          # kinds of group members that act on token rows (test_time.augmentation_kinds)
    no_kinds_because: ClassVar[str] = ""  # why `kinds` is empty, when it is
    check_metric: ClassVar[Optional[str]] = None  # evaluation reports the fraction of answers passing `check` so

    # -- a dataset of the task -----------------------------------------------------------------------------------

    @classmethod
    def from_metadata(cls, metadata: PuzzleDatasetMetadata) -> "TaskCodec":
        """The codec of a dataset of this task (its dataset.json's task_options included); a TaskError when its
        vocabulary or sequence length cannot be this task's."""
        raise NotImplementedError

    @classmethod
    def recognises(cls, metadata: PuzzleDatasetMetadata) -> bool:
        """Whether a dataset that does not name its task (one built elsewhere) has the shape this task's original
        builder writes. A task that only this project builds recognises none."""
        return False

    def options(self) -> dict:
        """What dataset.json's `task_options` hold for this codec (from_metadata reads them back)."""
        return {}

    # -- symmetries and the answer check -------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, kinds: Sequence[str]) -> TokenPermutation:
        """A random member of the subgroup made of `kinds` (a subset of self.kinds)."""
        raise NotImplementedError

    @property
    def has_check(self) -> bool:
        return type(self).check is not TaskCodec.check

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """(rows,) bool: whether each answer (tokens, original frame) is a valid answer to its input."""
        raise NotImplementedError

    # -- the solve CLI -------------------------------------------------------------------------------------------

    @classmethod
    def reads_text(cls, text: str, file_name: Optional[str]) -> bool:
        """Whether a puzzle in text form looks like one of this task's (the solve CLI's guess without a dataset)."""
        return False

    @classmethod
    def text_seq_len(cls, text: str) -> Optional[int]:
        """The sequence length of a model for this puzzle text (when the run's dataset is not here)."""
        return None

    def solve_text(self, request: SolveRequest) -> bool:
        """Read the puzzle, have the model answer it, print the answer and its checks; whether it is valid."""
        raise TaskError(f"the solve CLI reads no {self.name} puzzles in text form")
