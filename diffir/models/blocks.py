"""DIRformer building blocks (paper §3.1, Fig. 2; docs/method.md §1.1): channel LayerNorm, DMTA, DGFN, the
transformer block and the resampling steps.

Every DMTA and DGFN is modulated by the image-restoration prior (IPR) ``z`` (B, 256):
``F' = W1·z ⊙ LN(F) + W2·z`` with ``[W1·z, W2·z] = Linear(256, 2·dim, bias=False)(z)``.
Attribute names follow the official code so that official checkpoints load unchanged. The layers call the
fast kernels of :mod:`diffir.models.ops` (same functions, less time); :mod:`diffir.models.reference` computes
them in the official order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .ops import Conv1x1, pointwise_depthwise, transposed_attention

IPR_DIM = 256  # 4·C' with C' = 64 in every official configuration


class BiasFreeLayerNorm(nn.Module):
    """``x / sqrt(var(x) + 1e-5) · w`` over the last dim; the mean is *not* subtracted (official quirk)."""

    bias = None

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        """``x / sqrt(var(x) + 1e-5)``, before the affine part."""
        # two means instead of torch.var, whose Welford kernel is ~10x slower here on short rows
        centred = x - x.mean(-1, keepdim=True)
        var = (centred * centred).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x) * self.weight


class WithBiasLayerNorm(nn.Module):
    """``(x - mean) / sqrt(var + 1e-5) · w + b`` over the last dim."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / sqrt(var + 1e-5)``, before the affine part."""
        # one fused kernel, same function; the weight's shape stays a constant when traced (ONNX export)
        return F.layer_norm(x, self.weight.shape, None, None, 1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


LAYER_NORMS = {"BiasFree": BiasFreeLayerNorm, "WithBias": WithBiasLayerNorm}


class LayerNorm(nn.Module):
    """Per-pixel LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, dim: int, layer_norm_type: str) -> None:
        super().__init__()
        if layer_norm_type not in LAYER_NORMS:
            raise ValueError(f"LayerNorm_type must be one of {sorted(LAYER_NORMS)}, got {layer_norm_type!r}")
        self.body = LAYER_NORMS[layer_norm_type](dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The normalisation without the affine ``· w (+ b)``, which :meth:`IPRModulation.modulate` folds in.

        Normalising over dim 1 after moving it last equals the official b c h w -> b (h w) c round trip; on a
        channels-last map the moved view is contiguous, so nothing is copied.
        """
        return self.body.normalize(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class IPRModulation(nn.Module):
    """``x · s + t`` with ``[s, t] = Linear(ipr_dim, 2·dim, bias=False)(z)``: plain scale, not ``1 + s``."""

    def __init__(self, dim: int, ipr_dim: int = IPR_DIM) -> None:
        super().__init__()
        self.kernel = nn.Sequential(nn.Linear(ipr_dim, dim * 2, bias=False))

    def modulate(self, x: torch.Tensor, z: torch.Tensor, norm: LayerNorm) -> torch.Tensor:
        """``LN(x) · s + t`` computed as ``x̂ · (w·s) + (b·s + t)``: the LayerNorm's per-channel affine folds into
        the modulation's, which saves two passes over the map and their backward."""
        scale, shift = self.kernel(z).view(x.shape[0], -1, 1, 1).chunk(2, dim=1)
        affine = norm.body
        if affine.bias is not None:
            shift = torch.addcmul(shift, affine.bias.view(-1, 1, 1), scale)
        scale = scale * affine.weight.view(-1, 1, 1)
        return torch.addcmul(shift, norm.normalize(x), scale)  # one pass, in x's memory format


class DMTA(IPRModulation):
    """Dynamic multi-head transposed attention (docs/method.md §1.1): Restormer's MDTA on IPR-modulated features.

    ``q, k, v = DWConv3×3(Conv1×1(F'))``; per head ``softmax(τ · q̂ k̂ᵀ) v`` with q, k L2-normalised over the
    pixels, then ``project_out``. Attention is across channels (a c×c map per head), so its cost is linear in
    the number of pixels. ``composed`` (default on) applies ``project_out`` to the attention map instead of to
    ``attn @ v`` (the same linear map, one pass over the pixels fewer); ``composed=False`` projects
    ``attn @ v`` as the official code does (the rest still runs the kernels of :mod:`diffir.models.ops`).
    """

    composed: bool = True

    def __init__(self, dim: int, num_heads: int, bias: bool, ipr_dim: int = IPR_DIM) -> None:
        super().__init__(dim, ipr_dim)
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = Conv1x1(dim, dim * 3, bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = Conv1x1(dim, dim, bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor, norm: LayerNorm) -> torch.Tensor:
        """``DMTA(norm(x), z)``, the norm folded into the modulation."""
        q, k, v = pointwise_depthwise(self.modulate(x, z, norm), self.qkv, self.qkv_dwconv, 3)
        return transposed_attention(q, k, v, self.temperature, self.project_out, self.composed)


class DGFN(IPRModulation):
    """Dynamic gated feed-forward network (docs/method.md §1.1): Restormer's GDFN on IPR-modulated features,
    ``Conv1×1(GELU(x1) ⊙ x2)`` with ``x1, x2 = DWConv3×3(Conv1×1(F'))``."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, ipr_dim: int = IPR_DIM) -> None:
        super().__init__(dim, ipr_dim)
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = Conv1x1(dim, hidden * 2, bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = Conv1x1(hidden, dim, bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor, norm: LayerNorm) -> torch.Tensor:
        """``DGFN(norm(x), z)``, the norm folded into the modulation."""
        x1, x2 = pointwise_depthwise(self.modulate(x, z, norm), self.project_in, self.dwconv, 2)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """``x += DMTA(LN(x), z); x += DGFN(LN(x), z)`` (docs/method.md §1.1)."""

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
        x = x + self.attn(x, z, self.norm1)
        return x + self.ffn(x, z, self.norm2)


class TransformerStage(nn.ModuleList):
    """A sequence of transformer blocks sharing one IPR (indexed like the official ``nn.Sequential``).

    ``checkpointing`` (a switch, default off; :func:`diffir.models.switches.set_checkpointing`): keep only each
    block's input for backward and recompute its inside then (activation checkpointing: less memory for one
    more forward pass of the stage).
    """

    checkpointing: bool = False

    def __init__(self, num_blocks: int, **block_kwargs) -> None:
        super().__init__(TransformerBlock(**block_kwargs) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for block in self:
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, z, use_reentrant=False)
            else:
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
