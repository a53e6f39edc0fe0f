"""The solve CLI's former name: `python -m utils.solve ...` runs `python -m tools.solve ...` (tools/solve.py)."""
import sys

from tools.solve import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
