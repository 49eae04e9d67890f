"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), batch-wise on the training device.

DiffIR-RealSR trains on LQ images synthesised from clean GT crops with the Real-ESRGAN pipeline of BasicSR /
Real-ESRGAN (``degradations.py``, ``img_process_util.py``, ``diffjpeg.py``, ``RealESRGANDataset``,
``RealESRNetModel.feed_data``). The deterministic pieces here compute the official functions (checked against
vectors of the official code in ``tests/parity/degradations.py``); ``RealESRGANDegradation`` chains them with
the official random parameters (docs/method.md §4.2), drawing every random number from one
``torch.Generator`` so that a batch is a function of the caller's (seed, step, rank).

Blur kernels are made in numpy float64, as the official dataset makes them, and handed on as float32 tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import special
from torch import Tensor, nn
from torchvision.transforms.functional import rgb_to_grayscale

# ---------------------------------------------------------------------------------------------------------
# Blur kernels (BasicSR degradations.py)
# ---------------------------------------------------------------------------------------------------------

KERNEL_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


def _quadratic_form(
    kernel_size: int, sig_x: float, sig_y: float, theta: float, isotropic: bool
) -> np.ndarray:
    """``q = [x, y] Σ^-1 [x, y]^T`` on the centred ``kernel_size``² grid (x: column offset, y: row offset).

    Σ = diag(σx², σx²) when ``isotropic`` (σy and θ ignored, as in BasicSR), else U diag(σx², σy²) Uᵀ with U
    the rotation by θ.
    """
    ax = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)
    if isotropic:
        sigma = np.array([[sig_x**2, 0], [0, sig_x**2]])
    else:
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        sigma = np.dot(rot, np.dot(np.array([[sig_x**2, 0], [0, sig_y**2]]), rot.T))
    return np.sum(np.dot(grid, np.linalg.inv(sigma)) * grid, 2)


def bivariate_gaussian_kernel(
    kernel_size: int, sig_x: float, sig_y: float, theta: float, isotropic: bool = True
) -> np.ndarray:
    """Normalised Gaussian kernel ``exp(-q/2)`` (BasicSR ``bivariate_Gaussian``), float64."""
    kernel = np.exp(-0.5 * _quadratic_form(kernel_size, sig_x, sig_y, theta, isotropic))
    return kernel / np.sum(kernel)


def generalized_gaussian_kernel(
    kernel_size: int, sig_x: float, sig_y: float, theta: float, beta: float, isotropic: bool = True
) -> np.ndarray:
    """Normalised generalized Gaussian ``exp(-q^β / 2)`` (BasicSR ``bivariate_generalized_Gaussian``);
    float64."""
    kernel = np.exp(-0.5 * np.power(_quadratic_form(kernel_size, sig_x, sig_y, theta, isotropic), beta))
    return kernel / np.sum(kernel)


def plateau_kernel(
    kernel_size: int, sig_x: float, sig_y: float, theta: float, beta: float, isotropic: bool = True
) -> np.ndarray:
    """Normalised plateau kernel ``1 / (q^β + 1)`` (BasicSR ``bivariate_plateau``), float64."""
    q = _quadratic_form(kernel_size, sig_x, sig_y, theta, isotropic)
    kernel = np.reciprocal(np.power(q, beta) + 1)
    return kernel / np.sum(kernel)


def circular_lowpass_kernel(cutoff: float, kernel_size: int, pad_to: int = 0) -> np.ndarray:
    """2-D sinc (ideal circular low-pass, cutoff ω_c in radians) kernel, zero-padded to ``pad_to``; float64.

    ``K = ω_c J1(ω_c r) / (2π r)`` with the limit ``ω_c² / (4π)`` at r = 0, normalised to sum 1.
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"sinc kernel size must be odd, got {kernel_size}")
    centre = (kernel_size - 1) / 2
    i, j = np.meshgrid(np.arange(kernel_size), np.arange(kernel_size), indexing="ij")
    r = np.sqrt((i - centre) ** 2 + (j - centre) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    kernel[(kernel_size - 1) // 2, (kernel_size - 1) // 2] = cutoff**2 / (4 * np.pi)
    kernel = kernel / np.sum(kernel)
    if pad_to > kernel_size:
        pad = (pad_to - kernel_size) // 2
        kernel = np.pad(kernel, ((pad, pad), (pad, pad)))
    return kernel


@dataclass(frozen=True)
class KernelSpec:
    """One sampled blur kernel: ``family`` (a ``KERNEL_FAMILIES`` name, ``"sinc"`` or ``"pulse"``), support
    size and shape parameters (θ in radians, sinc cutoff ω_c in radians)."""

    family: str
    kernel_size: int
    sig_x: float = 0.0
    sig_y: float = 0.0
    theta: float = 0.0
    beta: float = 1.0
    cutoff: float = 0.0

    def render(self, pad_to: int) -> np.ndarray:
        """The float64 kernel, zero-padded to ``pad_to`` x ``pad_to`` (the pulse is the identity filter)."""
        if self.family == "pulse":
            kernel = np.zeros((pad_to, pad_to))
            kernel[pad_to // 2, pad_to // 2] = 1.0
            return kernel
        if self.family == "sinc":
            return circular_lowpass_kernel(self.cutoff, self.kernel_size, pad_to)
        iso = not self.family.endswith("aniso")
        args = (self.kernel_size, self.sig_x, self.sig_y, self.theta)
        if self.family in ("iso", "aniso"):
            kernel = bivariate_gaussian_kernel(*args, isotropic=iso)
        elif self.family.startswith("generalized"):
            kernel = generalized_gaussian_kernel(*args, self.beta, isotropic=iso)
        elif self.family.startswith("plateau"):
            kernel = plateau_kernel(*args, self.beta, isotropic=iso)
        else:
            raise ValueError(f"unknown kernel family {self.family!r} (known: {KERNEL_FAMILIES}, sinc, pulse)")
        pad = (pad_to - self.kernel_size) // 2
        return np.pad(kernel, ((pad, pad), (pad, pad))) if pad > 0 else kernel


def _split_beta(rng: np.random.Generator, beta_range: Sequence[float]) -> float:
    """BasicSR's shape draw: β ~ U(lo, 1) or U(1, hi) with probability 1/2 each (so β = 1 half the time for
    the plateau range [1, 2])."""
    if rng.uniform() < 0.5:
        return float(rng.uniform(beta_range[0], 1))
    return float(rng.uniform(1, beta_range[1]))


def random_mixed_kernel(
    rng: np.random.Generator,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    kernel_size: int,
    sigma_range: Sequence[float],
    rotation_range: Sequence[float],
    betag_range: Sequence[float],
    betap_range: Sequence[float],
) -> KernelSpec:
    """BasicSR ``random_mixed_kernels`` (no multiplicative noise): pick a family with ``kernel_prob``, then
    σx (and for anisotropic families σy, θ) uniformly, then β for generalized / plateau families."""
    p = np.asarray(kernel_prob, np.float64)
    family = kernel_list[int(rng.choice(len(kernel_list), p=p / p.sum()))]
    if family not in KERNEL_FAMILIES:
        raise ValueError(f"unknown kernel family {family!r} in kernel_list (known: {KERNEL_FAMILIES})")
    sig_x = float(rng.uniform(*sigma_range))
    sig_y, theta = sig_x, 0.0
    if family.endswith("aniso"):
        sig_y = float(rng.uniform(*sigma_range))
        theta = float(rng.uniform(*rotation_range))
    beta = 1.0
    if family.startswith("generalized"):
        beta = _split_beta(rng, betag_range)
    elif family.startswith("plateau"):
        beta = _split_beta(rng, betap_range)
    return KernelSpec(family, kernel_size, sig_x, sig_y, theta, beta)


def sample_blur_kernel(
    rng: np.random.Generator,
    kernel_sizes: Sequence[int],
    sinc_prob: float,
    sinc_cutoff: Sequence[float],
    sinc_cutoff_large: Sequence[float],
    **mixed: Any,
) -> KernelSpec:
    """The blur kernel of one degradation (``RealESRGANDataset``): a random odd size; with ``sinc_prob`` a
    sinc with ω_c ~ U(``sinc_cutoff``) (size < 13) or U(``sinc_cutoff_large``), otherwise
    ``random_mixed_kernel(**mixed)``."""
    kernel_size = int(rng.choice(kernel_sizes))
    if rng.uniform() < sinc_prob:
        cutoff = sinc_cutoff if kernel_size < 13 else sinc_cutoff_large
        return KernelSpec("sinc", kernel_size, cutoff=float(rng.uniform(*cutoff)))
    return random_mixed_kernel(rng, kernel_size=kernel_size, **mixed)


# ---------------------------------------------------------------------------------------------------------
# Filtering and sharpening (BasicSR img_process_util.py)
# ---------------------------------------------------------------------------------------------------------


def filter2d(img: Tensor, kernel: Tensor) -> Tensor:
    """Cross-correlate ``img`` (B, C, H, W) with ``kernel`` (1, k, k) shared, or (B, k, k) one per image,
    after a reflect pad of k//2 (BasicSR ``filter2D``); k odd, k//2 < H, W."""
    b, c, h, w = img.shape
    if kernel.dim() != 3 or kernel.shape[-1] % 2 == 0 or kernel.shape[0] not in (1, b):
        raise ValueError(
            f"filter2d needs a (1, k, k) or ({b}, k, k) kernel with k odd, got {tuple(kernel.shape)}"
        )
    k = kernel.shape[-1]
    x = F.pad(img, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    kernel = kernel.to(img.dtype)
    if kernel.shape[0] == 1:
        return F.conv2d(x.reshape(b * c, 1, *x.shape[-2:]), kernel.view(1, 1, k, k)).view(b, c, h, w)
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c).view(b, c, h, w)


class USMSharp(nn.Module):
    """Unsharp masking with a soft edge mask (BasicSR ``USMSharp``), used to sharpen GT targets.

    The Gaussian is ``cv2.getGaussianKernel(radius, sigma)`` (``radius`` made odd: 51 by default, σ = 8). The
    official code filters with the 2-D outer product ``kernel`` after a reflect pad; here the same linear map
    is applied as ``A_H · img · A_Wᵀ``, with the 1-D kernel and the reflect padding folded into the matrices
    (equal up to float rounding, and ~30x faster than a 51x51 convolution). Images need H, W > radius // 2.
    """

    def __init__(self, radius: int = 50, sigma: float = 0) -> None:
        super().__init__()
        if radius % 2 == 0:
            radius += 1
        self.radius = radius
        g = cv2.getGaussianKernel(radius, sigma)
        self.register_buffer(
            "kernel", torch.from_numpy(np.dot(g, g.T)).float().unsqueeze(0), persistent=False
        )
        self.register_buffer("kernel1d", torch.from_numpy(g[:, 0]), persistent=False)

    def _blur_matrix(self, n: int, like: Tensor) -> Tensor:
        """(n, n) matrix of the 1-D blur with reflect padding (``dcb|abcd|cba``), built in float64."""
        r = self.radius // 2
        if r >= n:
            raise ValueError(f"USMSharp(radius={self.radius}) needs images larger than {r} px, got {n}")
        padded = torch.arange(-r, n + r, device=like.device).abs()
        source = torch.where(padded > n - 1, 2 * (n - 1) - padded, padded)  # padded position -> pixel
        rows = torch.arange(n, device=like.device)[:, None].expand(n, self.radius)
        taps = source[rows + torch.arange(self.radius, device=like.device)]
        matrix = torch.zeros(n, n, dtype=torch.float64, device=like.device)
        matrix.index_put_((rows, taps), self.kernel1d.double().expand(n, -1), accumulate=True)
        return matrix.to(like.dtype)

    def blur(self, img: Tensor) -> Tensor:
        """``filter2d(img, kernel)``: the Gaussian blur with reflect padding."""
        h, w = img.shape[-2:]
        return self._blur_matrix(h, img) @ img @ self._blur_matrix(w, img).T

    def forward(self, img: Tensor, weight: float = 0.5, threshold: float = 10) -> Tensor:
        """``soft · clip(img + weight·(img − blur)) + (1 − soft) · img``, soft = blurred (|img − blur|·255 >
        threshold)."""
        residual = img - self.blur(img)
        soft_mask = self.blur((torch.abs(residual) * 255 > threshold).to(img.dtype))
        sharp = torch.clip(img + weight * residual, 0, 1)
        return soft_mask * sharp + (1 - soft_mask) * img


# ---------------------------------------------------------------------------------------------------------
# Noise (BasicSR degradations.py, the *_pt versions)
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Differentiable JPEG (BasicSR diffjpeg.py, after mlomnitz/DiffJPEG)
# ---------------------------------------------------------------------------------------------------------

# Quantisation tables as DiffJPEG applies them to [u][v] coefficients: the TRANSPOSE of the standard tables.
_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
).T
_CHROMA_TABLE = np.full((8, 8), 99, np.float32)
_CHROMA_TABLE[:4, :4] = np.array([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]).T
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1, -0.344136, -0.714136], [1, 1.772, 0]], np.float32)


def jpeg_quality_to_factor(quality: Tensor | float) -> Tensor | float:
    """IJG quality → table scale: ``5000/q`` below 50, ``200 − 2q`` otherwise, over 100 (per sample for a
    tensor; the input is not modified, unlike the official code)."""
    if isinstance(quality, Tensor):
        return torch.where(quality < 50, 5000.0 / quality, 200.0 - quality * 2) / 100.0
    return (5000.0 / quality if quality < 50 else 200.0 - quality * 2) / 100.0


def _diff_round(x: Tensor) -> Tensor:
    """DiffJPEG's differentiable rounding ``round(x) + (x − round(x))³``."""
    return torch.round(x) + (x - torch.round(x)) ** 3


def _to_blocks(plane: Tensor) -> Tensor:
    """(B, H, W) → (B, H·W/64, 8, 8), blocks in row-major order."""
    b, h, w = plane.shape
    return plane.view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, -1, 8, 8)


def _from_blocks(blocks: Tensor, h: int, w: int) -> Tensor:
    b = blocks.shape[0]
    return blocks.view(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


class DiffJPEG(nn.Module):
    """JPEG compression and decompression on tensors (BasicSR ``DiffJPEG``), batch-wise, per-sample quality.

    4:2:0 chroma subsampling, 8x8 DCT, quantisation by DiffJPEG's (transposed) standard tables scaled by the
    IJG quality factor, rounding (``torch.round``, or the cubic differentiable rounding when
    ``differentiable``). Images are zero-padded at the bottom/right to a multiple of 16 and cropped back.
    Slightly different from libjpeg (no entropy coding, no integer DCT); that is what the official pipeline
    trains with.
    """

    def __init__(self, differentiable: bool = False) -> None:
        super().__init__()
        self.rounding = _diff_round if differentiable else torch.round
        idx = np.arange(8)
        cos = np.cos((2 * idx[:, None] + 1) * idx[None, :] * np.pi / 16)  # [pixel x, frequency u]
        basis = (cos[:, None, :, None] * cos[None, :, None, :]).reshape(64, 64)  # [(x, y), (u, v)]
        alpha = np.array([1.0 / np.sqrt(2)] + [1] * 7)
        buffers = {
            "dct_basis": basis,
            "idct_basis": basis.T.copy(),  # [(u, v), (x, y)]
            "dct_scale": np.outer(alpha, alpha) * 0.25,
            "idct_alpha": np.outer(alpha, alpha),
            "y_table": _LUMA_TABLE,
            "c_table": _CHROMA_TABLE,
            "rgb_to_ycbcr": _RGB_TO_YCBCR,
            "ycbcr_to_rgb": _YCBCR_TO_RGB,
        }
        for name, value in buffers.items():
            self.register_buffer(name, torch.from_numpy(np.asarray(value)).float(), persistent=False)

    @staticmethod
    def _scaled(table: Tensor, factor: Tensor | float) -> Tensor:
        if isinstance(factor, Tensor):
            return table.expand(factor.shape[0], 1, 8, 8) * factor.view(-1, 1, 1, 1)
        return table * factor

    def coefficients(self, img: Tensor, factor: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """Pre-rounding quantised DCT coefficients ``D / (T·factor)`` of Y, Cb, Cr, each (B, nblocks, 8, 8),
        for ``img`` (B, 3, H, W) in [0, 1] with H, W multiples of 16."""
        pixels = img.permute(0, 2, 3, 1) * 255
        ycbcr = torch.tensordot(pixels, self.rgb_to_ycbcr.T, dims=1) + pixels.new_tensor([0.0, 128.0, 128.0])
        planes = {
            "y": ycbcr[..., 0],
            "cb": F.avg_pool2d(ycbcr[..., 1].unsqueeze(1), kernel_size=2, stride=2).squeeze(1),
            "cr": F.avg_pool2d(ycbcr[..., 2].unsqueeze(1), kernel_size=2, stride=2).squeeze(1),
        }
        out = []
        for name, plane in planes.items():
            blocks = _to_blocks(plane) - 128
            dct = self.dct_scale * (blocks.flatten(-2) @ self.dct_basis).view(blocks.shape)
            out.append(dct / self._scaled(self.y_table if name == "y" else self.c_table, factor))
        return out[0], out[1], out[2]

    def compress(self, img: Tensor, factor: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """Quantised (rounded) DCT coefficients of Y, Cb, Cr (see ``coefficients``)."""
        y, cb, cr = self.coefficients(img, factor)
        return self.rounding(y), self.rounding(cb), self.rounding(cr)

    def decompress(
        self, y: Tensor, cb: Tensor, cr: Tensor, size: tuple[int, int], factor: Tensor | float
    ) -> Tensor:
        """Dequantise, inverse DCT, merge blocks, upsample chroma (pixel repetition), back to RGB in [0, 1]:
        (B, 3, H, W) for the padded ``size`` = (H, W)."""
        h, w = size
        planes = []
        for coeffs, table, ph, pw in (
            (y, self.y_table, h, w),
            (cb, self.c_table, h // 2, w // 2),
            (cr, self.c_table, h // 2, w // 2),
        ):
            coeffs = coeffs * self._scaled(table, factor) * self.idct_alpha
            blocks = 0.25 * (coeffs.flatten(-2) @ self.idct_basis).view(coeffs.shape) + 128
            planes.append(_from_blocks(blocks, ph, pw))
        cb_up, cr_up = (p.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2) for p in planes[1:])
        ycbcr = torch.stack([planes[0], cb_up, cr_up], dim=-1) + y.new_tensor([0.0, -128.0, -128.0])
        rgb = torch.tensordot(ycbcr, self.ycbcr_to_rgb.T, dims=1).permute(0, 3, 1, 2)
        return torch.clamp(rgb, 0, 255) / 255

    def forward(self, img: Tensor, quality: Tensor | float) -> Tensor:
        """JPEG round trip of ``img`` (B, 3, H, W) in [0, 1] at ``quality`` (a number, or a (B,) tensor)."""
        h, w = img.shape[-2:]
        factor = jpeg_quality_to_factor(quality)
        x = F.pad(img, (0, -w % 16, 0, -h % 16), mode="constant", value=0)
        y, cb, cr = self.compress(x, factor)
        return self.decompress(y, cb, cr, (x.shape[-2], x.shape[-1]), factor)[:, :, :h, :w]


# ---------------------------------------------------------------------------------------------------------
# The second-order pipeline (Real-ESRGAN RealESRGANDataset + RealESRNetModel.feed_data)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resize:
    """One random resize: ``direction`` up / down / keep, the scale it drew, the interpolation mode."""

    direction: str
    scale: float
    mode: str


@dataclass(frozen=True)
class Noise:
    """One noise step: ``kind`` gaussian (``level`` = σ on the 0-255 scale) or poisson (``level`` = scale),
    per sample, with per-sample grey flags."""

    kind: str
    level: np.ndarray
    gray: np.ndarray


@dataclass(frozen=True)
class DegradationParams:
    """Every random choice of one batch (kernels per sample; resizes, noise type, orders per batch, as in the
    official code; σ / Poisson scale / grey flags / JPEG quality per sample)."""

    kernel1: list[KernelSpec]
    kernel2: list[KernelSpec]
    final_sinc: list[KernelSpec]
    resize1: Resize
    noise1: Noise
    jpeg1: np.ndarray
    second_blur: bool
    resize2: Resize
    noise2: Noise
    sinc_then_jpeg: bool
    final_mode: str
    jpeg2: np.ndarray
    crop_top: int
    crop_left: int
    pool_order: np.ndarray


class RealESRGANDegradation(nn.Module):
    """Real-ESRGAN second-order degradation of a GT batch into (LQ, GT, USM-sharpened GT) training pairs.

    ``forward(gt, generator)`` on (B, 3, H, W) GT in [0, 1] (the loader's hflip + 400-px crop/pad already
    applied), on the GT's device:

    1. per sample: kernel 1, kernel 2 (sinc with ``sinc_prob``, else a ``kernel_list`` family), final sinc
       (``final_sinc_prob``, else identity); sizes from ``kernel_sizes``, padded to the largest;
    2. blur (k1; of the USM-sharpened GT when ``blur_usm_gt``: DiffIR-RealSR V2), resize up / down / keep
       (``resize_prob`` over ``resize_range``, area / bilinear / bicubic), Gaussian (σ ∈ ``noise_range``, with
       ``gaussian_noise_prob``) or Poisson noise (``poisson_scale_range``), grey with ``gray_noise_prob``,
       JPEG (``jpeg_range``);
    3. blur (k2) with ``second_blur_prob``, resize to ``H/scale·s``, noise, then with probability 1/2
       [resize to H/scale + final sinc] + JPEG, otherwise JPEG + [resize + sinc];
    4. round to 8 bits, paired random crop (``gt_size``), and in training mode the training-pair pool of
       ``queue_size`` (shuffled, swapped batch-wise), whose state is saved by ``state_dict`` (extra state).

    Returns ``{"lq": (B, 3, gt_size/scale, gt_size/scale), "gt": (B, 3, gt_size, gt_size),
    "gt_usm": USM(gt)}``.
    Every random choice comes from ``generator`` (on the GT's device): numpy draws from a seed taken from it.
    The keyword defaults are the official DiffIR-RealSR / Real-ESRGAN options (``train_DiffIRS2_GAN_x4.yml``).
    """

    def __init__(
        self,
        scale: int,
        gt_size: int = 256,
        queue_size: int = 180,
        blur_usm_gt: bool = False,
        *,
        # kernels (RealESRGANDataset)
        kernel_sizes: Sequence[int] = (7, 9, 11, 13, 15, 17, 19, 21),
        kernel_list: Sequence[str] = KERNEL_FAMILIES,
        kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
        blur_sigma: Sequence[float] = (0.2, 3.0),
        betag_range: Sequence[float] = (0.5, 4.0),
        betap_range: Sequence[float] = (1.0, 2.0),
        sinc_prob: float = 0.1,
        kernel_list2: Sequence[str] = KERNEL_FAMILIES,
        kernel_prob2: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
        blur_sigma2: Sequence[float] = (0.2, 1.5),
        betag_range2: Sequence[float] = (0.5, 4.0),
        betap_range2: Sequence[float] = (1.0, 2.0),
        sinc_prob2: float = 0.1,
        final_sinc_prob: float = 0.8,
        rotation_range: Sequence[float] = (-math.pi, math.pi),
        sinc_cutoff: Sequence[float] = (math.pi / 3, math.pi),
        sinc_cutoff_large: Sequence[float] = (math.pi / 5, math.pi),
        # first degradation (feed_data)
        resize_prob: Sequence[float] = (0.2, 0.7, 0.1),
        resize_range: Sequence[float] = (0.15, 1.5),
        gaussian_noise_prob: float = 0.5,
        noise_range: Sequence[float] = (1.0, 30.0),
        poisson_scale_range: Sequence[float] = (0.05, 3.0),
        gray_noise_prob: float = 0.4,
        jpeg_range: Sequence[float] = (30.0, 95.0),
        # second degradation
        second_blur_prob: float = 0.8,
        resize_prob2: Sequence[float] = (0.3, 0.4, 0.3),
        resize_range2: Sequence[float] = (0.3, 1.2),
        gaussian_noise_prob2: float = 0.5,
        noise_range2: Sequence[float] = (1.0, 25.0),
        poisson_scale_range2: Sequence[float] = (0.05, 2.5),
        gray_noise_prob2: float = 0.4,
        jpeg_range2: Sequence[float] = (30.0, 95.0),
    ) -> None:
        super().__init__()
        if scale < 1 or gt_size % scale or gt_size <= 25:
            raise ValueError(
                f"RealESRGANDegradation: gt_size={gt_size} must be a multiple of scale={scale} >= 1 and > 25 "
                "(the USM sharpening of the GT crop reflect-pads by 25 px)"
            )
        if any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"RealESRGANDegradation: kernel_sizes must be odd, got {list(kernel_sizes)}")
        for name, families in (("kernel_list", kernel_list), ("kernel_list2", kernel_list2)):
            unknown = set(families) - set(KERNEL_FAMILIES)
            if unknown:
                raise ValueError(f"RealESRGANDegradation: {name} has unknown families {sorted(unknown)}")
        self.scale = scale
        self.gt_size = gt_size
        self.queue_size = queue_size
        self.blur_usm_gt = blur_usm_gt
        self.kernel_sizes = tuple(kernel_sizes)
        self.pad_to = max(self.kernel_sizes)
        # Per degradation (first, second): the kernel sampler's and the chain's options (tuples: Hydra hands lists).
        self.kernel_opts = [
            {
                "sinc_prob": p_sinc,
                "sinc_cutoff": tuple(sinc_cutoff),
                "sinc_cutoff_large": tuple(sinc_cutoff_large),
                "kernel_list": tuple(k_list),
                "kernel_prob": tuple(k_prob),
                "sigma_range": tuple(sigma),
                "rotation_range": tuple(rotation_range),
                "betag_range": tuple(betag),
                "betap_range": tuple(betap),
            }
            for p_sinc, k_list, k_prob, sigma, betag, betap in (
                (sinc_prob, kernel_list, kernel_prob, blur_sigma, betag_range, betap_range),
                (sinc_prob2, kernel_list2, kernel_prob2, blur_sigma2, betag_range2, betap_range2),
            )
        ]
        self.stage_opts = [
            {
                "resize_prob": tuple(resize_prob),
                "resize_range": tuple(resize_range),
                "gaussian_noise_prob": gaussian_noise_prob,
                "noise_range": tuple(noise_range),
                "poisson_scale_range": tuple(poisson_scale_range),
                "gray_noise_prob": gray_noise_prob,
                "jpeg_range": tuple(jpeg_range),
            },
            {
                "resize_prob": tuple(resize_prob2),
                "resize_range": tuple(resize_range2),
                "gaussian_noise_prob": gaussian_noise_prob2,
                "noise_range": tuple(noise_range2),
                "poisson_scale_range": tuple(poisson_scale_range2),
                "gray_noise_prob": gray_noise_prob2,
                "jpeg_range": tuple(jpeg_range2),
            },
        ]
        self.final_sinc_prob = final_sinc_prob
        self.sinc_cutoff = tuple(sinc_cutoff)
        self.second_blur_prob = second_blur_prob
        self.usm = USMSharp()
        self.jpeg = DiffJPEG(differentiable=False)
        self._reset_pool()

    # ----- random parameters ---------------------------------------------------------------------------

    def _resize(
        self, rng: np.random.Generator, probs: Sequence[float], scale_range: Sequence[float]
    ) -> Resize:
        p = np.asarray(probs, np.float64)
        direction = ("up", "down", "keep")[int(rng.choice(3, p=p / p.sum()))]
        value = 1.0
        if direction == "up":
            value = float(rng.uniform(1, scale_range[1]))
        elif direction == "down":
            value = float(rng.uniform(scale_range[0], 1))
        return Resize(direction, value, RESIZE_MODES[int(rng.integers(3))])

    @staticmethod
    def _noise(rng: np.random.Generator, batch: int, opts: dict[str, Any]) -> Noise:
        gaussian = rng.uniform() < opts["gaussian_noise_prob"]
        lo, hi = opts["noise_range"] if gaussian else opts["poisson_scale_range"]
        level = rng.uniform(lo, hi, size=batch)
        gray = (rng.uniform(size=batch) < opts["gray_noise_prob"]).astype(np.float64)
        return Noise("gaussian" if gaussian else "poisson", level, gray)

    def _final_sinc(self, rng: np.random.Generator) -> KernelSpec:
        if rng.uniform() < self.final_sinc_prob:
            size = int(rng.choice(self.kernel_sizes))
            return KernelSpec("sinc", size, cutoff=float(rng.uniform(*self.sinc_cutoff)))
        return KernelSpec("pulse", self.pad_to)

    def sample_params(self, shape: Sequence[int], generator: torch.Generator) -> DegradationParams:
        """All random choices for a GT batch of ``shape`` (B, C, H, W), from ``generator``."""
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())
        rng = np.random.default_rng(seed)
        b, h, w = shape[0], shape[-2], shape[-1]
        kernels = [
            [sample_blur_kernel(rng, self.kernel_sizes, **opts) for _ in range(b)]
            for opts in self.kernel_opts
        ]
        final_sinc = [self._final_sinc(rng) for _ in range(b)]
        stages = []
        for opts in self.stage_opts:
            resize = self._resize(rng, opts["resize_prob"], opts["resize_range"])
            stages.append((resize, self._noise(rng, b, opts), rng.uniform(*opts["jpeg_range"], size=b)))
        second_blur = bool(rng.uniform() < self.second_blur_prob)
        sinc_then_jpeg = bool(rng.uniform() < 0.5)
        final_mode = RESIZE_MODES[int(rng.integers(3))]
        lq_patch = self.gt_size // self.scale
        crop_top = int(rng.integers(max(h // self.scale - lq_patch, 0) + 1))
        crop_left = int(rng.integers(max(w // self.scale - lq_patch, 0) + 1))
        return DegradationParams(
            kernel1=kernels[0],
            kernel2=kernels[1],
            final_sinc=final_sinc,
            resize1=stages[0][0],
            noise1=stages[0][1],
            jpeg1=stages[0][2],
            second_blur=second_blur,
            resize2=stages[1][0],
            noise2=stages[1][1],
            sinc_then_jpeg=sinc_then_jpeg,
            final_mode=final_mode,
            jpeg2=stages[1][2],
            crop_top=crop_top,
            crop_left=crop_left,
            pool_order=rng.permutation(self.queue_size),
        )

    # ----- the deterministic chain ---------------------------------------------------------------------

    def _kernels(self, specs: list[KernelSpec], like: Tensor) -> Tensor:
        stacked = np.stack([spec.render(self.pad_to) for spec in specs])
        return torch.from_numpy(stacked).float().to(device=like.device, dtype=like.dtype)

    def _add_noise(self, img: Tensor, noise: Noise, generator: torch.Generator) -> Tensor:
        level, gray = torch.from_numpy(noise.level).float(), torch.from_numpy(noise.gray).float()
        if noise.kind == "gaussian":
            return add_gaussian_noise(img, level, gray, generator)
        return add_poisson_noise(img, level, gray, generator)

    def _jpeg(self, img: Tensor, quality: np.ndarray) -> Tensor:
        q = torch.from_numpy(quality).to(device=img.device, dtype=img.dtype)
        return self.jpeg(torch.clamp(img, 0, 1), q)

    @torch.no_grad()
    def degrade(self, gt: Tensor, params: DegradationParams, generator: torch.Generator) -> Tensor:
        """The full-size LQ (B, 3, H/scale, W/scale), rounded to 8 bits, of ``gt`` under ``params`` (the noise
        fields are drawn from ``generator``): no crop, no pool, so ``sample_params`` + ``degrade`` also make
        the LQ of whole validation images (sides >= ``min_side``)."""
        h, w = gt.shape[-2:]
        out = filter2d(self.usm(gt) if self.blur_usm_gt else gt, self._kernels(params.kernel1, gt))
        out = F.interpolate(out, scale_factor=params.resize1.scale, mode=params.resize1.mode)
        out = self._add_noise(out, params.noise1, generator)
        out = self._jpeg(out, params.jpeg1)

        if params.second_blur:
            out = filter2d(out, self._kernels(params.kernel2, gt))
        size2 = (int(h / self.scale * params.resize2.scale), int(w / self.scale * params.resize2.scale))
        out = F.interpolate(out, size=size2, mode=params.resize2.mode)
        out = self._add_noise(out, params.noise2, generator)

        sinc = self._kernels(params.final_sinc, gt)
        size = (h // self.scale, w // self.scale)
        if params.sinc_then_jpeg:
            out = filter2d(F.interpolate(out, size=size, mode=params.final_mode), sinc)
            out = self._jpeg(out, params.jpeg2)
        else:
            out = self._jpeg(out, params.jpeg2)
            out = filter2d(F.interpolate(out, size=size, mode=params.final_mode), sinc)
        return torch.clamp((out * 255.0).round(), 0, 255) / 255.0

    @property
    def min_side(self) -> int:
        """Smallest GT side ``degrade`` supports: the reflect padding of the blurs needs more pixels than the
        kernel radius after the strongest first downscale and at the LQ size (74 px with the defaults; the
        crop in ``forward`` also needs ``gt_size``)."""
        pad = self.pad_to // 2
        return max(math.ceil((pad + 1) / self.stage_opts[0]["resize_range"][0]), (pad + 1) * self.scale)

    def _check_input(self, gt: Tensor, generator: torch.Generator) -> None:
        if gt.dim() != 4 or gt.shape[1] != 3:
            raise ValueError(f"RealESRGANDegradation expects a (B, 3, H, W) GT batch, got {tuple(gt.shape)}")
        if generator.device.type != gt.device.type:
            raise ValueError(
                f"RealESRGANDegradation: the generator is on {generator.device} but the GT batch on "
                f"{gt.device}; create the generator on the batch's device"
            )
        h, w = gt.shape[-2:]
        need = max(self.gt_size, self.min_side)
        if min(h, w) < need or h % self.scale or w % self.scale:
            raise ValueError(
                f"RealESRGANDegradation: GT batch {h}x{w} must have sides >= {need} and multiples of "
                f"scale={self.scale} (gt_size={self.gt_size}, {self.pad_to}-px kernels, first resize down to "
                f"x{self.stage_opts[0]['resize_range'][0]}); the official loader hands 400-px crops"
            )
        if self.training and self.queue_size and self.queue_size % gt.shape[0]:
            raise ValueError(
                f"RealESRGANDegradation: queue_size={self.queue_size} must be a multiple of the batch size "
                f"{gt.shape[0]}"
            )

    @torch.no_grad()
    def forward(self, gt: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Degrade ``gt`` (B, 3, H, W) in [0, 1] into ``{"lq", "gt", "gt_usm"}`` (see the class docstring)."""
        self._check_input(gt, generator)
        params = self.sample_params(gt.shape, generator)
        lq = self.degrade(gt, params, generator)
        lq_patch = self.gt_size // self.scale
        top, left = params.crop_top, params.crop_left
        lq = lq[:, :, top : top + lq_patch, left : left + lq_patch]
        top, left = top * self.scale, left * self.scale
        gt = gt[:, :, top : top + self.gt_size, left : left + self.gt_size]
        if self.training and self.queue_size:
            lq, gt = self._pool(lq, gt, params.pool_order)
        # USM of the (possibly pooled) crop, as the official model re-sharpens after the pool.
        return {"lq": lq.contiguous(), "gt": gt.contiguous(), "gt_usm": self.usm(gt)}

    # ----- the training-pair pool ----------------------------------------------------------------------

    def _reset_pool(self) -> None:
        self.queue_lq: Tensor | None = None
        self.queue_gt: Tensor | None = None
        self.queue_ptr = 0

    def _pool(self, lq: Tensor, gt: Tensor, order: np.ndarray) -> tuple[Tensor, Tensor]:
        """Real-ESRGAN's ``_dequeue_and_enqueue``: fill the pool batch by batch (returning the batch itself);
        once full, shuffle it, hand out its first B pairs and put the new batch in their place."""
        b = lq.shape[0]
        if self.queue_lq is None:
            self.queue_lq = lq.new_zeros(self.queue_size, *lq.shape[1:])
            self.queue_gt = gt.new_zeros(self.queue_size, *gt.shape[1:])
        if self.queue_lq.shape[1:] != lq.shape[1:] or self.queue_gt.shape[1:] != gt.shape[1:]:
            raise ValueError(
                f"RealESRGANDegradation: the pool holds {tuple(self.queue_gt.shape[1:])} GT crops, got "
                f"{tuple(gt.shape[1:])}; keep gt_size fixed during a run"
            )
        self.queue_lq, self.queue_gt = self.queue_lq.to(lq.device), self.queue_gt.to(gt.device)
        if self.queue_ptr < self.queue_size:
            self.queue_lq[self.queue_ptr : self.queue_ptr + b] = lq
            self.queue_gt[self.queue_ptr : self.queue_ptr + b] = gt
            self.queue_ptr += b
            return lq, gt
        idx = torch.from_numpy(order).to(lq.device)
        self.queue_lq, self.queue_gt = self.queue_lq[idx], self.queue_gt[idx]
        lq_out, gt_out = self.queue_lq[:b].clone(), self.queue_gt[:b].clone()
        self.queue_lq[:b], self.queue_gt[:b] = lq, gt
        return lq_out, gt_out

    def get_extra_state(self) -> dict[str, Any]:
        """The pool (filled part) and its fill pointer, so a resumed run repeats an uninterrupted one."""
        if self.queue_lq is None:
            return {"queue_ptr": 0}
        n = self.queue_ptr
        return {"queue_ptr": n, "queue_lq": self.queue_lq[:n].clone(), "queue_gt": self.queue_gt[:n].clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._reset_pool()
        n = int(state.get("queue_ptr", 0))
        if n == 0:
            return
        if n > self.queue_size:
            raise ValueError(
                f"RealESRGANDegradation: checkpoint pool holds {n} pairs but queue_size={self.queue_size}"
            )
        lq, gt = state["queue_lq"], state["queue_gt"]
        self.queue_lq = lq.new_zeros(self.queue_size, *lq.shape[1:])
        self.queue_gt = gt.new_zeros(self.queue_size, *gt.shape[1:])
        self.queue_lq[:n], self.queue_gt[:n] = lq, gt
        self.queue_ptr = n
