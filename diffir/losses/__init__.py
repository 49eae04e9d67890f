"""Losses, composable from config: each takes the step's tensors by keyword and returns a scalar.

A loss set is a mapping ``name -> loss module``; the total is the sum (each loss carries its ``weight``),
and each term is logged under its name. The perceptual and adversarial losses plug in the same way.
"""

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


def prior_kl(z_student: torch.Tensor, z_teacher: torch.Tensor, temperature: float = 0.15) -> torch.Tensor:
    """The official KD term: KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), batch-mean; logged, not optimised, there."""
    return F.kl_div(
        F.log_softmax(z_student / temperature, dim=1),
        F.softmax(z_teacher.detach() / temperature, dim=1),
        reduction="batchmean",
    )


class PriorLoss(nn.Module):
    """Matching the estimated IPR ẑ to the teacher's z (paper's L_diff). ``kind``: l1 (official), l2 or kl."""

    KINDS = ("l1", "l2", "kl")

    def __init__(self, kind: str = "l1", weight: float = 1.0, temperature: float = 0.15) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"prior loss kind must be one of {self.KINDS}, got {kind!r}")
        self.kind, self.weight, self.temperature = kind, weight, temperature

    def forward(self, *, z_hat: torch.Tensor, z: torch.Tensor, **_) -> torch.Tensor:
        z = z.detach()
        if self.kind == "kl":
            return self.weight * prior_kl(z_hat, z, self.temperature)
        return self.weight * CRITERIA[self.kind](z_hat, z)
