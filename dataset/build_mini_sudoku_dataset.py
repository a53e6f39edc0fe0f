"""The small Sudoku (4x4, 6x6...) builder under the name the README and the original trainers use: `python
dataset/build_mini_sudoku_dataset.py ...` runs tasks/sudoku/build_mini.py (as `python -m tasks.sudoku.build_mini
...` does)."""
import sys

from tasks.sudoku.build_mini import main
from utils.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command(main))
