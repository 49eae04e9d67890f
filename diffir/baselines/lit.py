"""Training of the pixel-space diffusion baselines (SR3, the image-conditioned DDPM, GDP's DDPM prior).

The same loop as DiffIR's stages (:class:`~diffir.lit.base.RestorationModule`: EMA, seeding from
(seed, step, rank), non-finite-loss stop, validation metrics and panels, self-describing checkpoints); only
the loss and the validation output differ. The loss is the method's own (``net.loss``: L1 / L2 on ε at a
random noise level); validation restores each image by the method's sampler from noise seeded by the image
index (``val_steps`` reverse steps, fewer than at test time to keep validation cheap on a CPU). The prior has
no restoration of its own (that needs GDP's guidance and an operator): it is validated by its x̂_0 of each
image diffused to step ``val_t``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..lit.base import RestorationModule
from .methods import DDPMPrior, PixelDiffusion


class PixelDiffusionModule(RestorationModule):
    """``net`` is a :class:`~diffir.baselines.PixelDiffusion`; ``model_config`` its ``config()``; ``val_steps``
    and ``val_t`` are the ``baseline`` section's (conf/method/common/baseline.yaml)."""

    def __init__(self, *args: Any, val_steps: int | None, val_t: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.net, PixelDiffusion):
            raise TypeError(
                f"PixelDiffusionModule trains a PixelDiffusion model, got {type(self.net).__name__}"
            )
        self.val_steps, self.val_t = val_steps, val_t

    def compute_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lq = None if isinstance(self.net, DDPMPrior) else batch["lq"]
        return {"diffusion": self.net.loss(batch["gt"], lq)}

    def predict(self, net: nn.Module, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + index)
        if isinstance(net, DDPMPrior):
            return net.denoise(batch["gt"], self.val_t, generator)
        return net.restore(batch["lq"], generator, steps=self.val_steps)
