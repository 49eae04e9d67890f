"""How ``eval.py`` and ``infer.py`` run the pixel-space diffusion baselines: their checkpoints (SR3, the
image-conditioned DDPM; a DDPM prior alone is refused) and, in ``eval.py``, GDP (``method=gdp
prior_ckpt=<DDPM prior>``); :mod:`diffir.evaluation.methods` wraps these runners as its ``Method`` objects.

Sampling options: ``sampler=ddpm|ddim``, ``steps=``, ``eta=`` (null: the checkpoint's defaults); GDP's
``gdp.scale`` (GDP's s for 3·256² outputs, rescaled to each image) and ``gdp.mode`` (x0 | xt), and ``steps``
(null: all 1000 ancestral steps, as GDP). Every image starts from the same seeded noise (``seed=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ..errors import UsageError
from ..runner import load_checkpoint
from .gdp import GDP, task_operator
from .methods import DDPMPrior, PixelDiffusion


def sampler_options(cfg: DictConfig) -> dict[str, Any]:
    """``sampler`` / ``steps`` / ``eta`` of an eval or infer config, those that are set."""
    return {k: cfg.get(k) for k in ("sampler", "steps", "eta") if cfg.get(k) is not None}


def check_pixel_model(model: Any, path: str | Path, cfg: DictConfig) -> None:
    """A prior alone cannot restore, and the baselines restore whole images only."""
    if isinstance(model, DDPMPrior):
        raise UsageError(
            f"{path} is GDP's unconditional DDPM prior: it restores through GDP's guidance, with "
            f"method=gdp prior_ckpt={path} task=<sr|deblur|inpainting>"
        )
    if cfg.get("tile"):
        raise UsageError(
            f"{path} is a pixel-space diffusion baseline: it restores whole images only, drop tile="
        )


def pixel_runner(model: PixelDiffusion, cfg: DictConfig) -> Any:
    """``run(lq) -> restored`` of an SR3 / cDDPM checkpoint, with the config's sampler options and seed."""
    options = sampler_options(cfg)
    try:
        model.sampler(**options)
    except ValueError as err:
        raise UsageError(f"{model.method}: {err}") from err

    def run(lq: torch.Tensor) -> torch.Tensor:
        return model.restore(lq, torch.Generator().manual_seed(cfg.seed), **options)

    return run


def gdp_runner(cfg: DictConfig, task: str, scale: int, device: torch.device) -> tuple[GDP, Any]:
    """GDP with the prior of ``cfg.prior_ckpt``; ``run(sample)`` restores one eval sample with the task's
    known operator (for deblurring without a known kernel: the blind kernel estimate)."""
    if not cfg.get("prior_ckpt"):
        raise UsageError(
            "method=gdp needs prior_ckpt=<checkpoint of an unconditional DDPM prior> "
            "(train one with: python train.py method=ddpm_prior data=<clean images>)"
        )
    prior, _ = load_checkpoint(cfg.prior_ckpt, device)
    if not isinstance(prior, DDPMPrior):
        raise UsageError(
            f"prior_ckpt={cfg.prior_ckpt} is not a DDPM prior (python train.py method=ddpm_prior ...)"
        )
    gdp_cfg = cfg.get("gdp") or {}
    try:
        gdp = GDP(
            prior, task, scale=gdp_cfg.get("scale"), mode=gdp_cfg.get("mode", "x0"), steps=cfg.get("steps")
        )
    except ValueError as err:
        raise UsageError(f"gdp: {err}") from err

    def run(sample: Any) -> torch.Tensor:
        operator, y = task_operator(task, sample.lq, scale, sample.mask, sample.kernel)
        size = (sample.lq.shape[-2] * scale, sample.lq.shape[-1] * scale)
        return gdp.restore(y, operator.to(device), size, torch.Generator().manual_seed(cfg.seed))[0]

    return gdp, run
