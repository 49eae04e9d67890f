"""Real-ESRGAN's noise: Gaussian and Poisson, per sample, colour or grey (BasicSR ``degradations.py``, the
``*_pt`` versions), every draw from the caller's ``torch.Generator`` (docs/method.md §4.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms.functional import rgb_to_grayscale


def _per_sample(value: Tensor | Sequence[float] | float, img: Tensor) -> tuple[Tensor, bool]:
    """(B, 1, 1, 1) tensor on ``img``'s device, and whether any entry is positive (checked where the value
    lives, so host-side flags cost no device sync)."""
    value = torch.as_tensor(value, dtype=img.dtype)
    positive = bool((value > 0).any())
    return value.to(img.device).reshape(-1, 1, 1, 1).expand(img.shape[0], 1, 1, 1), positive


def gaussian_noise(
    img: Tensor,
    sigma: Tensor | Sequence[float] | float,
    gray_noise: Tensor | Sequence[float] | float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gaussian noise of std ``sigma`` (0-255 scale, per sample) for ``img`` (B, C, H, W); samples with
    ``gray_noise`` = 1 get one grey field for all channels (BasicSR ``generate_gaussian_noise_pt``).

    Draw order as the official code: when any sample is grey, ONE (H, W) field shared by the whole batch is
    drawn first, then the (B, C, H, W) colour field.
    """
    b, c, h, w = img.shape
    sigma, _ = _per_sample(sigma, img)
    gray, any_gray = _per_sample(gray_noise, img)
    if any_gray:
        noise_gray = (
            torch.randn(h, w, dtype=img.dtype, device=img.device, generator=generator) * sigma / 255.0
        )
    noise = torch.randn(b, c, h, w, dtype=img.dtype, device=img.device, generator=generator) * sigma / 255.0
    if any_gray:
        noise = noise * (1 - gray) + noise_gray * gray
    return noise


def add_gaussian_noise(
    img: Tensor,
    sigma: Tensor | Sequence[float] | float,
    gray_noise: Tensor | Sequence[float] | float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``clamp(img + gaussian_noise(...), 0, 1)`` (BasicSR ``add_gaussian_noise_pt``, clip, no rounding)."""
    return torch.clamp(img + gaussian_noise(img, sigma, gray_noise, generator), 0, 1)


def poisson_levels(img: Tensor) -> tuple[Tensor, Tensor]:
    """The 8-bit rounded image and, per sample, ``vals = 2^ceil(log2(#distinct levels))`` (B, 1, 1, 1): the
    photon-count scale of BasicSR's Poisson noise. Counted with a histogram (no per-sample loop or sync)."""
    levels = torch.clamp((img * 255.0).round(), 0, 255)
    present = torch.zeros(img.shape[0], 256, device=img.device)
    present.scatter_(1, levels.reshape(img.shape[0], -1).long(), 1.0)
    count = present.sum(1).double()
    vals = torch.exp2(torch.ceil(torch.log2(count))).to(img.dtype)
    return levels / 255.0, vals.view(-1, 1, 1, 1)


def poisson_noise(
    img: Tensor,
    scale: Tensor | Sequence[float] | float,
    gray_noise: Tensor | Sequence[float] | float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Poisson (shot) noise for ``img`` (B, 3, H, W) times ``scale`` (per sample); samples with ``gray_noise``
    = 1 get noise of the grey image on all channels (BasicSR ``generate_poisson_noise_pt``).

    ``noise = poisson(round8(img)·vals) / vals − round8(img)``. When any sample is grey the grey counts are
    drawn first, then the colour counts.
    """
    scale, _ = _per_sample(scale, img)
    gray, any_gray = _per_sample(gray_noise, img)
    if any_gray:
        img_gray, vals_gray = poisson_levels(rgb_to_grayscale(img, num_output_channels=1))
        counts_gray = torch.poisson(img_gray * vals_gray, generator=generator)
        noise_gray = (counts_gray / vals_gray - img_gray).expand(img.shape)
    img_rounded, vals = poisson_levels(img)
    noise = torch.poisson(img_rounded * vals, generator=generator) / vals - img_rounded
    if any_gray:
        noise = noise * (1 - gray) + noise_gray * gray
    return noise * scale


def add_poisson_noise(
    img: Tensor,
    scale: Tensor | Sequence[float] | float,
    gray_noise: Tensor | Sequence[float] | float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``clamp(img + poisson_noise(...), 0, 1)`` (BasicSR ``add_poisson_noise_pt``; the noise is added to the
    unrounded image)."""
    return torch.clamp(img + poisson_noise(img, scale, gray_noise, generator), 0, 1)
