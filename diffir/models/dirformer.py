"""DIRformer: the U-shaped, IPR-modulated transformer that restores the image (paper §3.1, Fig. 2).

One class serves every task; the task-specific head is chosen by arguments:

- super-resolution (``upscale`` = 4, 2 or 1): the LQ is pixel-unshuffled by ``4 / upscale`` first, the head
  is the EDSR ×4 upsampler + conv3×3 (``tail``), plus the nearest-upsampled LQ as a global residual;
- deblurring (``upscale=None``): conv3×3 head (``output``) plus the input as residual;
- inpainting (``upscale=None``, 4 input channels, ``global_residual=False``, no refinement blocks).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import IPR_DIM, Conv1x1, Downsample, TransformerStage, Upsample

SR_SCALES = (1, 2, 4)


class OverlapPatchEmbed(nn.Module):
    """conv3×3 from the input channels to ``dim`` features."""

    def __init__(self, in_channels: int, dim: int, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Upsampler(nn.Sequential):
    """EDSR's ×4 upsampler: two (conv3×3 to 4n channels, PixelShuffle(2)) steps, convs with bias."""

    def __init__(self, n_feat: int) -> None:
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [nn.Conv2d(n_feat, 4 * n_feat, kernel_size=3, padding=1), nn.PixelShuffle(2)]
        super().__init__(*layers)


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


_PHASE_TAPS = _phase_taps()


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


class SRHead(nn.Sequential):
    """The SR head (``tail``): EDSR's ×4 upsampler, then conv3×3 to the output channels.

    After the first PixelShuffle everything is linear (conv3×3 n → 4n, PixelShuffle(2), conv3×3 n → 3), so
    with ``composed`` (default on) it runs as one 5×5 convolution to the 3×4 sub-pixel phases and a
    PixelShuffle, its kernel composed from the two convolutions' weights at every call (exact: the same linear
    map, ~15× fewer MACs; gradients flow to both weights). Only the outermost ring of output pixels, where
    the last convolution reads its zero padding instead of the extended map, is computed by the two
    convolutions themselves, on 2-pixel strips of their input. ``composed=False`` runs the layers in turn.
    """

    composed: bool = True
    frozen: tuple[torch.Tensor, torch.Tensor | None] | None = None  # composed kernel and bias: freeze()

    def __init__(self, n_feat: int, out_channels: int) -> None:
        super().__init__(Upsampler(n_feat), nn.Conv2d(n_feat, out_channels, kernel_size=3, padding=1))

    def freeze(self) -> SRHead:
        """Compose the kernel once, for a head whose weights no longer change: an exported graph (where the
        composition's scatter, with repeated indices, has no ONNX form) then holds it as a constant."""
        with torch.no_grad():
            self.frozen = compose_shuffle_conv(self[0][2], self[1])
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsampler, last = self
        if not self.composed:
            return last(upsampler(x))
        first, shuffle, inner, _ = upsampler
        y = shuffle(first(x))

        def layers(strip: torch.Tensor) -> torch.Tensor:
            return last(shuffle(inner(strip)))

        if self.frozen is not None:
            kernel, bias = self.frozen
        else:
            with torch.autocast(x.device.type, enabled=False):  # composed in the weights' precision
                kernel, bias = compose_shuffle_conv(inner, last)
        out = shuffle(F.conv2d(y, kernel, bias, padding=2))
        out[..., :1, :] = layers(y[..., :2, :])[..., :1, :]
        out[..., -1:, :] = layers(y[..., -2:, :])[..., -1:, :]
        out[..., :1] = layers(y[..., :2])[..., :1]
        out[..., -1:] = layers(y[..., -2:])[..., -1:]
        return out


class DIRformer(nn.Module):
    """Dynamic IR transformer ``G(LQ, z)``.

    Levels run at ``dim·(1, 2, 4, 8)`` channels with ``heads`` heads and ``num_blocks`` blocks; the decoder
    reuses the encoder's block counts; decoder level 1 and refinement run at ``2·dim`` with ``heads[0]``.

    Two run-time switches change speed and memory, never the function: ``channels_last`` (default on) runs
    the feature maps in channels-last memory, where the 3×3 depthwise convolutions and the channel LayerNorm
    are several times faster on CPU; ``checkpointing`` (default off) recomputes each transformer block's
    activations in backward instead of storing them (activation checkpointing). A third, ``composed`` on the
    SR head and the attentions (``set_composed``, default on), computes two linear maps in fewer MACs.
    """

    channels_last: bool = True
    checkpointing: bool = False

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 - official option name
        upscale: int | None = None,
        global_residual: bool = True,
        ipr_dim: int = IPR_DIM,
    ) -> None:
        super().__init__()
        if upscale is not None and upscale not in SR_SCALES:
            raise ValueError(
                f"upscale must be one of {SR_SCALES} (or None for same-size tasks), got {upscale}"
            )
        if upscale is None and global_residual and inp_channels != out_channels:
            raise ValueError(
                f"global_residual adds the input to the output, so inp_channels ({inp_channels}) must equal "
                f"out_channels ({out_channels}); set global_residual=False (as inpainting does)"
            )
        self.upscale = upscale
        self.inp_channels = inp_channels
        self.ipr_dim = ipr_dim
        self.global_residual = global_residual
        self.lq_unshuffle = 1 if upscale is None else 4 // upscale
        self.unshuffle = nn.PixelUnshuffle(self.lq_unshuffle) if self.lq_unshuffle > 1 else nn.Identity()

        def stage(level_dim: int, n_heads: int, n_blocks: int) -> TransformerStage:
            return TransformerStage(
                n_blocks,
                dim=level_dim,
                num_heads=n_heads,
                ffn_expansion_factor=ffn_expansion_factor,
                bias=bias,
                layer_norm_type=LayerNorm_type,
                ipr_dim=ipr_dim,
            )

        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        self.patch_embed = OverlapPatchEmbed(inp_channels * self.lq_unshuffle**2, dim)
        self.encoder_level1 = stage(d1, heads[0], num_blocks[0])
        self.down1_2 = Downsample(d1)
        self.encoder_level2 = stage(d2, heads[1], num_blocks[1])
        self.down2_3 = Downsample(d2)
        self.encoder_level3 = stage(d3, heads[2], num_blocks[2])
        self.down3_4 = Downsample(d3)
        self.latent = stage(d4, heads[3], num_blocks[3])
        self.up4_3 = Upsample(d4)
        self.reduce_chan_level3 = Conv1x1(d4, d3, bias)
        self.decoder_level3 = stage(d3, heads[2], num_blocks[2])
        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = Conv1x1(d3, d2, bias)
        self.decoder_level2 = stage(d2, heads[1], num_blocks[1])
        self.up2_1 = Upsample(d2)
        self.decoder_level1 = stage(d2, heads[0], num_blocks[0])
        self.refinement = stage(d2, heads[0], num_refinement_blocks)
        if upscale is None:
            self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)
        else:
            self.tail = SRHead(d2, out_channels)
        if self.channels_last:  # weights in the maps' format too, so oneDNN does not reorder them per call
            self.to(memory_format=torch.channels_last)

    @property
    def size_multiple(self) -> int:
        """The LQ height and width must be multiples of this (three 2× downsamplings after the unshuffle)."""
        return 8 * self.lq_unshuffle

    def forward(self, lq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Restore ``lq`` (B, C, H, W) under the prior ``z`` (B, ipr_dim); the output is NCHW-contiguous."""
        x = self.unshuffle(lq)
        if self.channels_last:  # convolutions keep their input's memory format: this sets it throughout
            x = x.contiguous(memory_format=torch.channels_last)
        ckpt = self.checkpointing
        enc1 = self.encoder_level1(self.patch_embed(x), z, ckpt)
        enc2 = self.encoder_level2(self.down1_2(enc1), z, ckpt)
        enc3 = self.encoder_level3(self.down2_3(enc2), z, ckpt)
        latent = self.latent(self.down3_4(enc3), z, ckpt)
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)), z, ckpt)
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)), z, ckpt)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1), z, ckpt)
        features = self.refinement(dec1, z, ckpt)
        if self.upscale is not None:
            out = self.tail(features) + F.interpolate(lq, scale_factor=self.upscale, mode="nearest")
        else:
            out = self.output(features)
            out = out + lq if self.global_residual else out
        return out.contiguous()
