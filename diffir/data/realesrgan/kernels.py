"""Real-ESRGAN's blur kernels: the kernel families, their random draw, and the filtering that applies them.

BasicSR ``degradations.py`` (``bivariate_Gaussian``, ``bivariate_generalized_Gaussian``, ``bivariate_plateau``,
``circular_lowpass_kernel``, ``random_mixed_kernels``), the kernel draw of ``RealESRGANDataset`` and
``img_process_util.filter2D`` (docs/method.md §4.2). Kernels are made in numpy float64, as the official dataset
makes them, and handed on as float32 tensors by the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F
from scipy import special
from torch import Tensor

KERNEL_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


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
