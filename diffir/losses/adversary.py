"""Adversaries: a discriminator plus the adversarial losses of one recipe, and the discriminator's update.

The loss primitives they combine are in :mod:`diffir.losses.gan`; the discriminator networks in
:mod:`diffir.models.discriminators`. The LightningModule calls ``generator_terms(out, gt, mask)`` inside the
generator's loss (the discriminator frozen: ``freeze()``) and, after the generator's step, ``update(out.detach(),
gt, mask, apply)``: the discriminator's own update on ``discriminator_terms``. Both return named terms: the ones
without the ``log_`` prefix are summed into that update's loss, the rest are logged.

* :class:`BCEAdversary` — DiffIR-SRGAN / DiffIR-RealSR (BasicSR ``GANLoss('vanilla')`` with
  ``UNetDiscriminatorSN``): G pushes ``D(out)`` to "real"; D learns real → 1, fake → 0 (docs/method.md §3.1).
* :class:`LamaAdversary` — DiffIR-inpainting (LaMa): non-saturating loss with the R1 penalty and the
  mask-as-fake target, plus feature matching over the ``NLayerDiscriminator`` activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .gan import feature_matching_loss


class Adversary(nn.Module):
    """A ``discriminator`` and the terms of one recipe (``generator_terms``, ``discriminator_terms``)."""

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def generator_terms(
        self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def discriminator_terms(
        self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def freeze(self) -> None:
        """No gradient into the discriminator while the generator's loss runs through it."""
        self.discriminator.requires_grad_(False)

    def update(
        self,
        out: torch.Tensor,
        gt: torch.Tensor,
        mask: torch.Tensor | None,
        apply: Callable[[dict[str, torch.Tensor]], None],
    ) -> dict[str, torch.Tensor]:
        """One discriminator update on real (``gt``) vs ``out`` (the generator's output of this step, detached):
        the discriminator trainable again, its terms handed to ``apply`` (backward and the optimiser step, the
        trainer's part); returns the terms for the logs."""
        self.discriminator.requires_grad_(True)
        terms = self.discriminator_terms(out, gt, mask)
        apply(terms)
        return terms


class BCEAdversary(Adversary):
    """``gan_loss(pred, target_is_real, is_disc)`` is BasicSR's vanilla GAN loss; its weight applies to G only."""

    def __init__(self, discriminator: nn.Module, gan_loss: nn.Module) -> None:
        super().__init__(discriminator)
        self.gan_loss = gan_loss

    def generator_terms(
        self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return {"gan": self.gan_loss(self.discriminator(out), True, is_disc=False)}

    def discriminator_terms(
        self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        real_pred, fake_pred = self.discriminator(gt), self.discriminator(out)
        return {
            "d_real": self.gan_loss(real_pred, True, is_disc=True),
            "d_fake": self.gan_loss(fake_pred, False, is_disc=True),
            "log_d_real_logit": real_pred.detach().mean(),
            "log_d_fake_logit": fake_pred.detach().mean(),
        }


class LamaAdversary(Adversary):
    """LaMa's adversarial terms: ``loss`` is ``NonSaturatingWithR1`` (G: ``softplus(-D(fake))·weight``; D: real +
    R1 + mask-as-fake target), and feature matching (MSE between D's activations of fake and real, × weight)."""

    def __init__(
        self, discriminator: nn.Module, loss: nn.Module, feature_matching_weight: float = 100.0
    ) -> None:
        super().__init__(discriminator)
        self.loss = loss
        self.feature_matching_weight = feature_matching_weight

    def generator_terms(
        self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        _, real_features = self.discriminator(gt)
        fake_pred, fake_features = self.discriminator(out)
        terms = {"adversarial": self.loss.generator_loss(fake_pred, mask=mask)}
        if self.feature_matching_weight:
            terms["feature_matching"] = self.feature_matching_weight * feature_matching_loss(
                fake_features, real_features
            )
        return terms

    def discriminator_terms(
        self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        real = gt.detach().requires_grad_(True)  # the R1 penalty differentiates D(real) w.r.t. real
        real_pred, _ = self.discriminator(real)
        fake_pred, _ = self.discriminator(out)
        parts = self.loss.discriminator_loss(real, real_pred, fake_pred, mask=mask)
        return {
            "d_total": parts["total"],
            "log_d_real": parts["real"].detach(),
            "log_d_fake": parts["fake"].detach(),
            "log_d_r1": parts["r1"].detach(),
            "log_d_real_logit": real_pred.detach().mean(),
            "log_d_fake_logit": fake_pred.detach().mean(),
        }
