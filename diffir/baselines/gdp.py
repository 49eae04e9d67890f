"""GDP (Fei et al., CVPR 2023): training-free restoration by guiding an unconditional DDPM prior with the
degraded image y through a known (or blind, estimated) degradation operator D (docs/baselines.md §4).

At every reverse step: ε̂ = ε_θ(x_t, t) without gradient, x̂_0 = clip(...), μ = posterior mean, then
``g = ∇_z(−s·mse(D((z+1)/2), y))`` with z = x̂_0 (GDP-x0, default) or z = x_t (GDP-xt) — never through the
network — and ``x_{t−1} = μ + g + σz``. Blind operators update their parameters φ ← φ − ∂mse/∂φ (lr 1) at
each step. The scale is given as GDP's value for 3·256² outputs and rescaled to keep s/N constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.imresize import imresize
from ..restoration import pad_to_multiple
from .methods import DDPMPrior
from .samplers import Sampler
from .schedules import space_timesteps

GDP_NUMEL = 3 * 256 * 256  # N of GDP's outputs (196,608): the scales below are for this size
# GDP-x0's code defaults of s, per task it restores here (the tasks of task_operator, and of eval.py method=gdp)
GDP_SCALES = {"sr": 2000.0, "deblur": 6000.0, "inpainting": 4000.0}


class Operator(nn.Module):
    """A degradation D on [0, 1] images (B, 3, H, W); blind operators hold parameters φ fitted during sampling."""

    blind = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BicubicDown(Operator):
    """MATLAB-bicubic ↓``scale`` as an exact linear map ``D(x) = A_h x A_wᵀ`` per channel (no 8-bit rounding).

    A_h (h×H) holds the weights of :func:`diffir.data.imresize.imresize`, read off by resizing the identity.
    """

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self._mats: dict[int, torch.Tensor] = {}

    def matrix(self, length: int) -> torch.Tensor:
        """The (length/scale × length) resampling matrix of one axis."""
        if length % self.scale:
            raise ValueError(f"image side {length} is not a multiple of the SR scale {self.scale}")
        if length not in self._mats:
            eye = np.eye(length, dtype=np.float64)[:, None, :]  # H x 1 x H: column j (a "channel") is e_j
            self._mats[length] = torch.from_numpy(imresize(eye, 1.0 / self.scale)[:, 0, :])
        return self._mats[length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = (self.matrix(n).to(x) for n in x.shape[-2:])
        return a_h @ x @ a_w.T


class BlockMean(Operator):
    """GDP's own SR operator: the mean of each ``scale``×``scale`` block, replicated back (a projection)."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(F.avg_pool2d(x, self.scale), scale_factor=self.scale, mode="nearest")


class Blur(Operator):
    """Convolution with a known kernel: ``padding="reflect"`` is the project's blur (``apply_kernel``:
    BORDER_REFLECT_101), ``"valid"`` GDP's (output smaller by kernel − 1)."""

    def __init__(self, kernel: torch.Tensor | np.ndarray, padding: str = "reflect") -> None:
        super().__init__()
        if padding not in ("reflect", "valid"):
            raise ValueError(f"padding must be 'reflect' or 'valid', got {padding!r}")
        kernel = torch.as_tensor(np.asarray(kernel), dtype=torch.float32)
        if kernel.ndim == 2:
            kernel = kernel[None]
        self.register_buffer("kernel", kernel)  # (B or 1, k, k)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return convolve(x, self.kernel, self.padding)


def convolve(x: torch.Tensor, kernel: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Per-sample, per-channel true convolution of (B, C, H, W) with (B or 1, k, k) kernels."""
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    if padding == "reflect":
        x = F.pad(x, (k // 2,) * 4, mode="reflect")
    weight = kernel.flip(-1, -2).to(x).expand(b, k, k).repeat_interleave(c, dim=0)[:, None]
    out = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c)
    return out.reshape(b, c, *out.shape[-2:])


def gaussian_kernel(size: int = 9, nsig: float = 2.0) -> torch.Tensor:
    """GDP's ``gkern``: the outer product of Gaussian CDF differences on [−nsig, nsig], normalised."""
    from scipy.stats import norm

    x = np.linspace(-nsig, nsig, size + 1)
    k1 = np.diff(norm.cdf(x))
    k2 = np.outer(k1, k1)
    return torch.from_numpy(k2 / k2.sum()).float()


class Mask(Operator):
    """Inpainting: ``D(x) = x ⊙ (1 − m)`` with m = 1 on the holes (the mean counts all pixels, as GDP's H_pinv)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 - self.mask.to(x))


class BlindScaleOffset(Operator):
    """GDP's blind low-light model ``D(x) = f·x + M``: f = randn/100, M = rand(H, W)/10⁴ shared by channels."""

    blind = True

    def __init__(self, size: tuple[int, int], generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.f = nn.Parameter(torch.randn(1, generator=generator) / 100)
        self.M = nn.Parameter(torch.rand(*size, generator=generator) / 10000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f * x + self.M


class BlindBlur(Operator):
    """Unknown blur (GoPro), not in GDP: a softmax-parameterised ``size``×``size`` kernel initialised as a
    (near-)delta and fitted like f and M (reflect padding, as the project's blur)."""

    blind = True

    def __init__(self, size: int = 31, sharpness: float = 10.0) -> None:
        super().__init__()
        logits = torch.zeros(size, size)
        logits[size // 2, size // 2] = sharpness
        self.logits = nn.Parameter(logits)

    @property
    def kernel(self) -> torch.Tensor:
        return torch.softmax(self.logits.flatten(), 0).reshape(self.logits.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return convolve(x, self.kernel[None], "reflect")


def task_operator(
    task: str,
    lq: torch.Tensor,
    scale: int = 4,
    mask: torch.Tensor | None = None,
    kernel: torch.Tensor | np.ndarray | None = None,
) -> tuple[Operator, torch.Tensor]:
    """GDP's operator for a project task and the observation y in [0, 1]: SR → MATLAB bicubic ↓scale (y = the
    LR image), deblurring → the known ``kernel`` (reflect padding, as the synthetic blur) or, without one,
    :class:`BlindBlur` (e.g. GoPro), inpainting → the ``mask`` (y = the masked RGB of the 4-channel input)."""
    if task == "sr":
        return BicubicDown(scale), lq
    if task == "deblur":
        return (Blur(kernel) if kernel is not None else BlindBlur()), lq
    if task == "inpainting":
        if mask is None:
            raise ValueError("GDP inpainting needs the mask (1 = hole)")
        return Mask(mask), lq[:, :3]
    raise ValueError(f"GDP has no operator for task {task!r} ({', '.join(GDP_SCALES)})")


class GDPGuidance:
    """The guidance term of one step: ``g = −s·∂mse/∂z`` (z = x̂_0 or x_t in [−1, 1]) and, for blind operators,
    the lr-1 update of φ. ``mse`` is the mean over each image's elements of (D((z+1)/2) − y)², summed over the
    batch (so s does not depend on the batch size)."""

    def __init__(
        self, operator: Operator, y: torch.Tensor, scale: float, mode: str = "x0", crop: tuple | None = None
    ):
        if mode not in ("x0", "xt"):
            raise ValueError(f"GDP guidance mode must be 'x0' or 'xt', got {mode!r}")
        self.operator, self.y, self.scale, self.mode, self.crop = operator, y, scale, mode, crop
        self.last_mse = float("nan")

    def mse(self, z: torch.Tensor) -> torch.Tensor:
        x = (z + 1) / 2
        if self.crop is not None:
            x = x[..., : self.crop[0], : self.crop[1]]
        return ((self.operator(x) - self.y) ** 2).flatten(1).mean(1).sum()

    def __call__(self, x0: torch.Tensor, x_t: torch.Tensor, i: int) -> torch.Tensor:
        params = [p for p in self.operator.parameters() if p.requires_grad] if self.operator.blind else []
        with torch.enable_grad():
            z = (x0 if self.mode == "x0" else x_t).detach().requires_grad_(True)
            mse = self.mse(z)
            grads = torch.autograd.grad(mse, [z, *params])
            mse = mse.detach()
        self.last_mse = mse.item()
        with torch.no_grad():
            for p, grad in zip(params, grads[1:], strict=True):
                p.sub_(grad)
        return -self.scale * grads[0]


class GDP(nn.Module):
    """GDP restoration with a :class:`DDPMPrior`: ``restore(y, operator, size)``.

    ``scale`` is GDP's s for 3·256² outputs (None: the task's GDP-x0 default) and is rescaled by N/196608 with
    N = 3·H·W of the output; ``steps=None`` runs all T ancestral steps (GDP), ``steps=S`` the untested fast
    DDIM variant (η = ``eta``) with s multiplied by T/S.
    """

    def __init__(
        self,
        prior: DDPMPrior,
        task: str = "sr",
        scale: float | None = None,
        mode: str = "x0",
        steps: int | None = None,
        eta: float = 0.0,
    ) -> None:
        super().__init__()
        self.prior = prior.requires_grad_(False).eval()
        self.task, self.mode, self.steps, self.eta = task, mode, steps, eta
        self.paper_scale = GDP_SCALES.get(task, 2000.0) if scale is None else float(scale)

    def sampler(self) -> tuple[Sampler, list[float], float]:
        total = self.prior.schedule.num_timesteps
        if self.steps is None or self.steps >= total:
            return Sampler(self.prior.schedule, "ddpm"), [float(t) for t in range(total)], 1.0
        taus = space_timesteps(total, self.steps)
        return (
            Sampler(self.prior.schedule.respace(taus), "ddim", eta=self.eta),
            [float(t) for t in taus],
            total / len(taus),
        )

    def effective_scale(self, size: tuple[int, int], factor: float = 1.0) -> float:
        """s·N/196608 (keeps s/N constant), times T/S for the fast variant."""
        return self.paper_scale * 3 * size[0] * size[1] / GDP_NUMEL * factor

    @torch.no_grad()
    def restore(
        self,
        y: torch.Tensor,
        operator: Operator,
        size: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, GDPGuidance]:
        """Sample x (1..B, 3, H, W) in [0, 1] with ``operator(x) ≈ y`` (y in [0, 1], at its own size). The
        prior runs on x reflect-padded to its multiple; D sees the H×W crop."""
        h, w = size
        padded_h, padded_w = pad_to_multiple(torch.zeros(1, 1, h, w), self.prior.size_multiple)[0].shape[-2:]
        sampler, taus, factor = self.sampler()
        guidance = GDPGuidance(operator, y, self.effective_scale(size, factor), self.mode, crop=(h, w))

        def eps_fn(x: torch.Tensor, i: int) -> torch.Tensor:
            return self.prior.eps(x, taus[i])

        x = sampler.sample(eps_fn, (y.shape[0], 3, padded_h, padded_w), generator, y.device, guidance)
        return ((x[..., :h, :w] + 1) / 2).clamp(0, 1), guidance

    def describe(self) -> dict[str, Any]:
        sampler, _, _ = self.sampler()
        return {"method": "gdp", "mode": self.mode, "scale": self.paper_scale, "nfe": sampler.steps}
