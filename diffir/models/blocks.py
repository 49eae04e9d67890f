"""DIRformer building blocks: channel LayerNorm, DMTA, DGFN and the transformer block.

Every DMTA and DGFN is modulated by the image-restoration prior (IPR) ``z`` (B, 256):
``F' = W1·z ⊙ LN(F) + W2·z`` with ``[W1·z, W2·z] = Linear(256, 2·dim, bias=False)(z)``.
Attribute names follow the official code so that official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IPR_DIM = 256  # 4·C' with C' = 64 in every official configuration


class BiasFreeLayerNorm(nn.Module):
    """``x / sqrt(var(x) + 1e-5) · w`` over the last dim; the mean is *not* subtracted (official quirk)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight


class WithBiasLayerNorm(nn.Module):
    """``(x - mean) / sqrt(var + 1e-5) · w + b`` over the last dim."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


LAYER_NORMS = {"BiasFree": BiasFreeLayerNorm, "WithBias": WithBiasLayerNorm}


class LayerNorm(nn.Module):
    """Per-pixel LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, dim: int, layer_norm_type: str) -> None:
        super().__init__()
        if layer_norm_type not in LAYER_NORMS:
            raise ValueError(f"LayerNorm_type must be one of {sorted(LAYER_NORMS)}, got {layer_norm_type!r}")
        self.body = LAYER_NORMS[layer_norm_type](dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalising over dim 1 after moving it last equals the official b c h w -> b (h w) c round trip.
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class IPRModulation(nn.Module):
    """``x · s + t`` with ``[s, t] = Linear(ipr_dim, 2·dim, bias=False)(z)``: plain scale, not ``1 + s``."""

    def __init__(self, dim: int, ipr_dim: int = IPR_DIM) -> None:
        super().__init__()
        self.kernel = nn.Sequential(nn.Linear(ipr_dim, dim * 2, bias=False))

    def modulate(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale, shift = self.kernel(z).view(x.shape[0], -1, 1, 1).chunk(2, dim=1)
        return x * scale + shift


class DMTA(IPRModulation):
    """Dynamic multi-head transposed attention: Restormer's MDTA on IPR-modulated features.

    Attention is across channels (a c×c map per head), so its cost is linear in the number of pixels.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool, ipr_dim: int = IPR_DIM) -> None:
        super().__init__(dim, ipr_dim)
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(self.modulate(x, z))).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class DGFN(IPRModulation):
    """Dynamic gated feed-forward network: Restormer's GDFN on IPR-modulated features."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, ipr_dim: int = IPR_DIM) -> None:
        super().__init__(dim, ipr_dim)
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(self.modulate(x, z))).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """``x += DMTA(LN(x), z); x += DGFN(LN(x), z)``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        layer_norm_type: str,
        ipr_dim: int = IPR_DIM,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layer_norm_type)
        self.attn = DMTA(dim, num_heads, bias, ipr_dim)
        self.norm2 = LayerNorm(dim, layer_norm_type)
        self.ffn = DGFN(dim, ffn_expansion_factor, bias, ipr_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), z)
        return x + self.ffn(self.norm2(x), z)


class TransformerStage(nn.ModuleList):
    """A sequence of transformer blocks sharing one IPR (indexed like the official ``nn.Sequential``)."""

    def __init__(self, num_blocks: int, **block_kwargs) -> None:
        super().__init__(TransformerBlock(**block_kwargs) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = block(x, z)
        return x


class Downsample(nn.Sequential):
    """conv3×3 (n → n/2) then PixelUnshuffle(2): 2n channels at half resolution."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )


class Upsample(nn.Sequential):
    """conv3×3 (n → 2n) then PixelShuffle(2): n/2 channels at double resolution."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2)
        )
