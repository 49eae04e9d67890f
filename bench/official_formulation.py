"""The official DiffIR formulation of the transformer blocks: the in-run speed baseline of ``bench.bench_speed``.

The official ``DIRformer_arch.py`` (Restormer's blocks) moves every feature map to ``b (h w) c`` and back
around each LayerNorm (einops ``rearrange``: a copy in, a permuted view out), normalises with ``torch.var``,
modulates with ``x * s + t``, L2-normalises q and k over the pixels, runs the SR head layer by layer and
everything in NCHW memory.
:func:`official_formulation` wraps a diffir model's blocks in exactly those forward passes, sharing the same
parameter modules (so the state dict and the weights are the very same), and switches channels-last off:
timing it against the diffir model in one process compares the two formulations of the same function.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from diffir.models import set_channels_last, set_composed
from diffir.models.blocks import DGFN, DMTA, BiasFreeLayerNorm, TransformerBlock, TransformerStage


def to_3d(x: torch.Tensor) -> torch.Tensor:
    """``rearrange(x, 'b c h w -> b (h w) c')``."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def to_4d(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``rearrange(x, 'b (h w) c -> b c h w', h=h, w=w)``."""
    b, _, c = x.shape
    return x.reshape(b, h, w, c).permute(0, 3, 1, 2)


class OfficialLayerNorm(nn.Module):
    """``to_4d(body(to_3d(x)))`` with the official bias-free / with-bias bodies (``torch.var``, ``/ sqrt``)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = to_3d(x)
        sigma = y.var(-1, keepdim=True, unbiased=False)
        if isinstance(self.body, BiasFreeLayerNorm):
            y = y / torch.sqrt(sigma + 1e-5) * self.body.weight
        else:
            mu = y.mean(-1, keepdim=True)
            y = (y - mu) / torch.sqrt(sigma + 1e-5) * self.body.weight + self.body.bias
        return to_4d(y, h, w)


class OfficialAttention(nn.Module):
    """The official ``Attention.forward`` (modulation, qkv, per-head normalised channel attention)."""

    def __init__(self, attn: DMTA) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.kernel, self.temperature = attn.kernel, attn.temperature
        self.qkv, self.qkv_dwconv, self.project_out = attn.qkv, attn.qkv_dwconv, attn.project_out

    def forward(self, x: torch.Tensor, k_v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k_v1, k_v2 = self.kernel(k_v).view(-1, c * 2, 1, 1).chunk(2, dim=1)
        x = x * k_v1 + k_v2
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        heads = self.num_heads
        q, k, v = (
            t.reshape(b, heads, c // heads, h * w) for t in (q, k, v)
        )  # 'b (head c) h w -> b head c (h w)'
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class OfficialFeedForward(nn.Module):
    """The official ``FeedForward.forward`` (modulation, gated depthwise-conv MLP)."""

    def __init__(self, ffn: DGFN) -> None:
        super().__init__()
        self.kernel, self.project_in, self.dwconv, self.project_out = (
            ffn.kernel,
            ffn.project_in,
            ffn.dwconv,
            ffn.project_out,
        )

    def forward(self, x: torch.Tensor, k_v: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        k_v1, k_v2 = self.kernel(k_v).view(-1, c * 2, 1, 1).chunk(2, dim=1)
        x = x * k_v1 + k_v2
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class OfficialTransformerBlock(nn.Module):
    """``x = x + attn(norm1(x), k_v); x = x + ffn(norm2(x), k_v)`` on the given block's parameters."""

    def __init__(self, block: TransformerBlock) -> None:
        super().__init__()
        self.norm1, self.attn = OfficialLayerNorm(block.norm1.body), OfficialAttention(block.attn)
        self.norm2, self.ffn = OfficialLayerNorm(block.norm2.body), OfficialFeedForward(block.ffn)

    def forward(self, x: torch.Tensor, k_v: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), k_v)
        return x + self.ffn(self.norm2(x), k_v)


def official_formulation(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (any diffir model or part) computing with the official block formulation and SR head
    in NCHW.

    Its state dict has the same keys and values as ``model``'s.
    """
    model = set_composed(set_channels_last(copy.deepcopy(model), False), False)
    for module in model.modules():
        if isinstance(module, TransformerStage):
            for i, block in enumerate(module):
                module[i] = OfficialTransformerBlock(block)
    return model
