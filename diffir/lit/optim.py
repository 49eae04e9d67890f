"""Optimisers from the config's factories (docs/method.md §3.3: Adam for every network of every stage).

``build_optimizer`` holds the one policy of this project: Adam and AdamW get torch's fused kernel unless the
config chooses an implementation itself. ``optimizer_entry`` pairs an optimiser with its scheduler as
Lightning's ``configure_optimizers`` takes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def build_optimizer(factory: Callable[..., torch.optim.Optimizer], params: Iterable) -> torch.optim.Optimizer:
    """``factory(params=params)``; Adam and AdamW get torch's fused kernel (the same update in one pass over
    all parameters, ~2x faster than the per-parameter loop on CPU) unless the config sets ``fused`` or
    ``foreach`` itself."""
    params = list(params)
    options = getattr(factory, "keywords", {})
    if (
        getattr(factory, "func", None) in (torch.optim.Adam, torch.optim.AdamW)
        and not {"fused", "foreach"} & options.keys()
        and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    ):
        return factory(params=params, fused=True)
    return factory(params=params)


def optimizer_entry(optimizer: torch.optim.Optimizer, scheduler: Callable[..., Any] | None) -> dict:
    """``{"optimizer": ..., "lr_scheduler": {"scheduler": scheduler(optimizer=...)}}`` (no scheduler: none)."""
    entry: dict[str, Any] = {"optimizer": optimizer}
    if scheduler is not None:
        entry["lr_scheduler"] = {"scheduler": scheduler(optimizer=optimizer)}
    return entry
