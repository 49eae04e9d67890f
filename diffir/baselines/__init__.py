"""The pixel-space diffusion baselines DiffIR is compared with: SR3, the image-conditioned DDPM (cDDPM) and GDP
(an unconditional DDPM prior guided by the degradation), each described with its sources in docs/baselines.md
§1-4. Unlike DiffIR, which runs its diffusion on a 256-d prior vector (:mod:`diffir.models.diffusion`, the IPR
diffusion), these diffuse every pixel of the image at every reverse step.

Modules, each named for what it holds:

* ``unet`` — the SR3 U-Net the three share, and its size presets (docs/baselines.md §1.1)
* ``adm`` — guided-diffusion's ADM U-Net, GDP's published ImageNet prior, for cost rows only
  (docs/baselines.md §4-5)
* ``schedules`` — β/ᾱ noise schedules, respacing, SR3's continuous noise level (docs/baselines.md §1)
* ``samplers`` — the reverse samplers: DDPM ancestral steps and DDIM, with GDP's guidance hook
  (docs/baselines.md §1)
* ``methods`` — SR3, ConditionalDDPM and DDPMPrior as plain modules: loss, ``restore``, ``config``
  (docs/baselines.md §2-4)
* ``gdp`` — GDP: degradation operators and the guided sampling loop around a DDPMPrior (docs/baselines.md §4)
* ``lit`` — the LightningModule that trains them with DiffIR's loop (``python train.py method=sr3|cddpm|ddpm_prior``)
* ``evaluation`` — how ``eval.py`` / ``infer.py`` run them (sampler options, GDP with ``prior_ckpt=``)

Their configs are the ``method`` group: ``conf/method/{sr3,cddpm,ddpm_prior}.yaml`` and the training settings
they share, ``conf/method/common/baseline.yaml``. Importing this package imports neither Lightning nor Hydra
(``lit`` and ``evaluation`` are imported by the training and evaluation runs that need them).
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
from .unet import UNET_PRESETS, UNet, unet_preset

__all__ = [
    "GDP",
    "PIXEL_METHODS",
    "SR3",
    "UNET_PRESETS",
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
    "UNet",
    "build_pixel_diffusion",
    "gaussian_kernel",
    "linear_betas",
    "sample_noise_level",
    "space_timesteps",
    "task_operator",
    "unet_preset",
]
