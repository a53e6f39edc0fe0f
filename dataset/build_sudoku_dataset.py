"""The Sudoku-Extreme (9x9) builder under the name the README and the original trainers use: `python
dataset/build_sudoku_dataset.py ...` runs tasks/sudoku/build.py (as `python -m tasks.sudoku.build ...` does)."""
import sys

from tasks.sudoku.build import main
from utils.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command(main))
