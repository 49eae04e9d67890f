"""The front door in Python: load a model, restore images, build a model from a preset.

Restore a batch with a model of random weights (a trained one comes from :func:`load`):

    >>> import torch, diffir
    >>> model = diffir.build_model("sr", stage=2, scale=4, **diffir.model_preset("sr", "tiny"))
    >>> lq = torch.rand(1, 3, 20, 30)  # (N, C, H, W), float32 in [0, 1]
    >>> diffir.restore(model, lq).shape  # the model knows its scale
    torch.Size([1, 3, 80, 120])
    >>> diffir.restore(model, lq[0])
    Traceback (most recent call last):
    ...
    ValueError: lq must have shape (N, C, H, W), got (3, 20, 30) (add the batch dimension: lq[None])

A trained model: ``model = diffir.load("experiments/demo/stage2/checkpoints/last.ckpt")`` (a training
checkpoint, a model file or folder written by ``python -m diffir.convert`` or ``diffir.save_pretrained``, an
official DiffIR ``.pth``, a Hugging Face Hub id: ``diffir.load`` is :func:`diffir.pretrained.from_pretrained`);
inpainting models take the hole mask, N×1×H×W with 1 = hole: ``diffir.restore(model, image, mask=mask)``.
"""

from __future__ import annotations

import torch

from .models import DiffIRS1, DiffIRS2
from .pretrained import from_pretrained
from .restoration import check_input, restore_image, start_noise

VALUE_SLACK = 0.1  # inputs are [0, 1] images; degradations may overshoot a little, a 0-255 image does not

load = from_pretrained  # the front door's name for the one loader of every model source


def restore(
    model: DiffIRS1 | DiffIRS2,
    lq: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    gt: torch.Tensor | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    seed: int = 0,
) -> torch.Tensor:
    """Restore ``lq`` (N, 3, H, W), float in [0, 1]; returns (N, 3, H·s, W·s) with s = ``model.scale``.

    Inpainting models need ``mask`` (N, 1, H, W), 1 = hole; the known pixels are kept (LaMa's composite).
    A stage-1 model is an oracle and needs ``gt``. ``tile`` restores tiles of that many LQ pixels (overlap
    ``tile_overlap``) under one whole-image prior, for images that do not fit in memory. ``seed`` draws the
    start of the prior's reverse diffusion: same seed, same output (as ``infer.py seed=``).
    A wrong input (rank, dtype, channels, value range, a missing mask or GT) is a ``ValueError``.
    """
    image = lq
    if isinstance(image, torch.Tensor) and image.dim() == 4 and image.is_floating_point() and image.numel():
        low, high = float(image.min()), float(image.max())
        if low < -VALUE_SLACK or high > 1 + VALUE_SLACK:
            hint = " (divide 8-bit values by 255)" if high > 2 else ""
            raise ValueError(f"lq values must lie in [0, 1], got [{low:.3g}, {high:.3g}]{hint}")
    if model.in_channels == 4:
        if mask is None:
            raise ValueError("an inpainting model needs mask= (N, 1, H, W), 1 = hole")
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"lq must be an RGB batch (N, 3, H, W) for inpainting, got {tuple(image.shape)}")
        if tuple(mask.shape) != (image.shape[0], 1, *image.shape[-2:]):
            raise ValueError(
                f"mask must have shape {(image.shape[0], 1, *image.shape[-2:])}, got {tuple(mask.shape)}"
            )
        mask = mask.to(image.dtype)
    elif mask is not None:
        raise ValueError(f"mask= is for inpainting models; this one takes {model.in_channels}-channel input")
    else:
        check_input(model, image, gt)
    # one start vector for every image, as infer.py: batching does not change an image's restoration
    noise = start_noise(model, 1, seed, image.device)
    noise = None if noise is None else noise.expand(image.shape[0], -1)
    return restore_image(model, image, mask=mask, gt=gt, noise=noise, tile=tile, tile_overlap=tile_overlap)
