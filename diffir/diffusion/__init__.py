"""Pixel-space diffusion baselines (SR3, image-conditioned DDPM + DDIM, GDP): schedules, samplers, methods.

Plain modules, no Lightning (the training procedure is :mod:`diffir.lit.pixel_diffusion`). DiffIR's own
diffusion on the 256-d prior vector lives in :mod:`diffir.models.diffusion`.
"""

from .gdp import (
    GDP,
    BicubicDown,
    BlindBlur,
    BlindScaleOffset,
    BlockMean,
    Blur,
    GDPGuidance,
    Mask,
    Operator,
    gaussian_kernel,
    task_operator,
)
from .methods import PIXEL_METHODS, SR3, ConditionalDDPM, DDPMPrior, PixelDiffusion, build_pixel_diffusion
from .samplers import Sampler
from .schedules import NoiseSchedule, linear_betas, sample_noise_level, space_timesteps

__all__ = [
    "GDP",
    "PIXEL_METHODS",
    "SR3",
    "BicubicDown",
    "BlindBlur",
    "BlindScaleOffset",
    "BlockMean",
    "Blur",
    "ConditionalDDPM",
    "DDPMPrior",
    "GDPGuidance",
    "Mask",
    "NoiseSchedule",
    "Operator",
    "PixelDiffusion",
    "Sampler",
    "build_pixel_diffusion",
    "gaussian_kernel",
    "linear_betas",
    "sample_noise_level",
    "space_timesteps",
    "task_operator",
]
