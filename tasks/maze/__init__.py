"""Mazes: the Maze-Hard builder (build.py, its generator generator.py) and the codec (codec.py)."""
from tasks.maze.codec import MazeCodec as CODEC

__all__ = ["CODEC"]
