"""DIRformer building blocks: channel LayerNorm, DMTA, DGFN and the transformer block.

Every DMTA and DGFN is modulated by the image-restoration prior (IPR) ``z`` (B, 256):
``F' = W1·z ⊙ LN(F) + W2·z`` with ``[W1·z, W2·z] = Linear(256, 2·dim, bias=False)(z)``.
Attribute names follow the official code so that official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

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


class Conv1x1(nn.Conv2d):
    """A 1×1 convolution (a per-pixel linear map) that runs through oneDNN on CPU channels-last float maps.

    Single-threaded, PyTorch sends 1×1 convolutions to its own GEMM path; on channels-last maps oneDNN (forward)
    and two plain matrix products (backward) are ~25 % faster here for the same result. Other inputs (NCHW,
    GPU, autocast, torch.compile) use ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1x1(x, self.weight, self.bias)


class _ChannelsLastConv1x1(torch.autograd.Function):
    """``conv1x1`` on a channels-last CPU map: oneDNN forward, backward as matrix products on (pixels, C)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.mkldnn_convolution(x, weight, bias, (0, 0), (1, 1), (1, 1), 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        c_out, c_in = weight.shape[:2]
        grad = grad.contiguous(memory_format=torch.channels_last)
        rows = grad.permute(0, 2, 3, 1).reshape(-1, c_out)  # (pixels, C_out), a view
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            weight_t = weight.reshape(c_out, c_in).t().contiguous().view(c_in, c_out, 1, 1)
            grad_x = torch.mkldnn_convolution(grad, weight_t, None, (0, 0), (1, 1), (1, 1), 1)
        if ctx.needs_input_grad[1]:
            grad_w = (rows.t() @ x.permute(0, 2, 3, 1).reshape(-1, c_in)).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        return grad_x, grad_w, grad_b


@register_flop_formula(torch.ops.aten.mkldnn_convolution)
def _mkldnn_convolution_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the direct oneDNN calls above, so ``diffir.summary`` (FlopCounterMode) still counts them."""
    return conv_flop_count(x_shape, w_shape, out_shape)


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1×1 ``weight``; the faster path for CPU channels-last float maps."""
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32 == weight.dtype
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()  # inductor picks its own convolution kernels
        and not torch.jit.is_tracing()  # ONNX export (diffir.export): a plain Conv node
        and x.is_contiguous(memory_format=torch.channels_last)
        and torch.backends.mkldnn.is_available()
    ):
        return _ChannelsLastConv1x1.apply(x, weight, bias)
    return F.conv2d(x, weight, bias)


def pointwise_depthwise(
    x: torch.Tensor, pointwise: nn.Conv2d, depthwise: nn.Conv2d, parts: int
) -> list[torch.Tensor]:
    """``depthwise(pointwise(x)).chunk(parts, dim=1)``, computed part by part from the matching slices of the
    weights so that each part is a dense map: a channel slice of a channels-last map is strided, elementwise
    ops on it run ~3x slower, and its gradient needs a concatenation and a copy."""
    w_in, w_dw = pointwise.weight.chunk(parts), depthwise.weight.chunk(parts)
    no_bias = (None,) * parts
    b_in = pointwise.bias.chunk(parts) if pointwise.bias is not None else no_bias
    b_dw = depthwise.bias.chunk(parts) if depthwise.bias is not None else no_bias
    return [
        F.conv2d(conv1x1(x, wi, bi), wd, bd, padding=1, groups=wd.shape[0])
        for wi, bi, wd, bd in zip(w_in, b_in, w_dw, b_dw, strict=True)
    ]


def _pixel_major(rows: torch.Tensor) -> torch.Tensor:
    """(b, heads, hw, d) rows stored as (b, hw, heads·d): the channels-last layout of their feature map
    (already so for one head)."""
    return rows.transpose(1, 2).contiguous().transpose(1, 2)


class _ChannelGram(torch.autograd.Function):
    """``q @ kᵀ`` whose backward returns ``∂q`` and ``∂k`` pixel-major (channels-last), like their forward.

    Autograd's matmul backward returns the left operand's gradient as (d, hw) rows, i.e. an NCHW map: the
    depthwise convolution before it then copies it back to channels-last and the gradient from the q/k norms
    is added to it across layouts, both slow passes over the map.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(q, k)
        return q @ k.transpose(-2, -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        q, k = ctx.saved_tensors
        grad_q = grad_k = None
        if ctx.needs_input_grad[0]:  # (grad @ k)ᵀ = kᵀ gradᵀ, computed pixel-major
            grad_q = _pixel_major(k.transpose(-2, -1) @ grad.transpose(-2, -1)).transpose(-2, -1)
        if ctx.needs_input_grad[1]:  # (gradᵀ @ q)ᵀ = qᵀ grad
            grad_k = _pixel_major(q.transpose(-2, -1) @ grad).transpose(-2, -1)
        return grad_q, grad_k


def channel_gram(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``q @ kᵀ`` for (b, heads, d, hw) maps; gradients keep the channels-last layout."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad) and not torch.compiler.is_compiling():
        return _ChannelGram.apply(q, k)
    return q @ k.transpose(-2, -1)


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
    """Dynamic multi-head transposed attention: Restormer's MDTA on IPR-modulated features.

    Attention is across channels (a c×c map per head), so its cost is linear in the number of pixels.
    ``composed`` (default on) applies ``project_out`` to the attention map instead of to ``attn @ v`` (the same
    linear map, one pass over the pixels fewer); ``composed=False`` computes in the official order.
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
        b, c, h, w = x.shape
        q, k, v = pointwise_depthwise(self.modulate(x, z, norm), self.qkv, self.qkv_dwconv, 3)
        # normalize(q) @ normalize(k)ᵀ over the pixels, with the L2 norms (clamped at F.normalize's 1e-12)
        # applied to the small c×c product instead of to q and k
        q_norm, k_norm = (
            (t * t).sum((2, 3)).sqrt().clamp_min(1e-12).view(b, self.num_heads, -1) for t in (q, k)
        )
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        scale = self.temperature / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))
        attn = (channel_gram(q, k) * scale).softmax(dim=-1)
        if not self.composed:  # (attn @ v) as vᵀ attnᵀ: pixel-major, i.e. already channels-last
            out = (v.transpose(-2, -1) @ attn.transpose(-2, -1)).transpose(1, 2)
            return self.project_out(out.reshape(b, h, w, c).permute(0, 3, 1, 2))
        # project_out(attn @ v) = (W_o · blockdiag(attn)) @ v: one c×c product per image replaces a pass of
        # h·w·c·d MACs; computed as v_rows @ mixᵀ, pixel-major, i.e. the output comes out channels-last
        mix = torch.einsum("ohi,bhij->bohj", self.project_out.weight.view(c, self.num_heads, -1), attn)
        out = v.reshape(b, c, h * w).transpose(1, 2) @ mix.reshape(b, c, c).transpose(1, 2)
        if self.project_out.bias is not None:
            out = out + self.project_out.bias
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


class DGFN(IPRModulation):
    """Dynamic gated feed-forward network: Restormer's GDFN on IPR-modulated features."""

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
        x = x + self.attn(x, z, self.norm1)
        return x + self.ffn(x, z, self.norm2)


class TransformerStage(nn.ModuleList):
    """A sequence of transformer blocks sharing one IPR (indexed like the official ``nn.Sequential``)."""

    def __init__(self, num_blocks: int, **block_kwargs) -> None:
        super().__init__(TransformerBlock(**block_kwargs) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, z: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
        """``checkpointing``: keep only each block's input for backward and recompute its inside then
        (activation checkpointing: less memory for one more forward pass of the stage)."""
        for block in self:
            if checkpointing and torch.is_grad_enabled():
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
