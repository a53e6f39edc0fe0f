"""The ARC-AGI builder under the name the README and the original trainers use: `python dataset/build_arc_dataset.py
...` runs tasks/arc/build.py (as `python -m tasks.arc.build ...` does)."""
import sys

from tasks.arc.build import main
from utils.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command(main))
