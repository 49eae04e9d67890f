"""Shared test fixtures: where ../shared lives, and the rule for tests that need it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DIFFIR_SHARED", REPO.parent / "shared"))

os.environ.setdefault("WANDB_MODE", "offline")

# Under pytest-xdist (make test: one worker per core) each worker, and every process a test starts, computes on
# one thread: two workers each running a thread per core would oversubscribe the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The modules whose results depend on float summation order (parity with the official code, the fast paths
# against the default formulation, metrics, losses, resampling, degradations): marked ``numerics``, so that
# ``make test`` repeats them with ATEN_CPU_CAPABILITY=default, what a CPU without AVX2 computes.
NUMERICAL_MODULES = {
    "test_official_parity",
    "test_official_gan_parity",
    "test_fast_paths",
    "test_compat",
    "test_models",
    "test_inference",
    "test_baselines",
    "test_schedules_and_sampler",
    "test_imresize",
    "test_metrics",
    "test_losses",
    "test_realesrgan",
    "test_api",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in NUMERICAL_MODULES:
            item.add_marker(pytest.mark.numerics)
    # The end-to-end (slow) tests first, in their module order: under xdist a long test that starts last
    # leaves the other core idle while it runs.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A run of the numerical tests alone (make test-other-cpu: ``-m "numerics ..."``) collects only their
    modules: importing the others (Gradio, ONNX, the CLI tests) would cost it seconds for nothing."""
    markexpr = config.getoption("markexpr") or ""
    if markexpr.startswith("numerics") and collection_path.suffix == ".py":
        name = collection_path.stem
        return name.startswith("test_") and name not in NUMERICAL_MODULES
    return None


def shared_path(env_var: str, default: Path, what: str) -> Path:
    """A directory from ``../shared`` (or ``$env_var``): skipped with a reason for users who cloned only the
    project, but a failure in CI (``CI=true``), where ../shared is always present."""
    path = Path(os.environ.get(env_var, default))
    if not path.exists():
        reason = f"{what} not found at {path} (set {env_var} to its location)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must have ../shared beside the checkout")
        pytest.skip(reason)
    return path


def cases_or_reason(cases: list, reason: str, arity: int = 1) -> list:
    """Parametrize over ``cases``, or over one skipped case (of ``arity`` arguments) that says why there are
    none (pytest alone says only "got empty parameter set"); in CI, where ../shared is present, none is an error."""
    if cases:
        return cases
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"CI: {reason}")
    return [pytest.param(*[None] * arity, marks=pytest.mark.skip(reason=reason))]


def official_refs_dir() -> Path:
    return Path(os.environ.get("DIFFIR_OFFICIAL_REFS", SHARED / "reference" / "official_diffir"))


@pytest.fixture
def official_refs() -> Path:
    return shared_path("DIFFIR_OFFICIAL_REFS", official_refs_dir(), "official DiffIR parity vectors")


@pytest.fixture
def benchmarks_dir() -> Path:
    return shared_path("DIFFIR_BENCHMARKS", SHARED / "benchmarks", "the Set5/Set14 benchmark images")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are all per-operator overhead: one thread avoids thread barriers on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
