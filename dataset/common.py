"""Shared pieces of the HRM dataset format (docs/DESIGN.md §6): metadata and the dihedral group of grid transforms."""
from typing import Any, Dict, List, Optional

import numpy as np
import pydantic

# Label value ignored by the loss (the torch cross-entropy convention); loaders map ignore_label_id to it.
IGNORE_LABEL_ID = -100


class PuzzleDatasetMetadata(pydantic.BaseModel):
    """Contents of `<split>/dataset.json`; field names are those of the original HRM datasets."""

    model_config = pydantic.ConfigDict(extra="forbid")

    pad_id: int
    ignore_label_id: Optional[int]
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    sets: List[str]
    # Written by some later upstream builders; not needed here, accepted so their datasets load.
    total_puzzles: Optional[int] = None
    # The task (a folder of tasks/, e.g. "sudoku") and what its codec needs beyond the shapes (a Sudoku's box), written
    # by this project's builders; a dataset built elsewhere has none (tasks/__init__.py dataset_codec). The original
    # loaders ignore keys they do not know, so the datasets stay interchangeable.
    task: Optional[str] = None
    task_options: Optional[Dict[str, Any]] = None


# The 8 symmetries of the square, numbered as in the original HRM builders so that augmented
# datasets and the names that encode their transform ids stay interchangeable.
def dihedral_transform(arr: np.ndarray, tid: int) -> np.ndarray:
    """Apply dihedral transform `tid` (0..7) to a 2-D grid."""
    if tid == 0:
        return arr
    if tid == 1:
        return np.rot90(arr, k=1)
    if tid == 2:
        return np.rot90(arr, k=2)
    if tid == 3:
        return np.rot90(arr, k=3)
    if tid == 4:
        return np.fliplr(arr)
    if tid == 5:
        return np.flipud(arr)
    if tid == 6:
        return arr.T
    if tid == 7:
        return np.fliplr(np.rot90(arr, k=1))
    raise ValueError(f"dihedral transform id must be in 0..7, got {tid}")


# DIHEDRAL_INVERSE[t] undoes t: rotations by 90 and 270 degrees invert each other, the rest are involutions.
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def inverse_dihedral_transform(arr: np.ndarray, tid: int) -> np.ndarray:
    """Undo `dihedral_transform(arr, tid)`."""
    return dihedral_transform(arr, DIHEDRAL_INVERSE[tid])
