# One entry point for set-up and checks. `make test` works on a fresh machine with only Python 3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser test test-fast demo clean

# requirements.txt also installs this project's packages in editable mode (pyproject.toml).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the visualizer's browser tests, installed once (as root; elsewhere those tests are skipped,
# and under CI=true they fail, so that CI never skips them silently).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium is not installed (apt-get install chromium, as root): the browser tests will be skipped"

# Full suite, slow end-to-end tests included (they fit in CI). One worker per core (pytest-xdist); each test file
# stays on one worker, so a file's shared fixtures (a trained run) are built once.
# The 20 slowest tests are listed at the end: where to look when the suite grows slow.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=20 tests

# Unit tests only.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

# The CPU demo: build a 6x6 Sudoku dataset, train a small TRM, show held-out puzzles it solves (see README).
# Extra arguments: make demo DEMO_ARGS="--seed 1"
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
