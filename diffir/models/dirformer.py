"""DIRformer: the U-shaped, IPR-modulated transformer that restores the image (paper §3.1, Fig. 2).

One class serves every task; the task-specific head is chosen by arguments:

- super-resolution (``upscale`` = 4, 2 or 1): the LQ is pixel-unshuffled by ``4 / upscale`` first, the head
  is the EDSR ×4 upsampler + conv3×3 (``tail``), plus the nearest-upsampled LQ as a global residual;
- deblurring (``upscale=None``): conv3×3 head (``output``) plus the input as residual;
- inpainting (``upscale=None``, 4 input channels, ``global_residual=False``, no refinement blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import IPR_DIM, Downsample, TransformerStage, Upsample
from .ops import Conv1x1, compose_shuffle_conv, composed_sr_head

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


class SRHead(nn.Sequential):
    """The SR head (``tail``, docs/method.md §1.2): EDSR's ×4 upsampler, then conv3×3 to the output channels.

    After the first PixelShuffle everything is linear (conv3×3 n → 4n, PixelShuffle(2), conv3×3 n → 3), so
    with ``composed`` (default on) it runs as one 5×5 convolution to the 3×4 sub-pixel phases and a
    PixelShuffle (:func:`diffir.models.ops.composed_sr_head`: exact, the same linear map in ~15× fewer MACs;
    gradients flow to both weights). ``composed=False`` runs the layers in turn.
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
        return composed_sr_head(shuffle(first(x)), inner, shuffle, last, self.frozen)


class DIRformer(nn.Module):
    """Dynamic IR transformer ``G(LQ, z)`` (docs/method.md §1.2).

    Levels run at ``dim·(1, 2, 4, 8)`` channels with ``heads`` heads and ``num_blocks`` blocks; the decoder
    reuses the encoder's block counts; decoder level 1 and refinement run at ``2·dim`` with ``heads[0]``.
    The architecture arguments have no defaults: they come from a preset (``conf/model/arch/<task>/``, read
    by ``diffir.model_config.model_preset``); ``build_model`` fills the task's layout arguments.

    The switches of :mod:`diffir.models.switches` change speed and memory, never the function:
    ``channels_last`` (default on) runs the feature maps in channels-last memory, where the 3×3 depthwise
    convolutions and the channel LayerNorm are several times faster on CPU; activation checkpointing of the
    transformer stages (default off); ``composed`` SR head and attentions (default on).
    """

    channels_last: bool = True

    def __init__(
        self,
        *,
        dim: int,
        num_blocks: Sequence[int],
        num_refinement_blocks: int,
        heads: Sequence[int],
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,  # noqa: N803 - official option name
        inp_channels: int = 3,
        out_channels: int = 3,
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
        enc1 = self.encoder_level1(self.patch_embed(x), z)
        enc2 = self.encoder_level2(self.down1_2(enc1), z)
        enc3 = self.encoder_level3(self.down2_3(enc2), z)
        latent = self.latent(self.down3_4(enc3), z)
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)), z)
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)), z)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1), z)
        features = self.refinement(dec1, z)
        if self.upscale is not None:
            out = self.tail(features) + F.interpolate(lq, scale_factor=self.upscale, mode="nearest")
        else:
            out = self.output(features)
            out = out + lq if self.global_residual else out
        return out.contiguous()
