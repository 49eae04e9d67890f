"""Comparison grids: LQ | outputs | GT side by side, each column labelled, for ``eval.py`` and the demo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

PAD = 2  # white pixels between cells
LABEL_HEIGHT = 18


def _label(text: str, width: int) -> torch.Tensor:
    """A (3, LABEL_HEIGHT, width) white strip with ``text`` in black (clipped to the width)."""
    strip = Image.new("RGB", (width, LABEL_HEIGHT), "white")
    ImageDraw.Draw(strip).text((3, 2), text, fill="black", font=ImageFont.load_default(size=13))
    return torch.from_numpy(np.asarray(strip).transpose(2, 0, 1).copy()).float() / 255


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True).clamp(0, 1)


def _worst_window(output: torch.Tensor, gt: torch.Tensor) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the quarter-size window where ``output`` is farthest from ``gt``."""
    h, w = gt.shape[-2:]
    ch, cw = max(h // 4, 1), max(w // 4, 1)
    stride = (max(ch // 2, 1), max(cw // 2, 1))
    score = F.avg_pool2d((output - gt).abs().mean(dim=1, keepdim=True), (ch, cw), stride=stride)
    iy, ix = divmod(int(score.flatten().argmax()), score.shape[-1])
    return iy * stride[0], ix * stride[1], ch, cw


def comparison_grid(
    lq: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    gt: torch.Tensor,
    width: int,
    labels: Sequence[str] | None = None,
    zoom: bool = True,
) -> torch.Tensor:
    """A (3, H, W) grid of one image: LQ (nearest-upsampled; its RGB part), each output, GT.

    Every cell is resized to ``width`` pixels wide (aspect kept), so grids of images of different sizes have
    the same width and stack without gaps. ``labels`` (one per column) are written above the columns. With
    ``zoom`` a second row shows the same ×4 window of every cell, where the first output is worst (marked
    red above).
    """
    h, w = gt.shape[-2:]
    lq = F.interpolate(lq[:, :3], size=(h, w), mode="nearest") if lq.shape[-2:] != (h, w) else lq[:, :3]
    cells = [c[:1].clamp(0, 1).float().cpu() for c in (lq, *outputs, gt)]
    size = (max(1, round(h * width / w)), width)
    rows = []
    if zoom:
        y, x, ch, cw = _worst_window(cells[1], cells[-1])
        rows.append([F.interpolate(c[..., y : y + ch, x : x + cw], size=size, mode="nearest") for c in cells])
        t = max(1, round(2 * w / width))  # a 2-pixel frame once resized
        red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        cells = [c.clone() for c in cells]
        for cell in cells:
            box = cell[..., y : y + ch, x : x + cw]
            for edge in (box[..., :t, :], box[..., -t:, :], box[..., :, :t], box[..., :, -t:]):
                edge.copy_(red.expand_as(edge))
    rows.insert(0, [_resize(c, size) for c in cells])
    if labels is not None:
        if len(labels) != len(cells):
            raise ValueError(f"{len(labels)} labels for {len(cells)} columns")
        rows.insert(0, [_label(text, width)[None] for text in labels])
    grids = [make_grid(torch.cat(row), nrow=len(cells), padding=PAD, pad_value=1.0) for row in rows]
    # make_grid pads every side; stacking rows keeps one PAD between them
    return torch.cat([grids[0], *(g[:, PAD:] for g in grids[1:])], dim=1)


def stack(grids: Sequence[torch.Tensor]) -> torch.Tensor:
    """Grids of the same width, one above the other (the demo's rows, one per photo)."""
    widths = {g.shape[-1] for g in grids}
    if len(widths) != 1:
        raise ValueError(f"grids of different widths {sorted(widths)}: build them with the same width=")
    return torch.cat(list(grids), dim=1)


def cell_width(gt: torch.Tensor, max_side: int) -> int:
    """The width of cells whose longer side is at most ``max_side`` (never enlarged)."""
    h, w = gt.shape[-2:]
    return max(1, round(w * min(1.0, max_side / max(h, w))))
