# One entry point for set-up and checks. `make test` works on a fresh machine with only Python 3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# Full suite, slow end-to-end tests included (they fit in CI).
test: $(STAMP)
	$(BIN)/python -m pytest -q tests

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
