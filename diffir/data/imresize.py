"""MATLAB-compatible bicubic ``imresize`` and the standard SR low-resolution pipeline.

SR benchmarks make LR inputs with MATLAB's ``imresize(hr, 1/scale, 'bicubic')``: a Keys cubic kernel
(a = -0.5), pixel-centre coordinate mapping, a kernel widened by ``1/scale`` when downscaling
(antialiasing) and symmetric border extension. PIL, OpenCV and ``torch.nn.functional.interpolate`` all
differ from it, and the difference moves PSNR by tenths of a dB, so published numbers are only
reproducible with this exact resampler. The weights and indices follow MATLAB's ``contributions``
(also ported by BasicSR's ``matlab_functions.imresize``); the filtering is vectorised over pixels and
loops only over the few kernel taps.

Dtype rules, as in MATLAB: float input gives float output (computed in float64 for numpy arrays, in at
least float32 for float tensors) without rounding; uint8 input gives uint8 output, rounded half away from zero
and saturated, after *each* of the two 1-D passes, because MATLAB's ``imresizemex`` returns the class of
its input.

Layouts: numpy ``HWC`` or ``HW``; torch ``CHW``, ``BCHW`` or ``HW``.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

__all__ = ["bicubic_downsample", "bicubic_upsample", "imresize", "mod_crop"]

Image = TypeVar("Image", np.ndarray, torch.Tensor)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 weights and 0-based input indices, both ``(out_length, taps)``, of MATLAB's resampler.

    Output pixel ``x`` (1-based) sits at input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``.
    Indices outside the image are reflected symmetrically (edge pixel repeated), with MATLAB's period
    ``2 * in_length`` so that even kernels wider than the image are handled.
    """
    kernel_width = 4.0
    antialias = antialiasing and scale < 1
    if antialias:
        kernel_width /= scale
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if antialias else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    period = 2 * in_length
    wrapped = torch.remainder(indices.long() - 1, period)
    indices = torch.where(wrapped < in_length, wrapped, period - 1 - wrapped)
    return weights, indices


def _round_uint8(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's double-to-uint8 conversion (saturate, round half away from zero), kept in float."""
    return torch.floor(x.clamp(0, 255) + 0.5)


def _resize_dim(x: torch.Tensor, dim: int, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` along ``dim`` (-2 or -1): a weighted sum of gathered input lines per kernel tap."""
    weights = weights.to(device=x.device, dtype=x.dtype)
    indices = indices.to(x.device)
    shape = (-1, 1) if dim == -2 else (-1,)
    out = torch.zeros(1, dtype=x.dtype, device=x.device)
    for tap in range(weights.shape[1]):
        out = out + x.index_select(dim, indices[:, tap]) * weights[:, tap].view(shape)
    return out


def _resize_planes(x: torch.Tensor, scale: float, antialiasing: bool, is_uint8: bool) -> torch.Tensor:
    """Resize the last two dims of a float tensor holding ``... x H x W`` planes (H pass first, as MATLAB)."""
    in_h, in_w = x.shape[-2:]
    out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    for dim, in_len, out_len in ((-2, in_h, out_h), (-1, in_w, out_w)):
        weights, indices = _contributions(in_len, out_len, scale, antialiasing)
        x = _resize_dim(x, dim, weights, indices)
        if is_uint8:
            x = _round_uint8(x)
    return x


@torch.no_grad()
def imresize(img: Image, scale: float, antialiasing: bool = True) -> Image:
    """Resize by ``scale`` exactly as MATLAB's ``imresize(img, scale, 'bicubic')``.

    The output size is ``ceil(size * scale)``. ``img`` is a numpy ``HWC``/``HW`` array or a torch
    ``CHW``/``BCHW``/``HW`` tensor, float (any range, usually [0, 1]) or uint8; the result has the same
    type, layout and dtype. ``antialiasing`` only matters when downscaling.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"numpy images must be HW or HWC, got shape {img.shape}")
        is_uint8 = img.dtype == np.uint8
        if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
            raise TypeError(f"numpy images must be uint8 or floating point, got {img.dtype}")
        planes = torch.from_numpy(np.array(img, dtype=np.float64))
        planes = planes if img.ndim == 2 else planes.permute(2, 0, 1)
        out = _resize_planes(planes, scale, antialiasing, is_uint8)
        out = out if img.ndim == 2 else out.permute(1, 2, 0)
        return out.numpy().astype(img.dtype)
    if isinstance(img, torch.Tensor):
        if img.ndim not in (2, 3, 4):
            raise ValueError(f"tensors must be HW, CHW or BCHW, got shape {tuple(img.shape)}")
        is_uint8 = img.dtype == torch.uint8
        if not (is_uint8 or img.is_floating_point()):
            raise TypeError(f"tensors must be uint8 or floating point, got {img.dtype}")
        compute_dtype = torch.float64 if is_uint8 else torch.promote_types(img.dtype, torch.float32)
        out = _resize_planes(img.to(compute_dtype), scale, antialiasing, is_uint8)
        return out.to(img.dtype)
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(img).__name__}")


def mod_crop(img: Image, scale: int) -> Image:
    """Crop the bottom/right so height and width are multiples of ``scale`` (the SR GT convention)."""
    h, w = (img.shape[0], img.shape[1]) if isinstance(img, np.ndarray) else img.shape[-2:]
    h, w = h - h % scale, w - w % scale
    return img[:h, :w, ...] if isinstance(img, np.ndarray) else img[..., :h, :w]


def _to_uint8_grid(img: Image) -> Image:
    """Float [0, 1] image -> the 0..255 values of the 8-bit image it represents (same container)."""
    if isinstance(img, np.ndarray):
        return np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return (img.double() * 255.0).round().clamp(0, 255).to(torch.uint8)


def bicubic_downsample(gt: Image, scale: int) -> Image:
    """Make the LR image of the standard bicubic SR benchmarks from an 8-bit HR image.

    Mod-crop to a multiple of ``scale``, then MATLAB ``imresize(hr_uint8, 1/scale, 'bicubic')``. uint8
    input gives uint8 output; float [0, 1] input is read as the 8-bit image it represents and gives float
    output of the same dtype holding exact ``k / 255`` values, identical to the uint8 path.
    """
    gt = mod_crop(gt, scale)
    is_float = gt.dtype not in (np.uint8, torch.uint8)
    lr = imresize(_to_uint8_grid(gt) if is_float else gt, 1.0 / scale, antialiasing=True)
    if not is_float:
        return lr
    if isinstance(lr, np.ndarray):
        return (lr.astype(np.float64) / 255.0).astype(gt.dtype)
    return (lr.double() / 255.0).to(gt.dtype)


def bicubic_upsample(lq: Image, scale: int | float) -> Image:
    """Bicubic SR baseline: MATLAB ``imresize(lq, scale, 'bicubic')`` (uint8 in/out or float in/out)."""
    return imresize(lq, float(scale), antialiasing=True)
