# The two Quick start commands: `make demo` and `make test`. Both create .venv and install diffir first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m diffir.demo

test: setup  # the full suite, as CI runs it
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest

test-fast: setup  # the edit-test loop: everything but the end-to-end (slow) tests
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check diffir tests bench *.py
	$(BIN)/ruff format --check diffir tests bench *.py
