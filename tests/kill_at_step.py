"""A callback that signals its own training process at a chosen step, for the interruption tests: the signal
lands at that step on any machine, where polling the file system for a checkpoint can miss it on a fast one.

Added on the command line: ``+callbacks.kill._target_=kill_at_step.KillAtStep +callbacks.kill.step=7``
(``+callbacks.kill.signal=SIGTERM`` for another signal) with ``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import signal as signals

from lightning.pytorch import Callback, LightningModule, Trainer


class KillAtStep(Callback):
    """Send ``signal`` (a name: SIGKILL, SIGTERM, SIGINT) to this process when the training batch after
    ``step`` optimiser steps starts."""

    def __init__(self, step: int, signal: str = "SIGKILL") -> None:
        self.step = step
        self.signal = getattr(signals, signal)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)
