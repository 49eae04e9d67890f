"""SR3, the image-conditioned DDPM and the unconditional DDPM prior as plain modules (docs/baselines.md §2-4).

Each holds its U-Net and schedules and knows three things: its training loss on a (GT, LQ) batch, how to
restore an LQ batch of any size (``restore``), and its own description (``config``) so a checkpoint rebuilds
it (:func:`build_pixel_diffusion`). Images enter in [0, 1] and are mapped to [−1, 1] inside the diffusion.
The condition is an image at output size: the MATLAB-bicubic upsampled LR (a task that resizes: SR, the same
upsampler in training and test), the degraded image itself (deblurring), and the mask beside the masked image
when the task's input has a fourth channel (inpainting: 7 U-Net inputs); :mod:`diffir.tasks` holds these facts.

The defaults of the constructors below are the methods' published settings and the one place they are
written: ``conf/method/*.yaml`` names only the task, scale and U-Net preset of a run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.imresize import imresize
from ..restoration import pad_to_multiple
from ..tasks import task_facts
from .samplers import Sampler
from .schedules import NoiseSchedule, sample_noise_level, space_timesteps
from .unet import UNet, unet_preset

TASKS = ("sr", "deblur", "inpainting")  # the tasks of the conditional baselines (realsr: no paired LQ)
PRIOR = "prior"  # the "task" of GDP's unconditional prior: no condition image
LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}
# the image-conditioned DDPM's DDIM steps (ddim50), also when DDIM samples a model that DDPM samples by default
DDIM_STEPS = 50


def _check(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


class PixelDiffusion(nn.Module):
    """What the baselines share: the U-Net on ``cat[condition, x_t]``, the condition image, any-size restoration."""

    method = "pixel"

    def __init__(self, task: str, scale: int, unet: dict[str, Any], emb_act: bool) -> None:
        super().__init__()
        _check("task", task, (*TASKS, PRIOR))
        self.facts = None if task == PRIOR else task_facts(task)
        self.task = task
        self.scale = self.facts.output_scale(scale) if self.facts else 1
        unet = dict(unet)
        preset = unet.pop("preset", None)
        self.unet_args = {**(unet_preset(preset) if preset else {}), **unet}
        condition_channels = self.facts.input_channels if self.facts else 0
        self.unet_args.update(in_channels=3 + condition_channels, out_channels=3, emb_act=emb_act)
        self.unet = UNet(**self.unet_args)

    @property
    def size_multiple(self) -> int:
        return self.unet.size_multiple

    def condition(self, lq: torch.Tensor) -> torch.Tensor | None:
        """The conditioning image at output size, RGB in [−1, 1] (plus the 0/1 mask for inpainting)."""
        if self.facts is None:
            return None
        if self.facts.resizes:
            return imresize(lq, float(self.scale)) * 2 - 1
        rgb = lq[:, :3] * 2 - 1
        return rgb if self.facts.input_channels == 3 else torch.cat([rgb, lq[:, 3:]], dim=1)  # + the 0/1 mask

    def network(self, x: torch.Tensor, cond: torch.Tensor | None, level: torch.Tensor) -> torch.Tensor:
        return self.unet(x if cond is None else torch.cat([cond, x], dim=1), level)

    def sampler(self, **options: Any) -> tuple[Sampler, list[float]]:
        """The reverse sampler and the network input of each of its steps."""
        raise NotImplementedError

    @torch.no_grad()
    def restore(
        self, lq: torch.Tensor, generator: torch.Generator | None = None, **sampler_options: Any
    ) -> torch.Tensor:
        """Restore an LQ batch of any size: the condition is reflect-padded to the U-Net's multiple, sampled
        from seeded noise and cropped back; returns [0, 1] images of exactly the output size."""
        cond = self.condition(lq)
        cond, (h, w) = pad_to_multiple(cond, self.size_multiple)
        sampler, levels = self.sampler(**sampler_options)
        b = cond.shape[0]

        def eps_fn(x: torch.Tensor, i: int) -> torch.Tensor:
            return self.network(x, cond, torch.full((b,), levels[i], device=x.device))

        x = sampler.sample(eps_fn, (b, 3, *cond.shape[-2:]), generator, cond.device)
        return ((x[..., :h, :w] + 1) / 2).clamp(0, 1)

    def config(self) -> dict[str, Any]:
        """The arguments that rebuild this module (saved in checkpoints): its method, task, scale, U-Net and
        the method's ``options``."""
        return {
            "method": self.method,
            "task": self.task,
            "scale": self.scale,
            "unet": self.unet_args,
            **self.options,
        }


class SR3(PixelDiffusion):
    """SR3 (Saharia et al.): the network is fed the continuous noise level γ (``level="gamma"``, paper) or √γ
    (``"sqrt_gamma"``, JSR3), trained with L1 on ε at γ ~ U(ᾱ_t, ᾱ_{t−1}) of a T=2000 schedule (1e-6→1e-2), and
    sampled on its own schedule: ``infer_timesteps`` steps linear ``infer_beta`` (default 100, 1e-4→0.2),
    respaced to ``steps``."""

    method = "sr3"

    def __init__(
        self,
        task: str = "sr",
        scale: int = 4,
        *,
        unet: dict[str, Any],
        train_timesteps: int = 2000,
        train_beta: tuple[float, float] = (1e-6, 1e-2),
        level: str = "gamma",
        loss: str = "l1",
        infer_timesteps: int = 100,
        infer_beta: tuple[float, float] = (1e-4, 0.2),
        steps: int = 100,
    ) -> None:
        super().__init__(task, scale, unet, emb_act=False)
        _check("level", level, ("gamma", "sqrt_gamma"))
        _check("loss", loss, tuple(LOSSES))
        self.train_schedule = NoiseSchedule.linear(train_timesteps, *train_beta)
        self.infer_schedule = NoiseSchedule.linear(infer_timesteps, *infer_beta)
        self.options = dict(
            train_timesteps=train_timesteps, train_beta=list(train_beta), level=level, loss=loss,
            infer_timesteps=infer_timesteps, infer_beta=list(infer_beta), steps=steps,
        )  # fmt: skip

    def loss(self, gt: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """E‖f(cat[up(LR), √γ y_0 + √(1−γ) ε], level(γ)) − ε‖ (L1 by default)."""
        cond, y0 = self.condition(lq), gt * 2 - 1
        gamma, _ = sample_noise_level(
            self.train_schedule, y0.shape[0], y0.device, sqrt=self.options["level"] == "sqrt_gamma"
        )
        gamma = gamma.float()
        noise = torch.randn_like(y0)
        g = gamma.reshape(-1, 1, 1, 1)
        y_t = g.sqrt() * y0 + (1 - g).sqrt() * noise
        return LOSSES[self.options["loss"]](self.network(y_t, cond, self.level(gamma)), noise)

    def level(self, gamma: torch.Tensor) -> torch.Tensor:
        return gamma.sqrt() if self.options["level"] == "sqrt_gamma" else gamma

    def sampler(self, steps: int | None = None, **_: Any) -> tuple[Sampler, list[float]]:
        """JSR3's form: x̂_0 clipped, posterior mean, σ² = β̃' (ancestral) on the inference schedule."""
        steps = steps or self.options["steps"]
        schedule = self.infer_schedule
        if steps != schedule.num_timesteps:
            schedule = schedule.respace(space_timesteps(schedule.num_timesteps, steps))
        levels = self.level(schedule.alphas_cumprod.float()).tolist()
        return Sampler(schedule, "ddpm"), levels


class ConditionalDDPM(PixelDiffusion):
    """The image-conditioned DDPM (seed 002): ε_θ(cat[x̂, x_t], t) with integer t, L2 on ε, T = 1000 linear
    1e-4→0.02; sampled by DDPM (``sampler="ddpm"``, ``steps=1000``) or DDIM (default 50 steps on ``ddim50``,
    η = 0). ``task="prior"`` is GDP's unconditional prior (no condition; ``restore`` is not defined for it)."""

    method = "cddpm"

    def __init__(
        self,
        task: str = "sr",
        scale: int = 4,
        *,
        unet: dict[str, Any],
        timesteps: int = 1000,
        beta: tuple[float, float] = (1e-4, 0.02),
        loss: str = "l2",
        sampler: str = "ddim",
        steps: int = DDIM_STEPS,
        eta: float = 0.0,
    ) -> None:
        super().__init__(task, scale, unet, emb_act=True)
        _check("loss", loss, tuple(LOSSES))
        _check("sampler", sampler, ("ddpm", "ddim"))
        self.schedule = NoiseSchedule.linear(timesteps, *beta)
        self.options = dict(
            timesteps=timesteps, beta=list(beta), loss=loss, sampler=sampler, steps=steps, eta=eta
        )

    def loss(self, gt: torch.Tensor, lq: torch.Tensor | None = None) -> torch.Tensor:
        """‖ε − ε_θ(cat[x̂, √ᾱ_t x_0 + √(1−ᾱ_t) ε], t)‖² with t uniform per sample."""
        x0 = gt * 2 - 1
        cond = self.condition(lq) if lq is not None else None
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.schedule.q_sample(x0, t, noise)
        return LOSSES[self.options["loss"]](self.network(x_t, cond, t), noise)

    def sampler(
        self, sampler: str | None = None, steps: int | None = None, eta: float | None = None, **_: Any
    ) -> tuple[Sampler, list[float]]:
        """DDPM over all T steps (or respaced to ``steps``), or DDIM over ``ddim<steps>`` (the "N" spacing when
        T is not a multiple); the network always receives the original τ_i."""
        kind = sampler or self.options["sampler"]
        _check("sampler", kind, ("ddpm", "ddim"))
        steps = steps or (self.options["steps"] if kind == self.options["sampler"] else None)
        total = self.schedule.num_timesteps
        steps = steps or (total if kind == "ddpm" else DDIM_STEPS)
        try:
            taus = space_timesteps(total, f"ddim{steps}" if kind == "ddim" else steps)
        except ValueError:
            taus = space_timesteps(total, steps)
        schedule = self.schedule if len(taus) == total else self.schedule.respace(taus)
        eta = self.options["eta"] if eta is None else eta
        return Sampler(schedule, kind, eta=1.0 if kind == "ddpm" else eta), [float(t) for t in taus]


class DDPMPrior(ConditionalDDPM):
    """GDP's unconditional ε-DDPM prior on clean images (T = 1000, linear, L2; σ² = β̃ with GD's clipped log)."""

    method = "ddpm_prior"

    def __init__(self, *, unet: dict[str, Any], **kwargs: Any) -> None:
        kwargs.pop("task", None)
        kwargs.pop("scale", None)
        kwargs.setdefault("sampler", "ddpm")
        kwargs.setdefault("steps", 1000)
        super().__init__(task="prior", scale=1, unet=unet, **kwargs)

    def eps(self, x: torch.Tensor, t: int | float) -> torch.Tensor:
        return self.network(x, None, torch.full((x.shape[0],), float(t), device=x.device))

    @torch.no_grad()
    def denoise(self, gt: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x̂_0 of ``gt`` diffused to 0-based step ``t`` with seeded noise ([0, 1] in and out): the prior's
        validation output (a restoration needs GDP's guidance and a degradation operator)."""
        x0, (h, w) = pad_to_multiple(gt * 2 - 1, self.size_multiple)
        steps = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        x_t = self.schedule.q_sample(x0, steps, noise)
        x0_hat = self.schedule.predict_x0(x_t, steps, self.eps(x_t, t)).clamp(-1, 1)
        return ((x0_hat[..., :h, :w] + 1) / 2).clamp(0, 1)


PIXEL_METHODS: dict[str, type[PixelDiffusion]] = {
    "sr3": SR3,
    "cddpm": ConditionalDDPM,
    "ddpm_prior": DDPMPrior,
}


def build_pixel_diffusion(config: dict[str, Any]) -> PixelDiffusion:
    """Rebuild a baseline from its ``config()`` (a checkpoint's model record)."""
    config = dict(config)
    method = config.pop("method")
    if method not in PIXEL_METHODS:
        raise ValueError(f"unknown pixel-diffusion method {method!r}; known: {sorted(PIXEL_METHODS)}")
    return PIXEL_METHODS[method](**config)
