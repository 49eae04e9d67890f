"""Adversarial losses: BasicSR's ``GANLoss`` (SR GAN stages) and LaMa's non-saturating loss with R1 plus
feature matching (inpainting).

These are the primitives (docs/method.md §3.1); :mod:`diffir.losses.adversary` combines them with a
discriminator (``diffir.models.discriminators``) into the terms and the update of one recipe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureMatchingLoss", "GANLoss", "NonSaturatingWithR1", "feature_matching_loss"]


class GANLoss(nn.Module):
    """BasicSR ``GANLoss``: the loss of discriminator logits ``pred`` against a real or fake target.

    ``gan_type``: ``vanilla`` (BCE with logits, DiffIR's choice), ``lsgan`` (MSE to the label), ``wgan``
    (∓mean), ``wgan_softplus`` (softplus(∓pred)) or ``hinge`` (ReLU(1 ∓ pred) for D, −mean for G).
    ``loss_weight`` scales the generator term only (``is_disc=False``), never the discriminator's.
    """

    GAN_TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge")

    def __init__(
        self,
        gan_type: str = "vanilla",
        real_label_val: float = 1.0,
        fake_label_val: float = 0.0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if gan_type not in self.GAN_TYPES:
            raise ValueError(f"GANLoss gan_type must be one of {self.GAN_TYPES}, got {gan_type!r}")
        self.gan_type, self.loss_weight = gan_type, loss_weight
        self.real_label_val, self.fake_label_val = real_label_val, fake_label_val

    def forward(self, pred: torch.Tensor, target_is_real: bool, is_disc: bool = False) -> torch.Tensor:
        label = self.real_label_val if target_is_real else self.fake_label_val
        sign = -1.0 if target_is_real else 1.0
        if self.gan_type == "vanilla":
            loss = F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, label))
        elif self.gan_type == "lsgan":
            loss = F.mse_loss(pred, torch.full_like(pred, label))
        elif self.gan_type == "wgan":
            loss = sign * pred.mean()
        elif self.gan_type == "wgan_softplus":
            loss = F.softplus(sign * pred).mean()
        elif is_disc:  # hinge, discriminator
            loss = F.relu(1 + sign * pred).mean()
        else:  # hinge, generator
            loss = -pred.mean()
        return loss if is_disc else loss * self.loss_weight


def feature_matching_loss(
    fake_features: list[torch.Tensor], real_features: list[torch.Tensor], mask: torch.Tensor | None = None
) -> torch.Tensor:
    """LaMa's feature matching: the mean over discriminator feature maps of each map's MSE.

    With ``mask`` (1 = hole), each map's squared error is weighted by ``1 − mask`` resized bilinearly (LaMa's
    ``pass_mask``); DiffIR-inpainting passes no mask.
    """
    if len(fake_features) != len(real_features):
        raise ValueError(f"feature matching got {len(fake_features)} fake vs {len(real_features)} real maps")
    values = []
    for fake, real in zip(fake_features, real_features, strict=True):
        if mask is None:
            values.append(F.mse_loss(fake, real))
        else:
            m = F.interpolate(mask, size=fake.shape[-2:], mode="bilinear", align_corners=False)
            values.append(((fake - real).pow(2) * (1 - m)).mean())
    return torch.stack(values).mean()


class FeatureMatchingLoss(nn.Module):
    """``weight`` × :func:`feature_matching_loss` (DiffIR-inpainting: weight 100, no mask)."""

    def __init__(self, weight: float = 100.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(
        self,
        fake_features: list[torch.Tensor],
        real_features: list[torch.Tensor],
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.weight * feature_matching_loss(fake_features, real_features, mask)


class NonSaturatingWithR1(nn.Module):
    """LaMa's non-saturating adversarial loss with an R1 gradient penalty on real images.

    Generator: ``weight · mean(softplus(−D(fake)))``. Discriminator (unweighted):
    ``mean(softplus(−D(real))) + gp_coef · mean_b ‖∇_real ΣD(real)‖² + mean(fake_term)`` where, with
    ``mask_as_fake_target``, ``fake_term = m · softplus(D(fake)) + (1 − m) · softplus(−D(fake))`` — the
    known (unmasked) pixels of a fake count as real — and ``m`` is the hole mask resized to the logits by
    ``mask_scale_mode``. The defaults of DiffIR-inpainting's config are: weight 10, gp_coef 1e-3,
    mask_as_fake_target, allow_scale_mask, nearest.
    """

    def __init__(
        self,
        weight: float = 10.0,
        gp_coef: float = 1e-3,
        mask_as_fake_target: bool = True,
        allow_scale_mask: bool = True,
        mask_scale_mode: str = "nearest",
        extra_mask_weight_for_gen: float = 0.0,
        use_unmasked_for_gen: bool = True,
        use_unmasked_for_discr: bool = True,
    ) -> None:
        super().__init__()
        if use_unmasked_for_discr and not use_unmasked_for_gen:
            raise ValueError("use_unmasked_for_discr=True needs use_unmasked_for_gen=True (LaMa's rule)")
        if mask_as_fake_target and not use_unmasked_for_discr:
            raise ValueError("mask_as_fake_target=True needs use_unmasked_for_discr=True (LaMa's rule)")
        self.weight, self.gp_coef = weight, gp_coef
        self.mask_as_fake_target, self.extra_mask_weight_for_gen = (
            mask_as_fake_target,
            extra_mask_weight_for_gen,
        )
        self.allow_scale_mask, self.mask_scale_mode = allow_scale_mask, mask_scale_mode
        self.use_unmasked_for_gen, self.use_unmasked_for_discr = use_unmasked_for_gen, use_unmasked_for_discr

    def interpolate_mask(self, mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
        """The hole mask at the logits' resolution (``maxpool`` or an ``F.interpolate`` mode)."""
        if mask is None:
            raise ValueError("NonSaturatingWithR1 with this configuration needs the hole mask; got mask=None")
        if tuple(shape) == tuple(mask.shape[-2:]):
            return mask
        if not self.allow_scale_mask:
            raise ValueError(
                f"mask of size {tuple(mask.shape[-2:])} does not match the logits {tuple(shape)} and "
                "allow_scale_mask is False"
            )
        if self.mask_scale_mode == "maxpool":
            return F.adaptive_max_pool2d(mask, shape)
        return F.interpolate(mask, size=shape, mode=self.mask_scale_mode)

    def generator_loss(self, fake_pred: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``weight · mean(softplus(−D(fake)))``, optionally reweighting hole pixels (LaMa's options)."""
        fake_loss = F.softplus(-fake_pred)
        if (self.mask_as_fake_target and self.extra_mask_weight_for_gen > 0) or not self.use_unmasked_for_gen:
            m = self.interpolate_mask(mask, fake_pred.shape[-2:])
            if not self.use_unmasked_for_gen:
                fake_loss = fake_loss * m
            else:
                fake_loss = fake_loss * (1 + m * self.extra_mask_weight_for_gen)
        return fake_loss.mean() * self.weight

    def r1_penalty(self, real: torch.Tensor, real_pred: torch.Tensor) -> torch.Tensor:
        """``mean_b ‖∂ΣD(real)/∂real[b]‖²``, differentiable w.r.t. D's parameters (``create_graph``)."""
        if not real.requires_grad:
            raise ValueError("R1 needs real.requires_grad=True before computing real_pred = D(real)")
        (grad,) = torch.autograd.grad(real_pred.sum(), real, create_graph=True)
        return grad.flatten(1).norm(2, dim=1).pow(2).mean()

    def discriminator_loss(
        self,
        real: torch.Tensor,
        real_pred: torch.Tensor,
        fake_pred: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The discriminator terms: ``total = real + r1 + fake`` (``r1`` includes ``gp_coef``, ``r1_raw``
        does not). ``real`` must require grad and ``real_pred = D(real)``; in no-grad mode R1 is 0."""
        real_term = F.softplus(-real_pred).mean()
        r1_raw = self.r1_penalty(real, real_pred) if torch.is_grad_enabled() else real_pred.new_zeros(())
        fake_loss = F.softplus(fake_pred)
        if self.mask_as_fake_target or not self.use_unmasked_for_discr:
            m = self.interpolate_mask(mask, fake_pred.shape[-2:])
            fake_loss = fake_loss * m
            if self.mask_as_fake_target:
                fake_loss = fake_loss + (1 - m) * F.softplus(-fake_pred)
        fake_term = fake_loss.mean()
        r1 = self.gp_coef * r1_raw
        return {
            "total": real_term + r1 + fake_term,
            "real": real_term,
            "fake": fake_term,
            "r1": r1,
            "r1_raw": r1_raw,
        }
