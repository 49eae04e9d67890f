"""Rough edges a new user meets on the README's path: what a run says (its progress bar, its noise, its help
pages) and how it stops when the disk or the folder lets it down."""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from test_training import overrides

from diffir.callbacks import StepProgressBar, format_metric
from diffir.checkpoint import read_checkpoint
from diffir.config import compose_config
from diffir.errors import StorageError
from diffir.training import train

REPO = Path(__file__).resolve().parents[1]
NOISE = ("litlogger", "LeafSpec", "anonymous setting", "Images sizes do not match", "logging interval")


def run_cli(script: str, *args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """``python <script> <args>`` from ``cwd`` (one thread): its exit status and everything it printed."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_progress_bar_shows_metrics_as_precisely_as_the_summary():
    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={"val/psnr": 30.2543, "train/loss": 1.234e-5})
    bar = Tqdm(total=4, file=io.StringIO())
    bar.set_postfix(StepProgressBar().get_metrics(trainer, None))
    assert format_metric(30.2543) == "30.2543"  # the summary's "last validation" and "best checkpoint"
    assert "val/psnr=30.2543" in bar.postfix  # Lightning's own formatting shows val/psnr=30.30
    assert "train/loss=1.234e-05" in bar.postfix


@pytest.mark.slow
def test_a_run_prints_no_third_party_noise_and_its_checkpoints_alike(tmp_path):
    """The litlogger tip, torch's LeafSpec deprecation (through Lightning), W&B's anonymous setting and its
    mismatched image sizes (validation panels of photos of different sizes), Lightning's logging interval in
    debug=fast; the best checkpoint printed absolute beside a relative last one."""
    proc = run_cli(
        "train.py", "task=sr", "stage=1", "debug=fast", "logger=wandb", "stage1.max_steps=2",
        "data.val_center_crop=null", "paths.experiments_dir=exp", "name=t", "trainer.enable_progress_bar=false",
        cwd=tmp_path, WANDB_MODE="offline", WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
    )  # fmt: skip
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-3000:]
    for noise in NOISE:
        assert noise not in printed
    last, best = (Path(re.search(rf"{kind} checkpoint: (\S+)", printed)[1]) for kind in ("last", "best"))
    assert last.parent == best.parent == Path("exp/t/stage1/checkpoints")


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_earlier_checkpoints(
    tmp_path, monkeypatch
):
    real_save = torch.save

    def full_disk_at_step_4(obj: object, f: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        if isinstance(obj, dict) and obj.get("global_step") == 4:
            f.write(b"PK\x03\x04 partial")  # as torch does: its zip writer fails while handling the OSError
            failure = RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 2722560 vs 2722448"
            )
            failure.__context__ = OSError(errno.ENOSPC, "No space left on device")
            raise failure
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_at_step_4)
    with pytest.raises(
        StorageError,
        match=r"cannot save checkpoint \S+step0000004\S*\.ckpt: no space left on device; the checkpoints saved "
        r"before it are intact .*then continue with the same command and resume=auto",
    ) as err:
        train(compose_config(overrides(tmp_path, "sr", 1, 4, "stage1.val_every=2")))
    assert "\n" not in str(err.value)
    checkpoints = tmp_path / "test" / "stage1" / "checkpoints"
    assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 2
    assert not list(checkpoints.glob(".*.tmp")), "the partial save was left behind"
