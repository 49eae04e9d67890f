# The two Quick start commands: `make demo` and `make test`. Both create .venv and install diffir first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-other-cpu test-fast lint

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m diffir.demo

test: setup  # the full suite, as CI runs it, then the numerical tests again as a CPU without AVX2 computes
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-other-cpu

test-other-cpu: setup  # summation-order dependence fails here, not on a user's machine with another CPU
	ATEN_CPU_CAPABILITY=default WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest -m "numerics and not slow" --durations=5

test-fast: setup  # the edit-test loop: everything but the end-to-end (slow) tests
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check diffir tests bench *.py
	$(BIN)/ruff format --check diffir tests bench *.py
