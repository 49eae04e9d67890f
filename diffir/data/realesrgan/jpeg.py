"""JPEG compression on tensors, batch-wise with a quality per sample (BasicSR ``diffjpeg.py``, after
mlomnitz/DiffJPEG): the JPEG steps of the Real-ESRGAN degradation (docs/method.md §4.2).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Quantisation tables as DiffJPEG applies them to [u][v] coefficients: the TRANSPOSE of the standard tables.
_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
).T
_CHROMA_TABLE = np.full((8, 8), 99, np.float32)
_CHROMA_TABLE[:4, :4] = np.array([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]).T
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1, -0.344136, -0.714136], [1, 1.772, 0]], np.float32)


def jpeg_quality_to_factor(quality: Tensor | float) -> Tensor | float:
    """IJG quality → table scale: ``5000/q`` below 50, ``200 − 2q`` otherwise, over 100 (per sample for a
    tensor; the input is not modified, unlike the official code)."""
    if isinstance(quality, Tensor):
        return torch.where(quality < 50, 5000.0 / quality, 200.0 - quality * 2) / 100.0
    return (5000.0 / quality if quality < 50 else 200.0 - quality * 2) / 100.0


def _diff_round(x: Tensor) -> Tensor:
    """DiffJPEG's differentiable rounding ``round(x) + (x − round(x))³``."""
    return torch.round(x) + (x - torch.round(x)) ** 3


def _to_blocks(plane: Tensor) -> Tensor:
    """(B, H, W) → (B, H·W/64, 8, 8), blocks in row-major order."""
    b, h, w = plane.shape
    return plane.view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, -1, 8, 8)


def _from_blocks(blocks: Tensor, h: int, w: int) -> Tensor:
    b = blocks.shape[0]
    return blocks.view(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


class DiffJPEG(nn.Module):
    """JPEG compression and decompression on tensors (BasicSR ``DiffJPEG``), batch-wise, per-sample quality.

    4:2:0 chroma subsampling, 8x8 DCT, quantisation by DiffJPEG's (transposed) standard tables scaled by the
    IJG quality factor, rounding (``torch.round``, or the cubic differentiable rounding when
    ``differentiable``). Images are zero-padded at the bottom/right to a multiple of 16 and cropped back.
    Slightly different from libjpeg (no entropy coding, no integer DCT); that is what the official pipeline
    trains with.
    """

    def __init__(self, differentiable: bool = False) -> None:
        super().__init__()
        self.rounding = _diff_round if differentiable else torch.round
        idx = np.arange(8)
        cos = np.cos((2 * idx[:, None] + 1) * idx[None, :] * np.pi / 16)  # [pixel x, frequency u]
        basis = (cos[:, None, :, None] * cos[None, :, None, :]).reshape(64, 64)  # [(x, y), (u, v)]
        alpha = np.array([1.0 / np.sqrt(2)] + [1] * 7)
        buffers = {
            "dct_basis": basis,
            "idct_basis": basis.T.copy(),  # [(u, v), (x, y)]
            "dct_scale": np.outer(alpha, alpha) * 0.25,
            "idct_alpha": np.outer(alpha, alpha),
            "y_table": _LUMA_TABLE,
            "c_table": _CHROMA_TABLE,
            "rgb_to_ycbcr": _RGB_TO_YCBCR,
            "ycbcr_to_rgb": _YCBCR_TO_RGB,
        }
        for name, value in buffers.items():
            self.register_buffer(name, torch.from_numpy(np.asarray(value)).float(), persistent=False)

    @staticmethod
    def _scaled(table: Tensor, factor: Tensor | float) -> Tensor:
        if isinstance(factor, Tensor):
            return table.expand(factor.shape[0], 1, 8, 8) * factor.view(-1, 1, 1, 1)
        return table * factor

    def coefficients(self, img: Tensor, factor: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """Pre-rounding quantised DCT coefficients ``D / (T·factor)`` of Y, Cb, Cr, each (B, nblocks, 8, 8),
        for ``img`` (B, 3, H, W) in [0, 1] with H, W multiples of 16."""
        pixels = img.permute(0, 2, 3, 1) * 255
        ycbcr = torch.tensordot(pixels, self.rgb_to_ycbcr.T, dims=1) + pixels.new_tensor([0.0, 128.0, 128.0])
        planes = {
            "y": ycbcr[..., 0],
            "cb": F.avg_pool2d(ycbcr[..., 1].unsqueeze(1), kernel_size=2, stride=2).squeeze(1),
            "cr": F.avg_pool2d(ycbcr[..., 2].unsqueeze(1), kernel_size=2, stride=2).squeeze(1),
        }
        out = []
        for name, plane in planes.items():
            blocks = _to_blocks(plane) - 128
            dct = self.dct_scale * (blocks.flatten(-2) @ self.dct_basis).view(blocks.shape)
            out.append(dct / self._scaled(self.y_table if name == "y" else self.c_table, factor))
        return out[0], out[1], out[2]

    def compress(self, img: Tensor, factor: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """Quantised (rounded) DCT coefficients of Y, Cb, Cr (see ``coefficients``)."""
        y, cb, cr = self.coefficients(img, factor)
        return self.rounding(y), self.rounding(cb), self.rounding(cr)

    def decompress(
        self, y: Tensor, cb: Tensor, cr: Tensor, size: tuple[int, int], factor: Tensor | float
    ) -> Tensor:
        """Dequantise, inverse DCT, merge blocks, upsample chroma (pixel repetition), back to RGB in [0, 1]:
        (B, 3, H, W) for the padded ``size`` = (H, W)."""
        h, w = size
        planes = []
        for coeffs, table, ph, pw in (
            (y, self.y_table, h, w),
            (cb, self.c_table, h // 2, w // 2),
            (cr, self.c_table, h // 2, w // 2),
        ):
            coeffs = coeffs * self._scaled(table, factor) * self.idct_alpha
            blocks = 0.25 * (coeffs.flatten(-2) @ self.idct_basis).view(coeffs.shape) + 128
            planes.append(_from_blocks(blocks, ph, pw))
        cb_up, cr_up = (p.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2) for p in planes[1:])
        ycbcr = torch.stack([planes[0], cb_up, cr_up], dim=-1) + y.new_tensor([0.0, -128.0, -128.0])
        rgb = torch.tensordot(ycbcr, self.ycbcr_to_rgb.T, dims=1).permute(0, 3, 1, 2)
        return torch.clamp(rgb, 0, 255) / 255

    def forward(self, img: Tensor, quality: Tensor | float) -> Tensor:
        """JPEG round trip of ``img`` (B, 3, H, W) in [0, 1] at ``quality`` (a number, or a (B,) tensor)."""
        h, w = img.shape[-2:]
        factor = jpeg_quality_to_factor(quality)
        x = F.pad(img, (0, -w % 16, 0, -h % 16), mode="constant", value=0)
        y, cb, cr = self.compress(x, factor)
        return self.decompress(y, cb, cr, (x.shape[-2], x.shape[-1]), factor)[:, :, :h, :w]
