"""A non-editable install (a wheel) carries the Hydra configs and the console scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    leftovers = [p for p in (REPO / "build", REPO / "diffir.egg-info") if not p.exists()]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    for folder in leftovers:  # setuptools builds in the checkout: leave it as it was
        shutil.rmtree(folder, ignore_errors=True)
    (path,) = out.glob("diffir-*.whl")
    return path


def test_wheel_composes_configs_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # a pure-Python wheel installs by unpacking
    assert (site / "diffir" / "conf" / "train.yaml").is_file()
    script = (
        "import diffir, diffir.config as c; "
        "cfg = c.compose_config(['task=deblur', 'stage=2']); "
        "print(diffir.__file__); print(cfg.task_name, cfg.run.max_steps)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    module_file, values = result.stdout.strip().splitlines()[-2:]
    assert Path(module_file).is_relative_to(site), "the installed package, not the checkout, was imported"
    assert values.split()[0] == "deblur"


def test_wheel_declares_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        entry_points = archive.read(name).decode()
    for script in ("diffir-train", "diffir-eval", "diffir-infer"):
        assert f"{script} = diffir.cli:" in entry_points
