"""Pixel reconstruction loss (paper: L1), optionally weighting known and missing pixels apart."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CRITERIA = {"l1": F.l1_loss, "l2": F.mse_loss}


class PixelLoss(nn.Module):
    """Reconstruction loss on the restored image (paper: L1).

    For inpainting, known and missing pixels can be weighted separately (LaMa weights known 10,
    missing 0, and relies on its adversarial and perceptual losses for the hole).
    """

    def __init__(
        self,
        criterion: str = "l1",
        weight: float = 1.0,
        weight_known: float = 1.0,
        weight_missing: float = 1.0,
    ) -> None:
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(f"pixel loss criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
        self.criterion, self.weight = criterion, weight
        self.weight_known, self.weight_missing = weight_known, weight_missing

    def forward(
        self, *, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None, **_
    ) -> torch.Tensor:
        if mask is None or (self.weight_known == self.weight_missing == 1.0):
            return self.weight * CRITERIA[self.criterion](out, gt)
        per_pixel = CRITERIA[self.criterion](out, gt, reduction="none")
        weights = mask * self.weight_missing + (1 - mask) * self.weight_known
        return self.weight * (per_pixel * weights).mean()
