"""Restoring images of any size: reflect-pad to the model's multiple and crop back (as the official tests do)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import DiffIRS1, DiffIRS2


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom and right of ``x`` to a multiple of ``multiple``; returns the original (H, W).

    Reflection needs pad < size, so very small images are padded in several reflect steps.
    """
    h, w = x.shape[-2:]
    while x.shape[-2] % multiple or x.shape[-1] % multiple:
        ph = min((-x.shape[-2]) % multiple, x.shape[-2] - 1)
        pw = min((-x.shape[-1]) % multiple, x.shape[-1] - 1)
        mode = "reflect" if min(x.shape[-2:]) > 1 else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


@torch.no_grad()
def restore(
    model: DiffIRS1 | DiffIRS2,
    lq: torch.Tensor,
    gt: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    scale: int = 1,
) -> torch.Tensor:
    """Run a model on an LQ batch of any H×W and return an output of exactly (H·scale, W·scale).

    Stage 1 needs ``gt`` (it is an oracle); stage 2 starts its reverse diffusion from ``noise`` when given.
    """
    multiple = model.size_multiple
    lq_padded, (h, w) = pad_to_multiple(lq, multiple)
    if isinstance(model, DiffIRS1):
        if gt is None:
            raise ValueError(
                "a stage-1 model needs the ground truth to extract its prior; use a stage-2 model"
            )
        gt_padded, _ = pad_to_multiple(gt, multiple * scale)
        out, _ = model(lq_padded, gt_padded)
    else:
        out, _ = model(lq_padded, noise=noise)
    return out[..., : h * scale, : w * scale]
