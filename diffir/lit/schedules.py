"""Learning-rate schedules of the official runs, expressed directly (docs/method.md §3.4).

The official RealSR / deblurring stage-2 code overwrites the scheduler's lr by hand inside the step; here
the effective curve is a scheduler of its own, and every scheduler is stepped once per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class StepDecayLR(LRScheduler):
    """``lr = base · gamma^((it - start) // period)`` for ``it >= start`` (and ``base`` before).

    ``it`` is BasicSR's 1-based iteration, the one the official manual formulas use: the update of training
    step ``s`` (0-based, after ``s`` scheduler steps) is iteration ``s + 1``.
    RealSR S2: ``optimizer_e`` (start 0, period 60k, γ 0.1), ``optimizer_g`` (start 100k, period 600k, γ 0.5).
    """

    def __init__(
        self, optimizer: Optimizer, period: int, gamma: float, start: int = 0, last_epoch: int = -1
    ) -> None:
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.period, self.gamma, self.start = period, gamma, start
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        decays = max(0, self.last_epoch + 1 - self.start) // self.period
        return [base * self.gamma**decays for base in self.base_lrs]


class CosineRestartCyclicLR(LRScheduler):
    """BasicSR's ``CosineAnnealingRestartCyclicLR``: cosine periods, each from the base lr (times its restart
    weight) to its own ``eta_min``. Deblurring S1: periods [92000, 208000], eta_mins [2.85e-4, 1e-6]."""

    def __init__(
        self,
        optimizer: Optimizer,
        periods: Sequence[int],
        eta_mins: Sequence[float],
        restart_weights: Sequence[float] | None = None,
        last_epoch: int = -1,
    ) -> None:
        self.periods, self.eta_mins = list(periods), list(eta_mins)
        self.restart_weights = list(restart_weights or [1.0] * len(self.periods))
        if not len(self.periods) == len(self.eta_mins) == len(self.restart_weights):
            raise ValueError("periods, eta_mins and restart_weights must have the same length")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        it, start = self.last_epoch, 0
        for index, period in enumerate(self.periods):
            if it <= start + period or index == len(self.periods) - 1:
                break
            start += period
        progress = min(1.0, (it - start) / self.periods[index])
        weight, eta_min = self.restart_weights[index], self.eta_mins[index]
        return [
            eta_min + weight * 0.5 * (base - eta_min) * (1 + math.cos(math.pi * progress))
            for base in self.base_lrs
        ]
