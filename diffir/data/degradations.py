"""Synthetic degradations: one ``Degradation`` per task, all called as ``degradation(gt, rng) -> dict``.

``gt`` is a float32 ``H x W x 3`` image in [0, 1]; the result holds ``lq`` (the network input, ``h x w x C``)
and task extras (``mask`` for inpainting, ``kernel`` for deblurring). Datasets never branch on the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from diffir.data.imresize import bicubic_downsample
from diffir.data.masks import RngLike


class Degradation(ABC):
    """Turns a clean crop into the network input; ``scale`` = GT size / LQ size (crops are multiples)."""

    scale: int = 1

    @abstractmethod
    def __call__(self, gt: np.ndarray, rng: RngLike = None) -> dict[str, np.ndarray]:
        """Degrade ``gt`` (H x W x 3 float32 in [0, 1]); ``rng`` is a numpy Generator or a seed."""


def quantize(img: np.ndarray) -> np.ndarray:
    """Round a [0, 1] float image to the 8-bit grid, as saving and re-reading a PNG would."""
    return (np.clip(np.round(img * 255.0), 0, 255) / 255.0).astype(np.float32)


def random_motion_kernel(
    size: int = 31,
    rng: RngLike = None,
    *,
    extent_range: Sequence[float] = (0.3, 1.0),
    anxiety_range: Sequence[float] = (0.003, 0.01),
    exposure_range: Sequence[float] = (0.1, 1.0),
    iters: int = 2000,
) -> np.ndarray:
    """A random camera-shake blur kernel: a Boracchi & Foi (2012) trajectory rasterised to ``size x size``.

    The trajectory is the one DeblurGAN uses: a particle with inertia, Gaussian jitter, a centripetal pull
    and occasional abrupt turns; ``anxiety`` ~ U(``anxiety_range``) scales the randomness (0 gives a straight
    line; DeblurGAN draws it from 0.003-0.01). The first ``U(exposure_range)`` of it is kept (the exposure
    time: short ones give near-linear blur, long ones loops), centred on its centre of mass (so blurring does
    not shift the image), scaled to reach ``U(extent_range)`` of the kernel radius and bilinearly splatted
    into a kernel that sums to 1.
    """
    _check_kernel_size(size)
    rng = np.random.default_rng(rng)
    anxiety = rng.uniform(*anxiety_range)
    centripetal = 0.7 * rng.uniform()
    prob_big_shake = 0.2 * rng.uniform()
    gaussian_shake = 10.0 * rng.uniform()
    big_shake = (rng.uniform(size=iters - 1) < prob_big_shake * anxiety).tolist()
    turn = np.exp(1j * (np.pi + rng.uniform(size=iters - 1) - 0.5)).tolist()
    jitter = (rng.standard_normal(iters - 1) + 1j * rng.standard_normal(iters - 1)).tolist()

    # DeblurGAN's 60 px path (it sets the strength of the centripetal pull; the kernel is rescaled below).
    # Python complex scalars are ~10x faster than numpy ones in this inherently sequential loop.
    step = 60.0 / (iters - 1)
    v = complex(np.exp(1j * rng.uniform(0, 2 * np.pi))) * step
    pos = [0j] * iters
    for t in range(iters - 1):
        dv = anxiety * (gaussian_shake * jitter[t] - centripetal * pos[t]) * step
        if big_shake[t]:
            dv += 2 * v * turn[t]
        v += dv
        v *= step / abs(v)
        pos[t + 1] = pos[t] + v

    traj = np.asarray(pos[: max(2, round(rng.uniform(*exposure_range) * iters))])
    traj -= traj.mean()
    half = (size - 1) / 2
    traj *= rng.uniform(*extent_range) * half / max(np.abs(traj.real).max(), np.abs(traj.imag).max())
    return _splat(traj + complex(half, half), size)


def _check_kernel_size(size: int) -> None:
    if size < 3 or size % 2 == 0:
        raise ValueError(f"motion-blur kernel size must be odd and >= 3, got {size}")


def _splat(points: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly splat complex points ``x + iy`` in [0, size-1] into a ``size x size`` kernel of sum 1."""
    kernel = np.zeros((size, size), np.float64)
    x0 = np.clip(np.floor(points.real).astype(int), 0, size - 2)
    y0 = np.clip(np.floor(points.imag).astype(int), 0, size - 2)
    fx, fy = points.real - x0, points.imag - y0
    np.add.at(kernel, (y0, x0), (1 - fx) * (1 - fy))
    np.add.at(kernel, (y0, x0 + 1), fx * (1 - fy))
    np.add.at(kernel, (y0 + 1, x0), (1 - fx) * fy)
    np.add.at(kernel, (y0 + 1, x0 + 1), fx * fy)
    return (kernel / kernel.sum()).astype(np.float32)


def apply_kernel(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of an ``H x W [x C]`` float image with ``kernel`` (reflect padding, dcb|abcd)."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)  # filter2D correlates
    return cv2.filter2D(img.astype(np.float32), -1, flipped, borderType=cv2.BORDER_REFLECT_101)


class SRDegradation(Degradation):
    """Bicubic SR: LQ = MATLAB ``imresize(gt, 1/scale)`` rounded to 8 bits (as DIV2K's LR images)."""

    def __init__(self, scale: int = 4) -> None:
        self.scale = scale

    def __call__(self, gt: np.ndarray, rng: RngLike = None) -> dict[str, np.ndarray]:
        if gt.shape[0] % self.scale or gt.shape[1] % self.scale:
            raise ValueError(f"GT size {gt.shape[:2]} is not a multiple of the SR scale {self.scale}")
        return {"lq": bicubic_downsample(gt, self.scale)}


class MotionBlurDegradation(Degradation):
    """Motion deblurring: LQ = GT convolved with a random camera-shake kernel, rounded to 8 bits."""

    def __init__(
        self,
        kernel_size: int = 31,
        extent_range: Sequence[float] = (0.3, 1.0),
        anxiety_range: Sequence[float] = (0.003, 0.01),
        exposure_range: Sequence[float] = (0.1, 1.0),
    ) -> None:
        _check_kernel_size(kernel_size)  # fail at construction, not later in a data-loader worker
        self.kernel_size = kernel_size
        self.extent_range = tuple(extent_range)
        self.anxiety_range = tuple(anxiety_range)
        self.exposure_range = tuple(exposure_range)

    def __call__(self, gt: np.ndarray, rng: RngLike = None) -> dict[str, np.ndarray]:
        kernel = random_motion_kernel(
            self.kernel_size,
            rng,
            extent_range=self.extent_range,
            anxiety_range=self.anxiety_range,
            exposure_range=self.exposure_range,
        )
        return {"lq": quantize(apply_kernel(gt, kernel)), "kernel": kernel}


class InpaintingDegradation(Degradation):
    """Inpainting: LQ = ``cat[gt * (1 - mask), mask]`` (4 channels), the DiffIR/LaMa generator input."""

    def __init__(self, mask_generator: Callable[[tuple[int, int], RngLike], np.ndarray]) -> None:
        self.mask_generator = mask_generator

    def __call__(self, gt: np.ndarray, rng: RngLike = None) -> dict[str, np.ndarray]:
        mask = self.mask_generator(gt.shape[:2], rng)[..., None]
        lq = np.concatenate([gt * (1 - mask), mask], axis=-1).astype(np.float32)
        return {"lq": lq, "mask": mask.transpose(2, 0, 1)}


class CleanCrop(Degradation):
    """Real-world SR: the loader hands the clean GT crop (as ``lq`` too); the LQ is made later, batch-wise on
    the training device, by ``diffir.data.realesrgan.RealESRGANDegradation``.

    ``scale`` is the SR factor that pipeline applies, so the dataset's scale checks and crop multiples hold.
    """

    def __init__(self, scale: int = 1) -> None:
        self.scale = scale

    def __call__(self, gt: np.ndarray, rng: RngLike = None) -> dict[str, np.ndarray]:
        return {"lq": gt}
