"""Sudoku: the 9x9 Sudoku-Extreme builder (build.py, its generator generator.py), small N x N Sudokus with unique
solutions (build_mini.py), and the codec (codec.py)."""
from tasks.sudoku.codec import SudokuCodec as CODEC

__all__ = ["CODEC"]
