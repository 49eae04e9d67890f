"""Our discriminators, perceptual / GAN / LaMa losses and Real-ESRGAN degradations compute the official
functions: one test per reference file, tolerances of the reference README.

The directory (``$DIFFIR_OFFICIAL_GAN_REFS``, default ``../shared/reference/official_gan``) is scanned, so a
new ``*.pt`` file there is tested the same way (test ids carry the file's stem); a file whose ``kind`` has no
check fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import SHARED, shared_path
from parity.degradations import CHECKS as DEGRADATION_CHECKS
from parity.losses import CHECKS as LOSS_CHECKS

CHECKS = {**DEGRADATION_CHECKS, **LOSS_CHECKS}


def refs_dir() -> Path:
    return Path(os.environ.get("DIFFIR_OFFICIAL_GAN_REFS", SHARED / "reference" / "official_gan"))


REF_FILES = sorted(refs_dir().glob("*.pt"))


def test_reference_files_present():
    directory = shared_path("DIFFIR_OFFICIAL_GAN_REFS", refs_dir(), "GAN parity vectors")
    assert list(directory.glob("*.pt")), f"no *.pt parity files in {directory}"


@pytest.mark.parametrize("ref_path", REF_FILES, ids=[p.stem for p in REF_FILES])
def test_official_gan_parity(ref_path, one_thread):
    ref = torch.load(ref_path, map_location="cpu", weights_only=True)
    kind = ref.get("kind")
    assert kind in CHECKS, f"{ref_path.name}: no parity check for kind {kind!r} (known: {sorted(CHECKS)})"
    CHECKS[kind](ref)
