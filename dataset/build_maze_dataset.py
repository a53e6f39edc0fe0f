"""The Maze-Hard builder under the name the README and the original trainers use: `python dataset/build_maze_dataset.py
...` runs tasks/maze/build.py (as `python -m tasks.maze.build ...` does)."""
import sys

from tasks.maze.build import main
from utils.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command(main))
