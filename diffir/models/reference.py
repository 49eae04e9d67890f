"""DiffIR in the official computation order: the same networks, parameters and state dict, computed op for op
as the official code does (``DiffIR-SRGAN/DiffIR/archs/S2_arch.py``; docs/method.md §1), with none of the
kernels of :mod:`diffir.models.ops`.

It is what diffir's speed is measured against (``bench/bench_speed.py``; it runs at the official code's own
speed, README § Benchmarks) and what the tests hold the fast paths to (tests/test_fast_paths.py).
:func:`reference_model` returns a copy of any diffir model (or part) whose modules compute as follows:

- every feature map in NCHW memory, weights too;
- LayerNorm: the map moved to ``b (h w) c`` and back around it (a copy in, a permuted view out),
  ``torch.var`` for the variance, the affine applied after the normalisation (:func:`layer_norm`);
- attention: modulation ``x·s + t``, ``qkv`` then the depthwise conv on the whole map, a channel split, q and
  k L2-normalised (``F.normalize``), ``(attn @ v)`` then ``project_out`` (:func:`attention`);
- feed-forward: modulation, ``project_in``, depthwise conv, split, ``gelu(x1)·x2``, ``project_out``
  (:func:`feed_forward`);
- 1×1 convolutions as plain ``nn.Conv2d``; the SR head layer by layer; CPEN's residual added in place;
- the U-shape itself is the DIRformer's own ``forward`` (the official one once the maps are NCHW).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DGFN, DMTA, BiasFreeLayerNorm, LayerNorm, TransformerBlock
from .cpen import CPEN, ResBlock
from .dirformer import DIRformer, SRHead
from .ops import Conv1x1


def layer_norm(norm: LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """The official ``LayerNorm``: ``to_4d(body(to_3d(x)))`` (docs/method.md §1.1)."""
    b, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # rearrange 'b c h w -> b (h w) c'
    body = norm.body
    sigma = y.var(-1, keepdim=True, unbiased=False)
    if isinstance(body, BiasFreeLayerNorm):
        y = y / torch.sqrt(sigma + 1e-5) * body.weight
    else:
        y = (y - y.mean(-1, keepdim=True)) / torch.sqrt(sigma + 1e-5) * body.weight + body.bias
    return y.reshape(b, h, w, c).permute(0, 3, 1, 2)  # rearrange 'b (h w) c -> b c h w'


def _modulate(kernel: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``x·s + t`` with ``[s, t] = kernel(z)`` (docs/method.md §1.1)."""
    scale, shift = kernel(z).view(-1, x.shape[1] * 2, 1, 1).chunk(2, dim=1)
    return x * scale + shift


def attention(attn: DMTA, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The official ``Attention.forward`` on a DMTA's parameters (``x`` already normalised)."""
    b, c, h, w = x.shape
    heads = attn.num_heads
    q, k, v = attn.qkv_dwconv(attn.qkv(_modulate(attn.kernel, x, z))).chunk(3, dim=1)
    q, k, v = (
        t.reshape(b, heads, c // heads, h * w) for t in (q, k, v)
    )  # 'b (head c) h w -> b head c (h w)'
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    weights = ((q @ k.transpose(-2, -1)) * attn.temperature).softmax(dim=-1)
    return attn.project_out((weights @ v).reshape(b, c, h, w))


def feed_forward(ffn: DGFN, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The official ``FeedForward.forward`` on a DGFN's parameters (``x`` already normalised)."""
    x1, x2 = ffn.dwconv(ffn.project_in(_modulate(ffn.kernel, x, z))).chunk(2, dim=1)
    return ffn.project_out(F.gelu(x1) * x2)


class ReferenceTransformerBlock(TransformerBlock):
    """``x = x + attn(norm1(x), z); x = x + ffn(norm2(x), z)``, each part as the official code computes it."""

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = x + attention(self.attn, layer_norm(self.norm1, x), z)
        return x + feed_forward(self.ffn, layer_norm(self.norm2, x), z)


class ReferenceResBlock(ResBlock):
    """``res = body(x); res += x`` (``common.ResBlock``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        res += x
        return res


# diffir class -> the class whose forward computes in the official order (the same parameters)
REFERENCE_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    TransformerBlock: ReferenceTransformerBlock,
    ResBlock: ReferenceResBlock,
    Conv1x1: nn.Conv2d,
}


def reference_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (any diffir model or part) computing in the official order, in NCHW.

    Its modules are the copies of ``model``'s with their class swapped for the reference one (same attributes,
    another ``forward``), so its state dict has the same keys and values. The DIRformer's and the CPEN's own
    forward passes are the official ones once their maps are NCHW (``channels_last`` off) and the SR head runs
    layer by layer (``composed`` off; DMTA's flag is set too, though the reference block does not read it).
    """
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    for module in model.modules():
        if type(module) in REFERENCE_CLASSES:
            module.__class__ = REFERENCE_CLASSES[type(module)]
        if isinstance(module, DIRformer | CPEN):
            module.channels_last = False
        if isinstance(module, SRHead | DMTA):
            module.composed = False
    return model
