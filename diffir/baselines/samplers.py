"""Reverse samplers of the pixel-space baselines: DDPM ancestral steps and DDIM with η, seeded noise.

Both run over a :class:`NoiseSchedule` (possibly respaced: then step i of the sampler is τ_i of the original
schedule and the caller's ``eps_fn`` feeds the network τ_i or its noise level). An optional ``guidance``
callback adds GDP's gradient to the mean of every step (also the last, as GDP does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .schedules import NoiseSchedule, extract

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
GuidanceFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
SAMPLERS = ("ddpm", "ddim")


class Sampler:
    """``kind="ddpm"``: x_{t−1} = c1·x̂_0 + c2·x_t + √β̃_t·z; ``kind="ddim"``: the DDIM step with ``eta``
    (η = 1 gives the DDPM step). x̂_0 is clipped to [−1, 1] when ``clip``; z = 0 at the last step."""

    def __init__(
        self, schedule: NoiseSchedule, kind: str = "ddpm", eta: float = 0.0, clip: bool = True
    ) -> None:
        if kind not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")
        self.schedule, self.kind, self.eta, self.clip = schedule, kind, eta, clip

    @property
    def steps(self) -> int:
        """Network evaluations per image (NFE)."""
        return self.schedule.num_timesteps

    def step(
        self,
        x: torch.Tensor,
        i: int,
        eps: torch.Tensor,
        generator: torch.Generator | None = None,
        guidance: GuidanceFn | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step from index ``i``; returns ``(x_prev, x̂_0)``."""
        s = self.schedule
        t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        x0 = s.predict_x0(x, t, eps)
        if self.clip:
            x0 = x0.clamp(-1, 1)
        if self.kind == "ddpm":
            mean = s.posterior_mean(x0, x, t)
            std = (0.5 * extract(s.posterior_log_variance_clipped, t, x)).exp()
        else:
            mean = s.ddim_mean(x0, x, t, self.eta)
            std = s.ddim_sigma(t, self.eta, x)
        if guidance is not None:
            mean = mean + guidance(x0, x, i)
        if i > 0 and (self.kind == "ddpm" or self.eta > 0):
            mean = mean + std * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return mean, x0

    @torch.no_grad()
    def sample(
        self,
        eps_fn: EpsFn,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        guidance: GuidanceFn | None = None,
    ) -> torch.Tensor:
        """x_T ~ N(0, I) from ``generator``, then ``steps`` reverse steps; returns x_0 (in [−1, 1] when clipped)."""
        x = torch.randn(shape, generator=generator).to(device)
        for i in reversed(range(self.steps)):
            x, _ = self.step(x, i, eps_fn(x, i), generator, guidance)
        return x
