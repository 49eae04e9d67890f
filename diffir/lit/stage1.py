"""Stage 1: CPEN_S1 and DIRformer trained jointly from scratch on (LQ, GT) (paper §3.1)."""

from __future__ import annotations

import torch
from torch import nn

from .base import RestorationModule


class Stage1Module(RestorationModule):
    """``z = CPEN_S1(LQ, GT)``, ``out = DIRformer(LQ, z)``; loss = the configured set (L1 in the paper; LaMa's
    losses with a discriminator for inpainting)."""

    def compute_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out, z = self.net(batch["lq"], batch["gt"])
        return self.image_losses(out, batch, z)

    def predict(self, net: nn.Module, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        return self.restore_batch(net, batch["lq"], batch["gt"], index)
