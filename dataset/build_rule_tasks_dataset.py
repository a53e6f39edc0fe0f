"""The colour-rule tasks builder under the name the README and the original trainers use: `python
dataset/build_rule_tasks_dataset.py ...` runs tasks/rules/build.py (as `python -m tasks.rules.build ...` does)."""
import sys

from tasks.rules.build import main
from utils.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command(main))
