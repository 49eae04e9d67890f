"""Stage 2: CPEN_S2 and the IPR denoiser learn the prior from the LQ, jointly with DIRformer (paper §3.2).

The frozen stage-1 CPEN is the teacher: ``z = CPEN_S1(LQ, GT)`` (no gradient). The student estimates ẑ by T
reverse diffusion steps from ``z`` diffused to step T-1, and is trained on ``L1(ẑ, z)``; after
``encoder_iter`` warm-up steps (which update only CPEN_S2 and the denoiser, with their own optimiser, as the
official code does) everything trains jointly on ``L1(out, GT) + L1(ẑ, z)``. The KL term is logged only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..losses import prior_kl
from ..models import CPEN
from .base import RestorationModule
from .optim import build_optimizer, optimizer_entry

OBJECTIVES = ("joint", "conventional")


class Stage2Module(RestorationModule):
    """Stage-2 training. ``objective="conventional"`` is the paper's ablation: the denoiser learns to predict
    noise at a random timestep, and DIRformer trains on a sampled ẑ without gradient through the chain."""

    def __init__(
        self,
        *args: Any,
        teacher: CPEN,
        prior_loss: nn.Module,
        encoder_iter: int = 0,
        optimizer_e: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler_e: Callable[..., Any] | None = None,
        objective: str = "joint",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"diffusion.objective must be one of {OBJECTIVES}, got {objective!r}")
        if objective == "conventional" and not self.net.predicts_noise:
            raise ValueError(
                "objective=conventional trains a noise predictor: set diffusion.parameterization=eps"
            )
        if encoder_iter > 0 and optimizer_e is None:
            raise ValueError(
                "encoder_iter > 0 needs optimizer_e (the warm-up optimiser of CPEN_S2 and the denoiser)"
            )
        self.teacher = teacher.requires_grad_(False).eval()
        self.prior_loss = prior_loss
        self.encoder_iter, self.objective = encoder_iter, objective
        self.optimizer_e_factory, self.scheduler_e_factory = optimizer_e, scheduler_e

    def train(self, mode: bool = True) -> Stage2Module:
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen: always in eval mode
        return self

    def generator_optimizers(self) -> list[dict]:
        entries = super().generator_optimizers()
        if self.encoder_iter <= 0:
            return entries
        student = list(self.net.student_parameters())
        return [
            *entries,
            optimizer_entry(build_optimizer(self.optimizer_e_factory, student), self.scheduler_e_factory),
        ]

    def in_warmup(self, step: int) -> bool:
        """The official loop counts iterations from 1 and warms up while ``iter < encoder_iter``; step s is
        iteration s + 1, so the joint phase starts at iteration ``encoder_iter`` exactly as there."""
        return step + 1 < self.encoder_iter

    def optimizer_index(self, step: int) -> int:
        return 1 if self.in_warmup(step) else 0

    def compute_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lq = batch["lq"]
        with torch.no_grad():
            z = self.teacher(lq, self.target("teacher", batch))
        warmup = self.in_warmup(self.global_step)
        terms: dict[str, torch.Tensor] = {}
        out = None
        if self.objective == "conventional":
            terms["prior_noise_mse"], z_hat = self.net.conventional_prior(lq, z)
            if not warmup:
                out = self.net.restore_with_prior(lq, z_hat)
        else:
            if warmup:  # only CPEN_S2 and the denoiser run and learn
                z_hat = self.net.estimate_prior(lq, z_teacher=z)[-1]
            else:
                out, chain = self.net(lq, z_teacher=z)
                z_hat = chain[-1]
            terms["prior"] = self.prior_loss(z_hat=z_hat, z=z)
        terms["log_prior_kl"] = prior_kl(z_hat.detach(), z)
        if out is not None:
            terms.update(self.image_losses(out, batch, z_hat))
        return terms

    def predict(self, net: nn.Module, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        return self.restore_batch(net, batch["lq"], None, index)
