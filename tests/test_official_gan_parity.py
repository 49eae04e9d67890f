"""Our discriminators, perceptual / GAN / LaMa losses and Real-ESRGAN degradations compute the official
functions: one test per reference file, tolerances of the reference README.

The directory (``$DIFFIR_OFFICIAL_GAN_REFS``, default ``../shared/reference/official_gan``) is scanned, so a
new ``*.pt`` file there is tested the same way (test ids carry the file's stem); a file whose ``kind`` has no
check fails. The small files among them also ship in ``tests/data/official_gan_tiny`` (byte copies), so a
clone without ``../shared`` still checks the kernels, filter2d, Gaussian noise, DiffJPEG and the GAN loss.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHARED, shared_path
from parity.degradations import CHECKS as DEGRADATION_CHECKS
from parity.losses import CHECKS as LOSS_CHECKS

CHECKS = {**DEGRADATION_CHECKS, **LOSS_CHECKS}
TINY_REFS = REPO / "tests" / "data" / "official_gan_tiny"


def refs_dir() -> Path:
    return Path(os.environ.get("DIFFIR_OFFICIAL_GAN_REFS", SHARED / "reference" / "official_gan"))


def _ref_files() -> list[Path]:
    """Every shared file; the shipped copies stand in for the shared files that are absent."""
    shared = {p.name: p for p in refs_dir().glob("*.pt")}
    return sorted({**{p.name: p for p in TINY_REFS.glob("*.pt")}, **shared}.values(), key=lambda p: p.name)


REF_FILES = _ref_files()


def test_reference_files_present():
    directory = shared_path("DIFFIR_OFFICIAL_GAN_REFS", refs_dir(), "GAN parity vectors")
    assert list(directory.glob("*.pt")), f"no *.pt parity files in {directory}"
    for copy in TINY_REFS.glob("*.pt"):  # the shipped copies are the shared files, byte for byte
        assert copy.read_bytes() == (directory / copy.name).read_bytes(), f"{copy} differs from ../shared"


@pytest.mark.parametrize("ref_path", REF_FILES, ids=[p.stem for p in REF_FILES])
def test_official_gan_parity(ref_path, one_thread):
    ref = torch.load(ref_path, map_location="cpu", weights_only=True)
    kind = ref.get("kind")
    assert kind in CHECKS, f"{ref_path.name}: no parity check for kind {kind!r} (known: {sorted(CHECKS)})"
    CHECKS[kind](ref)
