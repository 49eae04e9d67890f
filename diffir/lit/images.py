"""Comparison panels (LQ | output | GT) for loggers and run folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image


def panel(lq: torch.Tensor, outputs: Sequence[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """One row: the input (nearest-upsampled to the GT size; RGB part only for inpainting), outputs, GT."""
    lq = lq[:, :3]
    if lq.shape[-2:] != gt.shape[-2:]:
        lq = F.interpolate(lq, size=gt.shape[-2:], mode="nearest")
    images = torch.cat([lq, *outputs, gt]).clamp(0, 1).float().cpu()
    return make_grid(images, nrow=len(images), padding=2, pad_value=1.0)


def pad_white(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``image`` (C, H, W) padded with white at the bottom and right to ``height`` x ``width``."""
    return F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]), value=1.0)


def stack_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack panels of different widths into one image (right-padded with white)."""
    width = max(r.shape[-1] for r in rows)
    return torch.cat([pad_white(r, r.shape[-2], width) for r in rows], dim=1)


def same_size(panels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Panels padded with white to the largest height and width among them: W&B shows a list of images of
    different sizes wrongly (and warns "Images sizes do not match" at every validation)."""
    height, width = max(p.shape[-2] for p in panels), max(p.shape[-1] for p in panels)
    return [pad_white(p, height, width) for p in panels]


def log_panels(
    panels: list[torch.Tensor], loggers: list, step: int, run_dir: str | Path, key: str = "val/panels"
) -> Path:
    """Send panels to every logger that takes images (W&B, TensorBoard) and save them as one PNG in the run."""
    for logger in loggers:
        name = type(logger).__name__
        if name == "WandbLogger":
            images = [p.permute(1, 2, 0).numpy() for p in same_size(panels)]
            logger.log_image(key=key, images=images, step=step)
        elif name == "TensorBoardLogger":
            for i, image in enumerate(panels):
                logger.experiment.add_image(f"{key}/{i}", image, global_step=step)
    path = Path(run_dir) / "images" / f"val_step{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(stack_rows(panels), path)
    return path
