"""The colour rules' codec (tasks/rules/build.py): S x S grids of C colours, colour c -> token c + 1, 0 pad; each task
recolours every cell by its own permutation of the colours, which only the task's puzzle identifier tells. Group:
the 8 dihedral transforms of the grid (a cell-by-cell recolouring commutes with any move of the cells; a colour
permutation would change the rule). No check: any grid of colours may be an answer. Only this project builds these
datasets, and its builder names the task, so an unlabelled dataset is never taken for one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dataset.common import PuzzleDatasetMetadata, dihedral_transform
from tasks.base import TaskCodec, TaskError, TokenPermutation, square_side


class RulesCodec(TaskCodec):
    name = "rules"
    title = "colour-rule task"
    kinds = ("dihedral",)

    def __init__(self, side: int, colours: int):
        self.side, self.colours = side, colours

    @classmethod
    def from_metadata(cls, metadata: PuzzleDatasetMetadata) -> "RulesCodec":
        side = square_side(metadata.seq_len)
        if side is None or metadata.vocab_size < 2:
            raise TaskError(f"a colour-rule dataset has square grids (seq_len S x S) and vocab_size colours + 1; this "
                            f"one has vocab_size {metadata.vocab_size} and seq_len {metadata.seq_len}")
        return cls(side, metadata.vocab_size - 1)

    def draw(self, rng: np.random.Generator, kinds: Sequence[str]) -> TokenPermutation:
        tid = int(rng.integers(0, 8)) if "dihedral" in kinds else 0
        cells = np.arange(self.side * self.side).reshape(self.side, self.side)
        return TokenPermutation(dihedral_transform(cells, tid).reshape(-1).copy(), np.arange(self.colours + 1))
