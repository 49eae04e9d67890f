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


def stack_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack panels of different widths into one image (right-padded with white)."""
    width = max(r.shape[-1] for r in rows)
    return torch.cat([F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows], dim=1)


def log_panels(
    panels: list[torch.Tensor], loggers: list, step: int, run_dir: str | Path, key: str = "val/panels"
) -> Path:
    """Send panels to every logger that takes images (W&B, TensorBoard) and save them as one PNG in the run."""
    for logger in loggers:
        name = type(logger).__name__
        if name == "WandbLogger":
            logger.log_image(key=key, images=[p.permute(1, 2, 0).numpy() for p in panels], step=step)
        elif name == "TensorBoardLogger":
            for i, image in enumerate(panels):
                logger.experiment.add_image(f"{key}/{i}", image, global_step=step)
    path = Path(run_dir) / "images" / f"val_step{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(stack_rows(panels), path)
    return path
