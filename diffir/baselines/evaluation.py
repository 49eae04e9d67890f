"""GDP in ``eval.py`` (``method=gdp prior_ckpt=<DDPM prior>``), as a :class:`~diffir.evaluation.methods.Method`;
the checkpoints of the other pixel-space baselines (SR3, the image-conditioned DDPM) restore through
:func:`diffir.restorer.load_restorer`, as every checkpoint does.

Sampling options: ``sampler=ddpm|ddim``, ``steps=``, ``eta=`` (null: the checkpoint's defaults); GDP's
``gdp.scale`` (GDP's s for 3·256² outputs, rescaled to each image) and ``gdp.mode`` (x0 | xt), and ``steps``
(null: all 1000 ancestral steps, as GDP). Every image starts from the same seeded noise (``seed=``).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from ..errors import UsageError
from ..restorer import load_checkpoint
from .gdp import GDP, task_operator
from .methods import DDPMPrior


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
