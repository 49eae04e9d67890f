"""PSNR and SSIM with BasicSR's definitions (``basicsr/metrics/psnr_ssim.py``), vectorised on torch.

Published restoration numbers are computed on 8-bit images, so inputs are first brought to the 8-bit
values they would be saved as: float tensors in [0, 1] are clamped and rounded like BasicSR's
``tensor2img``; numpy inputs must already be uint8 ``HWC``/``HW``. Everything else runs in float64 on the
input's device:

* ``crop_border`` pixels are removed from each border first;
* ``test_y_channel`` uses the BT.601 luma of MATLAB's ``rgb2ycbcr`` (16-235 on the 0-255 scale,
  unrounded); single-channel images are used as they are;
* PSNR uses a peak of 255 and is ``inf`` for identical images (BasicSR's ``calculate_psnr``);
* SSIM uses an 11x11 Gaussian window (sigma 1.5) with 'valid' filtering, C1 = (0.01*255)^2,
  C2 = (0.03*255)^2, and averages the SSIM map over pixels and channels.

Return type follows the input: a Python float for numpy images, a 0-d tensor for ``CHW`` tensors and a
per-image ``(B,)`` tensor for ``BCHW`` tensors.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "rgb_to_y", "ssim", "to_8bit_values"]

ImageLike = torch.Tensor | np.ndarray

_Y_COEFFS = (65.481, 128.553, 24.966)
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
SSIM_SIZE = 11  # the Gaussian window side: SSIM needs images at least this large (after the crop)
_SSIM_SIGMA = 1.5


def to_8bit_values(img: ImageLike) -> tuple[torch.Tensor, bool]:
    """Return ``(x, batched)``: ``x`` a float64 ``(B, C, H, W)`` tensor of 8-bit values 0..255.

    Accepts numpy uint8 ``HWC``/``HW`` and torch ``CHW``/``BCHW`` tensors, float in [0, 1] (clamped, then
    rounded as BasicSR's ``tensor2img``) or uint8. ``batched`` tells whether the input had a batch dim.
    """
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise TypeError(
                f"numpy images must be uint8 (0..255), got {img.dtype}; pass float data as tensors"
            )
        if img.ndim not in (2, 3):
            raise ValueError(f"numpy images must be HW or HWC, got shape {img.shape}")
        x = torch.from_numpy(img.astype(np.float64))
        x = x[None] if img.ndim == 2 else x.permute(2, 0, 1)
        return x[None], False
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"expected a torch tensor or a numpy uint8 array, got {type(img).__name__}")
    if img.ndim not in (3, 4):
        raise ValueError(f"tensors must be CHW or BCHW, got shape {tuple(img.shape)}")
    x = img.detach()
    if x.dtype == torch.uint8:
        x = x.to(torch.float64)
    elif x.is_floating_point():
        x = (x.to(torch.float64).clamp(0, 1) * 255.0).round()
    else:
        raise TypeError(f"tensors must be float in [0, 1] or uint8, got {x.dtype}")
    return (x, True) if img.ndim == 4 else (x[None], False)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (MATLAB ``rgb2ycbcr``, Y in 16..235) of a ``(B, 3, H, W)`` tensor on the 0..255 scale."""
    coeffs = x.new_tensor(_Y_COEFFS).view(1, 3, 1, 1)
    return (x / 255.0 * coeffs).sum(dim=1, keepdim=True) + 16.0


def _prepare(
    pred: ImageLike, gt: ImageLike, crop_border: int, test_y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """8-bit float64 tensors of both images, cropped and optionally reduced to Y, plus output-format flags."""
    x, batched = to_8bit_values(pred)
    y, _ = to_8bit_values(gt)
    y = y.to(x.device)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border > 0:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        y = y[..., crop_border:-crop_border, crop_border:-crop_border]
    if x.numel() == 0:
        raise ValueError(f"crop_border={crop_border} leaves no pixels of a {tuple(y.shape[-2:])} image")
    if test_y_channel and x.shape[1] == 3:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y, batched, isinstance(pred, np.ndarray)


def _format(values: torch.Tensor, batched: bool, as_float: bool) -> torch.Tensor | float:
    """Per-image values -> float (numpy input), 0-d tensor (CHW input) or (B,) tensor (BCHW input)."""
    if as_float:
        return float(values[0])
    return values if batched else values[0]


def psnr(
    pred: ImageLike, gt: ImageLike, crop_border: int = 0, test_y_channel: bool = False
) -> torch.Tensor | float:
    """Peak signal-to-noise ratio in dB on 8-bit images (BasicSR ``calculate_psnr``)."""
    x, y, batched, as_float = _prepare(pred, gt, crop_border, test_y_channel)
    mse = (x - y).square().mean(dim=(1, 2, 3))
    return _format(10.0 * torch.log10(255.0**2 / mse), batched, as_float)


def _gaussian_filter_valid(x: torch.Tensor, window: list[float]) -> torch.Tensor:
    """Separable 'valid' correlation of the last two dims with ``outer(window, window)``.

    Written as a sum over the window's taps of shifted slices: exact in float64 and much faster on CPU
    than float64 ``conv2d``, which has no optimised kernel.
    """
    size = len(window)
    h = x.shape[-2] - size + 1
    rows = x[..., :h, :] * window[0]
    for k in range(1, size):
        rows.add_(x[..., k : k + h, :], alpha=window[k])
    w = x.shape[-1] - size + 1
    out = rows[..., :w] * window[0]
    for k in range(1, size):
        out.add_(rows[..., k : k + w], alpha=window[k])
    return out


def ssim(
    pred: ImageLike, gt: ImageLike, crop_border: int = 0, test_y_channel: bool = False
) -> torch.Tensor | float:
    """Structural similarity on 8-bit images (BasicSR ``calculate_ssim``, Wang et al.'s MATLAB settings)."""
    x, y, batched, as_float = _prepare(pred, gt, crop_border, test_y_channel)
    if min(x.shape[-2:]) < SSIM_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_SIZE}x{SSIM_SIZE} after cropping, got {tuple(x.shape[-2:])}"
        )
    offsets = torch.arange(SSIM_SIZE, dtype=torch.float64) - SSIM_SIZE // 2
    window = torch.exp(-offsets.square() / (2 * _SSIM_SIGMA**2))
    window = (window / window.sum()).tolist()
    # One filtering pass over the five stacked maps: fewer, larger tensor ops.
    mu_x, mu_y, xx, yy, xy = _gaussian_filter_valid(torch.stack([x, y, x * x, y * y, x * y]), window)
    var_x, var_y, cov_xy = xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov_xy + _SSIM_C2)) / (
        (mu_x.square() + mu_y.square() + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return _format(ssim_map.mean(dim=(1, 2, 3)), batched, as_float)
