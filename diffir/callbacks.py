"""Callbacks and plugins for training runs: a step-based progress bar, a parameter summary, checkpoint files
written atomically and read safely, and the W&B logger without its warning."""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import loggers
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelSummary,
    ProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .checkpoint import atomic_save, read_checkpoint
from .errors import StorageError

log = logging.getLogger("diffir")


def format_metric(value: float) -> str:
    """A logged value as the run summary and the progress bar both show it: 4 decimals (PSNR 30.2543), or 4
    significant digits below 0.001 (a loss of 1.234e-05), so the bar and the summary agree."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"


def os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``: itself, or one it was raised from or while handling (a full disk during
    ``torch.save`` ends in a ``RuntimeError`` of its zip writer raised while handling the ``OSError``)."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it (a killed run never leaves a truncated file), and
    read them with :func:`read_checkpoint` (``weights_only``: resuming from a downloaded file cannot run code;
    a refused or broken file is a one-line :class:`CheckpointError`).

    A save that the file system refuses (a full disk, a quota, a folder made read-only) stops the run with one
    :class:`StorageError` line instead of chained tracebacks; the checkpoints saved before it are untouched."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        try:
            atomic_save(checkpoint, path)
        except Exception as err:
            failure = os_error_in(err)
            if failure is None:
                raise
            full = failure.errno in (errno.ENOSPC, errno.EDQUOT)
            reason = "no space left on device" if full else (failure.strerror or str(failure)).lower()
            todo = (
                "free some space on its disk (or keep fewer periodic checkpoints: callbacks.every.save_top_k=<N>)"
                if full
                else f"make {Path(path).parent} writable"
            )
            raise StorageError(
                f"cannot save checkpoint {path}: {reason}; the checkpoints saved before it are intact "
                f"(saves are atomic): {todo}, then continue with the same command and resume=auto"
            ) from err

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)


class WandbLogger(loggers.WandbLogger):
    """Lightning's W&B logger without the ``anonymous=None`` it always hands to ``wandb.init``, for which W&B
    warns on every run that "the anonymous setting has no effect" (None is W&B's default anyway)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


class Interruption(Callback):
    """A run stopped by SIGTERM (SLURM preemption, ``timeout``, a container stop) or Ctrl+C ends at a step
    boundary with ``last.ckpt`` saved (atomically, through the checkpoint plugin), and the run knows it was
    interrupted (``signal``), so the command can say so and exit non-zero instead of passing for finished.

    SIGTERM is Lightning's own path (its loops raise ``SIGTERMException`` between steps; SLURM's requeue signal
    is untouched); Ctrl+C asks for a stop after the current step, and a second Ctrl+C stops at once.
    """

    def __init__(self, last_checkpoint: str | Path) -> None:
        self.last_checkpoint = Path(last_checkpoint)
        self.signal: str | None = None
        self._previous_sigint: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.signal = "SIGINT"
        self._restore_sigint()  # a second Ctrl+C is a KeyboardInterrupt
        log.warning(
            "Ctrl+C: stopping after this step and saving %s (Ctrl+C again to stop now)", self.last_checkpoint
        )

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.signal is not None:
            trainer.should_stop = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException):
            self.signal = "SIGTERM"
            if trainer.global_step:  # raised between steps: the state is that of a finished step
                trainer.save_checkpoint(self.last_checkpoint, weights_only=False)


class StepProgressBar(TQDMProgressBar):
    """Training runs are counted in iterations: one bar ``train: step/max_steps`` with losses and speed, drawn
    once per update (a log file that is not a terminal gets one line per refresh)."""

    @property
    def train_description(self) -> str:
        return "train"

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        bar = self.train_progress_bar  # Lightning's version would reset it to the epoch's batches, "Epoch 0"
        bar.total = trainer.max_steps
        bar.initial = bar.n = trainer.global_step
        bar.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        n = trainer.global_step
        if self._should_update(n, self.train_progress_bar.total):
            self.train_progress_bar.n = n
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            self.train_progress_bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # the bar spans the whole run; Lightning's would redraw it here and again when it closes

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Lightning's metrics without ``v_num``, floats formatted by :func:`format_metric` (Lightning's own
        3 significant digits padded with zeros show ``val/psnr=30.30`` where the summary says 30.2543)."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return {k: format_metric(v) if isinstance(v, float) else v for k, v in metrics.items()}


class ParameterSummary(ModelSummary):
    """The parameters of each part of the training module (net, EMA copy, teacher, ...), trainable and total.

    It replaces Lightning's table, whose FLOPs column reads 0 (the module has no ``example_input_array``);
    ``python -m diffir.summary`` counts the MACs of each component at a stated input size.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        rows = [("part", "type", "parameters", "trainable")]
        for name, module in pl_module.named_children():
            params = list(module.parameters())
            trainable = sum(p.numel() for p in params if p.requires_grad)
            rows.append(
                (name, type(module).__name__, f"{sum(p.numel() for p in params):,}", f"{trainable:,}")
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        log.info("\n%s\n(MACs per component: python -m diffir.summary)", "\n".join(lines))


def usable_callbacks(
    callbacks: Sequence[Callback], *, has_logger: bool, progress_bar: bool, model_summary: bool
) -> list[Callback]:
    """Drop the callbacks a run's settings switch off, instead of letting Lightning refuse the run:
    ``logger=none`` (no learning-rate monitor), ``trainer.enable_progress_bar=false``,
    ``trainer.enable_model_summary=false``."""
    unusable: tuple[type, ...] = (
        *(() if has_logger else (LearningRateMonitor,)),
        *(() if progress_bar else (ProgressBar,)),
        *(() if model_summary else (ModelSummary,)),
    )
    return [c for c in callbacks if not isinstance(c, unusable)]
