# The two Quick start commands: `make demo` and `make test`. Both create .venv and install diffir first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-other-cpu test-fast lint

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,export,app]'
	touch $@

demo: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m diffir.runs.demo

PYTEST := WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python -m pytest
# pytest-xdist, one worker per core: the end-to-end tests are mostly single-threaded (subprocesses starting
# Python, tiny models); 647 -> 455 s for the whole suite on 2 cores. The numerical tests alone run faster in
# one process (their torch ops use both cores): 95 s there, 132 s with two workers.
PARALLEL := -n auto --dist worksteal

# make test: the full suite, as CI runs it, and beside it (one thread, using the cores the suite leaves idle
# while its tests wait on processes they started) the numerical tests again as a CPU without AVX2 computes;
# that run's report follows the suite's. Fails if either fails.
test: setup
	@OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-other-cpu > .test-other-cpu.log 2>&1 & other=$$!; \
	$(PYTEST) $(PARALLEL) --durations=15; suite=$$?; \
	wait $$other; cpu=$$?; \
	echo "--- make test-other-cpu (run beside the suite):"; cat .test-other-cpu.log; rm -f .test-other-cpu.log; \
	exit $$(( suite || cpu ))

test-other-cpu: setup  # summation-order dependence fails here, not on a user's machine with another CPU
	ATEN_CPU_CAPABILITY=default $(PYTEST) -m "numerics and not slow" --durations=5

test-fast: setup  # the edit-test loop: everything but the end-to-end (slow) tests
	$(PYTEST) $(PARALLEL) -m "not slow"

lint: setup
	$(BIN)/ruff check diffir tests bench *.py
	$(BIN)/ruff format --check diffir tests bench *.py
