"""guided-diffusion's ADM U-Net (Dhariwal & Nichol), the ImageNet 256² unconditional prior GDP uses.

Only for cost reports (parameters and MACs of the published GDP configuration, docs/baselines.md §4-5):
its weights are not shipped here. The structure follows ``guided_diffusion/unet.py`` ``UNetModel``: scale-shift
normalisation, BigGAN up/down residual blocks, multi-head attention at the listed downsampling factors and
a learned variance (6 output channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """guided-diffusion's ``[cos, sin]`` embedding of the timestep."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ADMResBlock(nn.Module):
    """Residual block with scale-shift conditioning; ``up`` / ``down`` resample inside (BigGAN style)."""

    def __init__(self, channels: int, emb: int, out: int, up: bool = False, down: bool = False) -> None:
        super().__init__()
        self.in_norm, self.in_conv = nn.GroupNorm(32, channels), nn.Conv2d(channels, out, 3, padding=1)
        self.up, self.down = up, down
        self.emb = nn.Linear(emb, 2 * out)
        self.out_norm, self.out_conv = nn.GroupNorm(32, out), nn.Conv2d(out, out, 3, padding=1)
        self.skip = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(self.resample(F.silu(self.in_norm(x))))
        scale, shift = self.emb(F.silu(emb))[..., None, None].chunk(2, dim=1)
        h = self.out_conv(F.silu(self.out_norm(h) * (1 + scale) + shift))
        return self.skip(self.resample(x)) + h


class ADMAttention(nn.Module):
    """Multi-head self-attention (``num_head_channels`` per head), guided-diffusion's legacy QKV order."""

    def __init__(self, channels: int, head_channels: int = 64) -> None:
        super().__init__()
        self.heads = channels // head_channels
        self.norm = nn.GroupNorm(32, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x.reshape(b, c, h * w))).reshape(b * self.heads, 3 * c // self.heads, h * w)
        q, k, v = qkv.chunk(3, dim=1)
        scale = 1 / math.sqrt(math.sqrt(c // self.heads))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        out = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, h * w)
        return x + self.proj(out).reshape(b, c, h, w)


class ADMUNet(nn.Module):
    """``UNetModel`` with the flags of GDP's prior by default (256², 256 channels, mults 1,1,2,2,4,4, two blocks,
    attention at 32/16/8 px, 64 channels per head, learned sigma): 552,814,086 parameters."""

    def __init__(
        self,
        image_size: int = 256,
        channels: int = 256,
        mults: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_blocks: int = 2,
        attn_res: Sequence[int] = (32, 16, 8),
        head_channels: int = 64,
        out_channels: int = 6,
    ) -> None:
        super().__init__()
        emb = 4 * channels
        attn_ds = {image_size // r for r in attn_res}
        self.channels = channels
        self.time_embed = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))

        def stage(*layers: nn.Module) -> nn.ModuleList:
            return nn.ModuleList(layers)

        self.inputs = nn.ModuleList([stage(nn.Conv2d(3, channels, 3, padding=1))])
        chans, ch, ds = [channels], channels, 1
        for level, mult in enumerate(mults):
            for _ in range(num_blocks):
                layers = [ADMResBlock(ch, emb, channels * mult)]
                ch = channels * mult
                if ds in attn_ds:
                    layers.append(ADMAttention(ch, head_channels))
                self.inputs.append(stage(*layers))
                chans.append(ch)
            if level != len(mults) - 1:
                self.inputs.append(stage(ADMResBlock(ch, emb, ch, down=True)))
                chans.append(ch)
                ds *= 2
        self.middle = stage(
            ADMResBlock(ch, emb, ch), ADMAttention(ch, head_channels), ADMResBlock(ch, emb, ch)
        )
        self.outputs = nn.ModuleList()
        for level, mult in list(enumerate(mults))[::-1]:
            for i in range(num_blocks + 1):
                layers = [ADMResBlock(ch + chans.pop(), emb, channels * mult)]
                ch = channels * mult
                if ds in attn_ds:
                    layers.append(ADMAttention(ch, head_channels))
                if level and i == num_blocks:
                    layers.append(ADMResBlock(ch, emb, ch, up=True))
                    ds //= 2
                self.outputs.append(stage(*layers))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h) if isinstance(layer, nn.Conv2d) else layer(h, emb)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.channels))
        feats, h = [], x
        for layers in self.inputs:
            h = self._run(layers, h, emb)
            feats.append(h)
        h = self._run(self.middle, h, emb)
        for layers in self.outputs:
            h = self._run(layers, torch.cat([h, feats.pop()], dim=1), emb)
        return self.out(h)
