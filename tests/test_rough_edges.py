"""Rough edges a new user meets on the README's path: what a run says (its progress bar, its noise, its help
pages) and how it stops when the disk or the folder lets it down."""

from __future__ import annotations

import io
from types import SimpleNamespace

from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from diffir.callbacks import StepProgressBar, format_metric


def test_the_progress_bar_shows_metrics_as_precisely_as_the_summary():
    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={"val/psnr": 30.2543, "train/loss": 1.234e-5})
    bar = Tqdm(total=4, file=io.StringIO())
    bar.set_postfix(StepProgressBar().get_metrics(trainer, None))
    assert format_metric(30.2543) == "30.2543"  # the summary's "last validation" and "best checkpoint"
    assert "val/psnr=30.2543" in bar.postfix  # Lightning's own formatting shows val/psnr=30.30
    assert "train/loss=1.234e-05" in bar.postfix
