"""Diffusion on the 256-d IPR vector (paper §3.2, docs/method.md §2), never on pixels: each step is one small
MLP call.

The official model (``ldm/ddpm.py``) uses T steps, ``betas = linspace(sqrt(β_1), sqrt(β_T), T)²``, an
x0-predicting denoiser and the deterministic posterior-mean reverse step
``x_{t-1} = coef1_t · x̂0 + coef2_t · x_t``. Training runs *all* T reverse steps from the teacher prior
diffused to step T-1 and back-propagates through them (the paper's joint optimisation).

The settings have no defaults here: their official values (T = 4, β from 0.1 to 0.99, x0, no reverse noise,
one denoiser block) are written once, in ``conf/diffusion/official.yaml``, which ``build_model`` reads for
every setting it is not given. Ablation switches of the paper are settings: T, the β range,
``reverse_noise`` (add σ_t·ε in the reverse steps) and ``parameterization="eps"`` (the conventional
noise-predicting DDPM, trained at random t).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResMLP(nn.Module):
    """Linear + LeakyReLU(0.1). Named as in the official code, which has *no* residual connection."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.resmlp = nn.Sequential(nn.Linear(n_feats, n_feats), nn.LeakyReLU(0.1, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resmlp(x)


class Denoiser(nn.Module):
    """The denoising MLP ``ε_θ`` (docs/method.md §1.4): input ``[c, t / (10·T), x_t]`` (2·ipr_dim + 1), output ipr_dim.

    With the official x0-parameterisation the output is the clean-prior estimate x̂0.
    """

    def __init__(self, ipr_dim: int, n_denoise_res: int, timesteps: int) -> None:
        super().__init__()
        self.max_period = timesteps * 10  # a plain divisor, not a sinusoidal period
        self.resmlp = nn.Sequential(
            nn.Linear(ipr_dim * 2 + 1, ipr_dim),
            nn.LeakyReLU(0.1, inplace=True),
            *(ResMLP(ipr_dim) for _ in range(n_denoise_res)),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype).view(-1, 1).expand(x.shape[0], 1) / self.max_period
        return self.resmlp(torch.cat([c, t, x], dim=1))


class IPRDiffusion(nn.Module):
    """The schedule and the forward / reverse processes on IPR vectors.

    Holds no learnable weights: the denoiser is passed in, so each module is owned once by the wrapper. The
    schedule buffers are derived from the arguments and not saved in checkpoints.
    """

    def __init__(
        self,
        timesteps: int,
        linear_start: float,
        linear_end: float,
        parameterization: str,
        reverse_noise: bool,
    ) -> None:
        super().__init__()
        if parameterization not in ("x0", "eps"):
            raise ValueError(f"parameterization must be 'x0' (official) or 'eps', got {parameterization!r}")
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        self.timesteps = timesteps
        self.parameterization = parameterization
        self.reverse_noise = reverse_noise
        for name, value in self.schedule(timesteps, linear_start, linear_end).items():
            self.register_buffer(name, value.float(), persistent=False)

    @staticmethod
    def schedule(timesteps: int, linear_start: float, linear_end: float) -> dict[str, torch.Tensor]:
        """The LDM 'linear' schedule (linear in sqrt β), in float64, and the posterior coefficients."""
        betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        return {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
            "posterior_variance": betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Diffuse ``x0`` to step ``t`` (per-sample indices): ``sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε``."""
        return (
            self.sqrt_alphas_cumprod[t].view(-1, 1) * x0
            + self.sqrt_one_minus_alphas_cumprod[t].view(-1, 1) * noise
        )

    def predict_x0(self, denoise: nn.Module, x: torch.Tensor, t: int, c: torch.Tensor) -> torch.Tensor:
        """x̂0 from the denoiser, whatever it predicts."""
        steps = torch.full_like(x[:, 0], t, dtype=torch.long)  # x's batch, also when traced (ONNX export)
        out = denoise(x, steps, c)
        if self.parameterization == "x0":
            return out
        return self.sqrt_recip_alphas_cumprod[t] * x - self.sqrt_recipm1_alphas_cumprod[t] * out

    def reverse_step(self, denoise: nn.Module, x: torch.Tensor, t: int, c: torch.Tensor) -> torch.Tensor:
        """One reverse step: the posterior mean of q(x_{t-1} | x_t, x̂0) (+ σ_t·ε when ``reverse_noise``)."""
        x0 = self.predict_x0(denoise, x, t, c)
        mean = self.posterior_mean_coef1[t] * x0 + self.posterior_mean_coef2[t] * x
        if self.reverse_noise and t > 0:
            mean = mean + self.posterior_variance[t].sqrt() * torch.randn_like(mean)
        return mean

    def reverse(self, denoise: nn.Module, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        """Run steps T-1 … 0 from ``x``; return every intermediate (the last is the estimate ẑ)."""
        chain = []
        for t in reversed(range(self.timesteps)):
            x = self.reverse_step(denoise, x, t, c)
            chain.append(x)
        return chain

    def training_chain(
        self, denoise: nn.Module, c: torch.Tensor, z_teacher: torch.Tensor, noise: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Official training forward: start from the teacher prior diffused to step T-1, run all T steps."""
        noise = torch.randn_like(z_teacher) if noise is None else noise
        last = torch.full((z_teacher.shape[0],), self.timesteps - 1, device=c.device, dtype=torch.long)
        return self.reverse(denoise, self.q_sample(z_teacher, last, noise), c)

    def sample(
        self, denoise: nn.Module, c: torch.Tensor, start: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Inference chain from a standard Gaussian (or the explicit ``start`` vector, for reproducible runs)."""
        x = torch.randn_like(c) if start is None else start.to(c)
        return self.reverse(denoise, x, c)

    def noise_prediction_loss(
        self, denoise: nn.Module, c: torch.Tensor, z_teacher: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The conventional DDPM objective (ablation): random t per sample, MSE on the predicted noise."""
        if self.parameterization != "eps":
            raise ValueError("the noise-prediction objective needs parameterization='eps'")
        noise = torch.randn_like(z_teacher) if noise is None else noise
        t = torch.randint(0, self.timesteps, (z_teacher.shape[0],), device=c.device)
        return F.mse_loss(denoise(self.q_sample(z_teacher, t, noise), t, c), noise)
