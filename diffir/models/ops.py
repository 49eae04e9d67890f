"""The fast kernels behind ``blocks.py`` and ``dirformer.py``: exact rewrites of the paper's layers that do the
same function in less time on CPU. Nothing here changes what a layer computes (tests/test_fast_paths.py
compares each against the layer-by-layer form; :mod:`diffir.models.reference` runs the official order).

- :class:`Conv1x1` / :func:`conv1x1`: 1×1 convolutions through oneDNN on channels-last maps, with a
  hand-written backward;
- :func:`pointwise_depthwise`: a 1×1 conv, a depthwise 3×3 conv and a channel split, computed part by part;
- :func:`transposed_attention`: DMTA's channel attention with the L2 norms applied to the c×c product, its
  gradients kept channels-last (:func:`channel_gram`) and, ``composed``, the output projection applied to the
  attention map;
- :func:`compose_shuffle_conv` / :func:`composed_sr_head`: the SR head's conv3×3 → PixelShuffle(2) → conv3×3
  as one 5×5 convolution to the sub-pixel phases.

The direct oneDNN calls have no FLOP formula in torch: :func:`register_flop_formulas` adds one, called when the
first :class:`Conv1x1` is built (a ``FlopCounterMode`` copies the formulas when it is created, always after
the model), never at import.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

# ---------------------------------------------------------------------------------------------------------------
# 1×1 convolutions through oneDNN


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


_flop_formulas_registered = False


def register_flop_formulas() -> None:
    """Teach torch's FLOP counter (``diffir.summary``, the evaluation's MAC column) the direct oneDNN calls of
    :func:`conv1x1`; idempotent."""
    global _flop_formulas_registered
    if _flop_formulas_registered:
        return

    @register_flop_formula(torch.ops.aten.mkldnn_convolution)
    def _mkldnn_convolution_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return conv_flop_count(x_shape, w_shape, out_shape)

    _flop_formulas_registered = True


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


class Conv1x1(nn.Conv2d):
    """A 1×1 convolution (a per-pixel linear map) that runs through oneDNN on CPU channels-last float maps.

    Single-threaded, PyTorch sends 1×1 convolutions to its own GEMM path; on channels-last maps oneDNN (forward)
    and two plain matrix products (backward) are ~25 % faster here for the same result. Other inputs (NCHW,
    GPU, autocast, torch.compile) use ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)
        register_flop_formulas()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1x1(x, self.weight, self.bias)


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


# ---------------------------------------------------------------------------------------------------------------
# DMTA's channel attention


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


def transposed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    temperature: torch.Tensor,
    project_out: nn.Conv2d,
    composed: bool,
) -> torch.Tensor:
    """``project_out(softmax(τ · q̂ k̂ᵀ) v)`` per head for (b, c, h, w) maps, ``q̂``, ``k̂`` L2-normalised over the
    pixels (docs/method.md §1.1); ``temperature`` is τ, (heads, 1, 1).

    The L2 norms (clamped at F.normalize's 1e-12) divide the small c×c product instead of q and k.
    ``composed``: ``project_out(attn @ v) = (W_o · blockdiag(attn)) @ v``, one c×c product per image instead of
    a pass of h·w·c·d MACs; either way the output comes out channels-last (computed pixel-major).
    """
    b, c, h, w = q.shape
    heads = temperature.shape[0]
    q_norm, k_norm = ((t * t).sum((2, 3)).sqrt().clamp_min(1e-12).view(b, heads, -1) for t in (q, k))
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    scale = temperature / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))
    attn = (channel_gram(q, k) * scale).softmax(dim=-1)
    if not composed:  # (attn @ v) as vᵀ attnᵀ: pixel-major, i.e. already channels-last
        out = (v.transpose(-2, -1) @ attn.transpose(-2, -1)).transpose(1, 2)
        return project_out(out.reshape(b, h, w, c).permute(0, 3, 1, 2))
    mix = torch.einsum("ohi,bhij->bohj", project_out.weight.view(c, heads, -1), attn)
    out = v.reshape(b, c, h * w).transpose(1, 2) @ mix.reshape(b, c, c).transpose(1, 2)
    if project_out.bias is not None:
        out = out + project_out.bias
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------------------------
# The SR head as one 5×5 convolution


def _phase_taps() -> tuple[torch.Tensor, ...]:
    """Index tables of :func:`compose_shuffle_conv`. For each output phase (α, β) and tap (m, n) of the outer
    convolution: the tap, the sub-pixel channel of the shuffled map it reads, and where the inner
    convolution's 3×3 taps then land in the composed 5×5 kernel (flat indices into (phase, 5, 5))."""
    rows = []
    for alpha, beta, m, n in itertools.product((0, 1), (0, 1), range(3), range(3)):
        # output row 2p + α reads shuffled row 2p + s = 2(p + s // 2) + s % 2: sub-pixel row s % 2 of the inner
        # convolution's output at row p + s // 2 of its input (columns likewise with t)
        s, t = alpha + m - 1, beta + n - 1
        targets = [
            (2 * alpha + beta) * 25 + (s // 2 + 1 + ky) * 5 + (t // 2 + 1 + kx)
            for ky, kx in itertools.product(range(3), range(3))
        ]
        rows.append((m, n, 2 * (s % 2) + t % 2, targets))
    m, n, sub, targets = zip(*rows, strict=True)
    return torch.tensor(m), torch.tensor(n), torch.tensor(sub), torch.tensor(targets).flatten()


_PHASE_TAPS = _phase_taps()  # built outside any inference_mode: autograd may save the indices


def compose_shuffle_conv(inner: nn.Conv2d, outer: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of the 5×5 convolution ``K`` with ``outer(PixelShuffle(2)(inner(y))) =
    PixelShuffle(2)(K(y))`` away from the border (both 3×3, padding 1): ``K`` maps ``y`` to the 4 sub-pixel
    phases of each output channel. Every (phase, outer tap) reads one sub-pixel channel of ``inner`` at a
    shift of -1, 0 or 1 on ``y``'s grid, so ``K`` is one matrix product of the two weights, scattered."""
    w_in, w_out = inner.weight, outer.weight
    c_out, c_mid, c_in = w_out.shape[0], w_out.shape[1], w_in.shape[1]
    taps, dev = w_out.permute(0, 2, 3, 1).reshape(c_out * 9, c_mid), w_in.device
    m, n, sub, target = (t.to(dev) for t in _PHASE_TAPS)
    products = (taps @ w_in.reshape(c_mid, 4 * c_in * 9)).view(c_out, 3, 3, 4, c_in, 9)[:, m, n, sub]
    kernel = w_in.new_zeros(c_out, c_in, 4 * 25).index_add_(
        2, target, products.permute(0, 2, 1, 3).reshape(c_out, c_in, 36 * 9)
    )
    kernel = kernel.view(c_out, c_in, 4, 5, 5).transpose(1, 2).reshape(c_out * 4, c_in, 5, 5)
    bias = None
    if inner.bias is not None:  # the inner bias seen through the outer taps, per phase
        bias = (taps @ inner.bias.view(c_mid, 4)).view(c_out, 3, 3, 4)[:, m, n, sub].view(c_out, 4, 9).sum(-1)
    if outer.bias is not None:
        bias = outer.bias[:, None].expand(c_out, 4) if bias is None else bias + outer.bias[:, None]
    return kernel, None if bias is None else bias.reshape(c_out * 4)


def composed_sr_head(
    y: torch.Tensor,
    inner: nn.Conv2d,
    shuffle: nn.PixelShuffle,
    outer: nn.Conv2d,
    frozen: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """``outer(shuffle(inner(y)))`` as ``shuffle(K(y))`` with ``K`` from :func:`compose_shuffle_conv` (or the
    ``frozen`` one); the outermost ring of output pixels, where ``outer`` reads its zero padding instead of the
    extended map, is computed by the layers themselves on 2-pixel strips of ``y``."""

    def layers(strip: torch.Tensor) -> torch.Tensor:
        return outer(shuffle(inner(strip)))

    if frozen is not None:
        kernel, bias = frozen
    else:
        with torch.autocast(y.device.type, enabled=False):  # composed in the weights' precision
            kernel, bias = compose_shuffle_conv(inner, outer)
    out = shuffle(F.conv2d(y, kernel, bias, padding=2))
    out[..., :1, :] = layers(y[..., :2, :])[..., :1, :]
    out[..., -1:, :] = layers(y[..., -2:, :])[..., -1:, :]
    out[..., :1] = layers(y[..., :2])[..., :1]
    out[..., -1:] = layers(y[..., -2:])[..., -1:]
    return out
