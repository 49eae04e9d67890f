"""The exponential moving average of the network's parameters (docs/method.md §3.5).

BasicSR averages parameters only (not buffers), every iteration: ``ema = d·ema + (1-d)·param``. The EMA copy
is what validation scores and what every checkpoint's model record holds.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(net: nn.Module, decay: float) -> nn.Module | None:
    """A frozen copy of ``net`` in eval mode to average into, or None when ``decay`` is 0 (no EMA)."""
    return copy.deepcopy(net).requires_grad_(False).eval() if decay > 0 else None


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema = decay·ema + (1-decay)·param`` over the parameters of ``net``, in place."""
    for average, param in zip(ema.parameters(), net.parameters(), strict=True):
        average.lerp_(param.detach(), 1.0 - decay)
