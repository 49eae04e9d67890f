"""Losses computed through a fixed pretrained network (VGG19, LaMa's ADE20k encoder)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class FrozenNetworkLoss(nn.Module):
    """A loss whose feature network is frozen and held *outside* the module tree: it follows the loss to a
    device or dtype (``.to()``, ``.cuda()``), but stays out of ``state_dict()`` — every training checkpoint
    would otherwise carry the 80–95 MB of fixed ImageNet / ADE20k weights — out of ``parameters()`` (optimisers,
    DDP) and in eval mode whatever its parent's ``.train()`` does (frozen BatchNorm statistics)."""

    def hold(self, name: str, network: nn.Module) -> None:
        """Keep ``network`` as attribute ``name`` (not a submodule), frozen and in eval mode."""
        object.__setattr__(self, name, network.requires_grad_(False).eval())
        self._held = (*getattr(self, "_held", ()), name)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> FrozenNetworkLoss:
        for name in getattr(self, "_held", ()):
            getattr(self, name)._apply(fn)
        return super()._apply(fn, recurse)
