"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), batch-wise on the training device.

DiffIR-RealSR trains on LQ images synthesised from clean GT crops with the Real-ESRGAN pipeline of BasicSR /
Real-ESRGAN (``RealESRGANDataset``, ``RealESRNetModel.feed_data``): :class:`RealESRGANDegradation` draws the
official random parameters (docs/method.md §4.2) and chains the parts of this package (``kernels``,
``sharpen``, ``noise``, ``jpeg``, ``pool``), drawing every random number from one ``torch.Generator`` so that
a batch is a function of the caller's (seed, step, rank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .jpeg import DiffJPEG
from .kernels import KERNEL_FAMILIES, KernelSpec, filter2d, sample_blur_kernel
from .noise import add_gaussian_noise, add_poisson_noise
from .pool import TrainingPairPool
from .sharpen import USMSharp

RESIZE_MODES = ("area", "bilinear", "bicubic")


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


class RealESRGANDegradation(TrainingPairPool, nn.Module):
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

    def degrade_batch(self, batch: dict[str, Tensor], seed: int, flip: bool) -> dict[str, Tensor]:
        """A loader batch of GT images with the training pair made on its device (the LightningModule's
        ``degradation``): ``forward``'s ``{"lq", "gt", "gt_usm"}`` replace the batch's, every random draw from a
        generator on the batch's device seeded by ``seed``; with ``flip`` (training) first Real-ESRGAN's only
        augmentation, horizontal flips with probability 1/2."""
        gt = batch["gt"]
        generator = torch.Generator(gt.device).manual_seed(seed)
        if flip:
            flipped = torch.rand(gt.shape[0], generator=generator, device=gt.device) < 0.5
            gt = torch.where(flipped[:, None, None, None], gt.flip(-1), gt)
        return {**batch, **self(gt, generator)}
