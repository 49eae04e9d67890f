"""Noise schedules of the pixel-space baselines (docs/baselines.md §1): ᾱ_t, respacing, the SR3 noise level.

Indexing: 0-based in code, ``alphas_cumprod[t] = ᾱ_{t+1}`` and ``alphas_cumprod_prev[t] = ᾱ_t`` (ᾱ_0 = 1).
Everything is float64 (``np.linspace``), as in guided-diffusion; tensors are cast at use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def linear_betas(timesteps: int, start: float, end: float) -> np.ndarray:
    """``np.linspace(start, end, T)`` in float64 (DDPM: 1000, 1e-4→0.02; SR3 training: 2000, 1e-6→1e-2)."""
    if timesteps < 1 or not 0 < start <= end < 1:
        raise ValueError(f"need T >= 1 and 0 < start <= end < 1, got T={timesteps}, ({start}, {end})")
    return np.linspace(start, end, timesteps, dtype=np.float64)


def space_timesteps(timesteps: int, spec: str | int) -> list[int]:
    """Sub-sequence τ of ``range(T)`` (guided-diffusion's ``space_timesteps``, one section).

    ``"ddimN"``: ``{0, c, 2c, ...}`` with c = T/N; ``"N"`` (or an int): ``round(k(T-1)/(N-1))`` (Python's round).
    """
    spec = str(spec)
    if spec.startswith("ddim"):
        count = int(spec[4:])
        for stride in range(1, timesteps):
            if len(range(0, timesteps, stride)) == count:
                return list(range(0, timesteps, stride))
        raise ValueError(f"cannot take exactly {count} evenly strided steps out of T={timesteps}")
    count = int(spec)
    if not 1 <= count <= timesteps:
        raise ValueError(f"steps must be in 1..{timesteps}, got {count}")
    if count == 1:
        return [0]
    stride = (timesteps - 1) / (count - 1)
    return sorted({round(k * stride) for k in range(count)})


def extract(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` broadcast to ``like``'s shape and dtype (``t`` is (B,) long)."""
    out = values.to(like.device)[t].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def diffuse(x0: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The forward process ``x = √ᾱ x_0 + √(1−ᾱ) ε`` for a per-sample ``alpha_bar`` (B,) (ᾱ_t, or SR3's γ)."""
    a = alpha_bar.to(x0).reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


class NoiseSchedule:
    """β_t, ᾱ_t and the Gaussian posterior q(x_{t−1} | x_t, x_0) of one discrete schedule."""

    def __init__(self, betas: Sequence[float] | np.ndarray) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D sequence in (0, 1]")
        self.betas = torch.from_numpy(betas)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        ac, prev = self.alphas_cumprod, self.alphas_cumprod_prev
        self.posterior_variance = self.betas * (1 - prev) / (1 - ac)  # β̃_t
        # log β̃ with its t=0 value (0) replaced by β̃_1, as guided-diffusion clips it
        clipped = torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        self.posterior_log_variance_clipped = torch.log(clipped) if len(betas) > 1 else torch.log(self.betas)
        self.coef_x0 = self.betas * prev.sqrt() / (1 - ac)  # c1
        self.coef_xt = (1 - self.betas).sqrt() * (1 - prev) / (1 - ac)  # c2

    @classmethod
    def linear(cls, timesteps: int, start: float, end: float) -> NoiseSchedule:
        return cls(linear_betas(timesteps, start, end))

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def respace(self, timesteps: Sequence[int]) -> NoiseSchedule:
        """The schedule of the sub-sequence τ: ``β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}`` (ᾱ values of τ are kept)."""
        ac = self.alphas_cumprod[list(timesteps)]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        return NoiseSchedule((1 - ac / prev).numpy())

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε at 0-based steps ``t`` (B,)."""
        return diffuse(x0, self.alphas_cumprod.to(x0.device)[t], noise)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t."""
        a = extract(self.alphas_cumprod, t, x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """ε̂ = (x_t − √ᾱ_t x̂_0)/√(1−ᾱ_t) (re-derived after clipping x̂_0, as guided-diffusion does)."""
        a = extract(self.alphas_cumprod, t, x_t)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """μ̃ = c1·x_0 + c2·x_t."""
        return extract(self.coef_x0, t, x_t) * x0 + extract(self.coef_xt, t, x_t) * x_t

    def eps_mean(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The ε-form mean ``(x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t`` (= μ̃ with the unclipped x̂_0)."""
        beta, a = extract(self.betas, t, x_t), extract(self.alphas_cumprod, t, x_t)
        return (x_t - beta / (1 - a).sqrt() * eps) / (1 - beta).sqrt()

    def ddim_sigma(self, t: torch.Tensor, eta: float, like: torch.Tensor) -> torch.Tensor:
        """σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev) (η = 1: σ² = β̃_t)."""
        a, prev = extract(self.alphas_cumprod, t, like), extract(self.alphas_cumprod_prev, t, like)
        return eta * ((1 - prev) / (1 - a)).sqrt() * (1 - a / prev).sqrt()

    def ddim_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eta: float) -> torch.Tensor:
        """√ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ²)·ε̂, with ε̂ re-derived from x̂_0."""
        prev = extract(self.alphas_cumprod_prev, t, x_t)
        sigma = self.ddim_sigma(t, eta, x_t)
        eps = self.predict_eps(x_t, t, x0)
        return prev.sqrt() * x0 + (1 - prev - sigma**2).clamp_min(0).sqrt() * eps


def sample_noise_level(
    schedule: NoiseSchedule, batch: int, device: torch.device | str = "cpu", sqrt: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """SR3's continuous noise level: t ~ U{1..T} per sample and γ ~ U(ᾱ_t, ᾱ_{t−1}) (paper-literal), or with
    ``sqrt`` (JSR3) √γ ~ U(√ᾱ_t, √ᾱ_{t−1}). Returns ``(gamma, t)`` (float64, 1-based); uses the global torch RNG
    (seeded per training step by the Lightning module)."""
    t = torch.randint(1, schedule.num_timesteps + 1, (batch,))
    hi, lo = schedule.alphas_cumprod_prev[t - 1], schedule.alphas_cumprod[t - 1]
    u = torch.rand(batch, dtype=torch.float64)
    gamma = (lo.sqrt() + u * (hi.sqrt() - lo.sqrt())) ** 2 if sqrt else lo + u * (hi - lo)
    return gamma.to(device), t.to(device)
