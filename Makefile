# The two Quick start commands: `make demo` and `make test`. Both create .venv and install diffir first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m diffir.demo

test: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check diffir tests bench *.py
	$(BIN)/ruff format --check diffir tests bench *.py
