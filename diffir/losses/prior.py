"""Losses on the IPR vector: matching the student's ẑ to the frozen teacher's z (paper's L_diff)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pixel import CRITERIA


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
