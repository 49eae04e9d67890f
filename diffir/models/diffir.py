"""DiffIR wrappers with the official part names (docs/method.md §1.5): ``DiffIRS1(G, E)`` and
``DiffIRS2(G, condition, denoise)``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cpen import CPEN
from .diffusion import Denoiser, IPRDiffusion
from .dirformer import DIRformer


def _size_multiple(G: DIRformer, *cpens: CPEN) -> int:  # noqa: N803
    multiple = G.size_multiple
    for cpen in cpens:
        multiple = max(multiple, cpen.lq_unshuffle)
    return multiple


class _Restorer:
    """What a restoration needs to know of a DiffIR model, read off its DIRformer ``G``."""

    G: DIRformer
    config: dict[str, Any]  # build_model's arguments, set by it: what rebuilds the model from a model file

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``: :func:`diffir.save_pretrained`."""
        from ..pretrained import save_pretrained  # the file formats live outside the plain modules

        return save_pretrained(self, folder)

    @property
    def scale(self) -> int:
        """The output / input size ratio: the SR scale (1, 2 or 4), 1 for deblurring and inpainting."""
        return self.G.upscale or 1

    @property
    def in_channels(self) -> int:
        """Channels of the network input: 3 (RGB), 4 for inpainting (masked RGB and the mask)."""
        return self.G.inp_channels


class DiffIRS1(_Restorer, nn.Module):
    """Stage 1: ``z = CPEN_S1(LQ, GT)``, ``out = DIRformer(LQ, z)``. An oracle: it always needs the GT."""

    def __init__(self, G: DIRformer, E: CPEN) -> None:  # noqa: N803
        super().__init__()
        if not E.is_stage1:
            raise ValueError("DiffIRS1 needs a stage-1 CPEN (one that also sees the GT: gt_unshuffle set)")
        self.G = G
        self.E = E

    @property
    def size_multiple(self) -> int:
        return _size_multiple(self.G, self.E)

    def forward(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(restored, z)``."""
        z = self.E(lq, gt)
        return self.G(lq, z), z


class DiffIRS2(_Restorer, nn.Module):
    """Stage 2: ``c = CPEN_S2(LQ)``; ẑ by T reverse diffusion steps conditioned on c; ``out = G(LQ, ẑ)``.

    With ``denoise=None`` (the paper's "no diffusion" ablation) CPEN_S2 regresses the prior directly.
    """

    def __init__(
        self,
        G: DIRformer,  # noqa: N803
        condition: CPEN,
        denoise: Denoiser | None = None,
        diffusion: IPRDiffusion | None = None,
    ) -> None:
        super().__init__()
        if condition.is_stage1:
            raise ValueError("DiffIRS2's condition network must be the LQ-only CPEN (gt_unshuffle=None)")
        if (denoise is None) != (diffusion is None):
            raise ValueError("pass both denoise and diffusion, or neither (direct regression of the prior)")
        self.G = G
        self.condition = condition
        self.denoise = denoise
        self.diffusion = diffusion

    @property
    def size_multiple(self) -> int:
        return _size_multiple(self.G, self.condition)

    @property
    def noise_dim(self) -> int | None:
        """Length of the reverse diffusion's start vector; None without a diffusion (the regression ablation)."""
        return None if self.diffusion is None else self.condition.ipr_dim

    def student_parameters(self) -> Iterator[nn.Parameter]:
        """What learns the prior from the LQ: CPEN_S2 and the denoiser (the official warm-up trains only these)."""
        yield from self.condition.parameters()
        if self.denoise is not None:
            yield from self.denoise.parameters()

    @property
    def predicts_noise(self) -> bool:
        """True when the denoiser predicts the noise ε (the paper's "conventional" ablation), not the prior."""
        return self.diffusion is not None and self.diffusion.parameterization == "eps"

    def conventional_prior(
        self, lq: torch.Tensor, z_teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The conventional-diffusion ablation: ``(ε-prediction MSE at a random timestep, ẑ)``, where ẑ is sampled
        from a Gaussian through all T steps without gradient (the denoiser learns only from the MSE)."""
        if not self.predicts_noise:
            raise ValueError(
                "the conventional objective needs a noise predictor: diffusion.parameterization=eps"
            )
        c = self.condition(lq)
        loss = self.diffusion.noise_prediction_loss(self.denoise, c, z_teacher)
        with torch.no_grad():
            z_hat = self.diffusion.sample(self.denoise, c)[-1]
        return loss, z_hat

    def restore_with_prior(self, lq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """DIRformer restoration of ``lq`` modulated by a given prior ``z``."""
        return self.G(lq, z)

    def estimate_prior(
        self,
        lq: torch.Tensor,
        z_teacher: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        c: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """The prior chain for ``lq``; its last element is ẑ.

        With ``z_teacher`` this is the training chain (from ``z_teacher`` diffused to step T-1 with ``noise``);
        without, the sampling chain from ``noise`` (a standard Gaussian when None). ``c`` is CPEN_S2's output
        when the caller computed it already (e.g. tile by tile).
        """
        c = self.condition(lq) if c is None else c
        if self.diffusion is None:
            return [c]
        if z_teacher is not None:
            return self.diffusion.training_chain(self.denoise, c, z_teacher, noise)
        return self.diffusion.sample(self.denoise, c, noise)

    def forward(
        self, lq: torch.Tensor, z_teacher: torch.Tensor | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return ``(restored, prior chain)``; see :meth:`estimate_prior`."""
        chain = self.estimate_prior(lq, z_teacher, noise)
        return self.G(lq, chain[-1]), chain
