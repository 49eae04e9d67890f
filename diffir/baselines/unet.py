"""The pixel-space baselines' U-Net (SR3 / image-conditioned DDPM / GDP prior; docs/baselines.md §1.1).

A re-implementation of the SR3 U-Net of Janspiry's SR3 code: a sinusoidal embedding of the noise level γ
(SR3) or of the integer timestep t (DDPM) goes through ``Linear(C, 4C)-Swish-Linear(4C, C)`` and is added,
projected, inside every residual block; self-attention (one head) runs at the resolutions of ``attn_res``
(measured at ``image_size``, the training crop). Unlike DiffIR, this network runs at full output
resolution at *every* reverse step — that cost is what the baselines exist to show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# Presets of docs/baselines.md §1.1 (in_channels / emb are set by the method).
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "xs": dict(channels=16, mults=(1, 2, 4), num_blocks=1, attn_res=(16,), groups=8, dropout=0.0),
    "s": dict(channels=32, mults=(1, 2, 2, 4), num_blocks=1, attn_res=(8,), groups=16, dropout=0.0),
    "jsr3_16_128": dict(
        channels=64,
        mults=(1, 2, 4, 8, 8),
        num_blocks=2,
        attn_res=(16,),
        groups=32,
        dropout=0.2,
        image_size=128,
    ),
    "jsr3_64_512": dict(
        channels=64, mults=(1, 2, 4, 8, 16), num_blocks=1, attn_res=(), groups=16, dropout=0.0, image_size=512
    ),
    "sr3_paper_16_128": dict(
        channels=128,
        mults=(1, 2, 4, 8, 8),
        num_blocks=3,
        attn_res=(16,),
        groups=32,
        dropout=0.2,
        image_size=128,
    ),
    "sr3_paper_64_256": dict(
        channels=128,
        mults=(1, 2, 4, 4, 8, 8),
        num_blocks=3,
        attn_res=(16,),
        groups=32,
        dropout=0.0,
        image_size=256,
    ),
    "jsr3_ddpm_16_128": dict(
        channels=64,
        mults=(1, 1, 2, 2, 4, 4),
        num_blocks=2,
        attn_res=(16,),
        groups=32,
        dropout=0.2,
        image_size=128,
    ),
}


def unet_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The :class:`UNet` arguments of a named preset (``xs`` tests, ``s`` CPU, larger rows for cost tables)."""
    if name not in UNET_PRESETS:
        raise ValueError(f"unknown U-Net preset {name!r}; available: {sorted(UNET_PRESETS)}")
    return {**UNET_PRESETS[name], **overrides}


def sinusoidal_embedding(level: torch.Tensor, dim: int) -> torch.Tensor:
    """``PE(l) = [sin(l·f_k), cos(l·f_k)]``, ``f_k = exp(-ln(1e4)·k/(dim/2))``; ``level`` is (B,) or (B, 1)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=level.device, dtype=torch.float32) / half)
    angle = level.reshape(-1, 1).float() * freqs[None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class Block(nn.Sequential):
    """``Conv3x3(Dropout(Swish(GroupNorm(x))))``."""

    def __init__(self, dim: int, dim_out: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.GroupNorm(groups, dim),
            nn.SiLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(dim, dim_out, 3, padding=1),
        )


class SelfAttention(nn.Module):
    """One-head self-attention over all positions, with a residual: ``y + Conv1x1(v·softmax(qᵀk/√C)ᵀ)``."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        return x + self.out(torch.einsum("bij,bcj->bci", attn, v).reshape(b, c, h, w))


class ResBlock(nn.Module):
    """``h = Block1(x) + Linear(emb)``; ``y = Block2(h) + skip(x)``; optional attention after it.

    ``emb_act``: the DDPM U-Net applies Swish before the projection of the embedding, SR3's does not.
    """

    def __init__(
        self, dim: int, dim_out: int, emb_dim: int, groups: int, dropout: float, attn: bool, emb_act: bool
    ) -> None:
        super().__init__()
        self.emb = (
            nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, dim_out)) if emb_act else nn.Linear(emb_dim, dim_out)
        )
        self.block1 = Block(dim, dim_out, groups)
        self.block2 = Block(dim_out, dim_out, groups, dropout)
        self.skip = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()
        self.attn = SelfAttention(dim_out, groups) if attn else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.emb(emb)[..., None, None]
        y = self.block2(h) + self.skip(x)
        return self.attn(y) if self.attn is not None else y


class UNet(nn.Module):
    """ε_θ(x, level): ``x`` is (B, in_channels, H, W) with H, W multiples of :attr:`size_multiple`; ``level`` (B,)
    or (B, 1) is the SR3 noise level γ (or √γ) or the integer timestep t, embedded as given (unscaled).

    ``emb_act=True`` gives the DDPM variant (Swish before each block's embedding projection).
    """

    def __init__(
        self,
        in_channels: int = 6,
        out_channels: int = 3,
        channels: int = 32,
        mults: Sequence[int] = (1, 2, 2, 4),
        num_blocks: int = 1,
        attn_res: Sequence[int] = (8,),
        groups: int = 16,
        dropout: float = 0.0,
        image_size: int = 64,
        emb_act: bool = False,
    ) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"U-Net groups={groups} must divide channels={channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size_multiple = 2 ** (len(mults) - 1)
        self.channels = channels
        self.level_mlp = nn.Sequential(
            nn.Linear(channels, channels * 4), nn.SiLU(), nn.Linear(channels * 4, channels)
        )
        block = dict(emb_dim=channels, groups=groups, dropout=dropout, emb_act=emb_act)
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        downs: list[nn.Module] = []
        skips, ch, res = [channels], channels, image_size
        for i, mult in enumerate(mults):
            for _ in range(num_blocks):
                downs.append(ResBlock(ch, channels * mult, attn=res in attn_res, **block))
                ch = channels * mult
                skips.append(ch)
            if i < len(mults) - 1:
                downs.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res //= 2
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, attn=True, **block), ResBlock(ch, ch, attn=False, **block)]
        )
        ups: list[nn.Module] = []
        for i, mult in reversed(list(enumerate(mults))):
            for _ in range(num_blocks + 1):
                ups.append(ResBlock(ch + skips.pop(), channels * mult, attn=res in attn_res, **block))
                ch = channels * mult
            if i > 0:
                ups.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)
                    )
                )
                res *= 2
        self.ups = nn.ModuleList(ups)
        self.tail = Block(ch, out_channels, groups)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Orthogonal weights (gain 1) and zero biases for every convolution and linear layer (as JSR3)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ValueError(f"U-Net input {tuple(x.shape[-2:])} must be a multiple of {self.size_multiple}")
        emb = self.level_mlp(sinusoidal_embedding(level, self.channels))
        h = self.head(x)
        feats = [h]
        for layer in self.downs:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            feats.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.ups:
            h = layer(torch.cat([h, feats.pop()], dim=1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.tail(h)


__all__ = ["UNET_PRESETS", "UNet", "sinusoidal_embedding", "unet_preset"]
