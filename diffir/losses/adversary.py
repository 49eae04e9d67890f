"""Adversaries: a discriminator plus the adversarial losses of one recipe, as the training step uses them.

The LightningModule calls ``generator_terms(out, gt, mask)`` inside the generator's loss (the discriminator
frozen) and ``discriminator_terms(out.detach(), gt, mask)`` for the discriminator's own update. Both return
named terms: the ones without the ``log_`` prefix are summed into that update's loss, the rest are logged.

* :class:`BCEAdversary` — DiffIR-SRGAN / DiffIR-RealSR (BasicSR ``GANLoss('vanilla')`` with
  ``UNetDiscriminatorSN``): G pushes ``D(out)`` to "real"; D learns real → 1, fake → 0 (docs/method.md §3.1).
* :class:`LamaAdversary` — DiffIR-inpainting (LaMa): non-saturating loss with the R1 penalty and the
  mask-as-fake target, plus feature matching over the ``NLayerDiscriminator`` activations.
"""

from __future__ import annotations

import torch
from torch import nn

from .adversarial import feature_matching_loss


class BCEAdversary(nn.Module):
    """``gan_loss(pred, target_is_real, is_disc)`` is BasicSR's vanilla GAN loss; its weight applies to G only."""

    def __init__(self, discriminator: nn.Module, gan_loss: nn.Module) -> None:
        super().__init__()
        self.discriminator, self.gan_loss = discriminator, gan_loss

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


class LamaAdversary(nn.Module):
    """LaMa's adversarial terms: ``loss`` is ``NonSaturatingWithR1`` (G: ``softplus(-D(fake))·weight``; D: real +
    R1 + mask-as-fake target), and feature matching (MSE between D's activations of fake and real, × weight)."""

    def __init__(
        self, discriminator: nn.Module, loss: nn.Module, feature_matching_weight: float = 100.0
    ) -> None:
        super().__init__()
        self.discriminator, self.loss = discriminator, loss
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
