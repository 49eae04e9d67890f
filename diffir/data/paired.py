"""Pre-made (LQ, GT) pairs from two folders: the paper's SR sub-images and GoPro's blurred/sharp crops.

Items have the format of ``RestorationDataset``'s (``gt``, ``lq``, ``name``) and the same keys (an index, or
``(index, sample_seed[, patch_size])``), so the DataModule, the step sampler and progressive learning work
unchanged. Pairs are checked once at construction, from the file headers: a training run never stops
mid-epoch on a missing partner or a wrong size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from diffir.data.datasets import (
    PatchDataset,
    _dihedral,
    _pad_to,
    _to_tensor,
    scan_images,
)
from diffir.io import read_rgb, to_float

log = logging.getLogger(__name__)


class PairedFolderDataset(PatchDataset):
    """GT images in ``gt_root`` and their LQ in ``lq_root``, paired by relative path without extension.

    Every GT must have an LQ of exactly ``1 / scale`` its size (BasicSR's ``PairedImageDataset`` convention;
    the SR sub-images of ``python -m diffir.data.prepare`` are made that way). Missing partners, LQ files
    without a GT and size mismatches raise one error listing every offending file, or, with
    ``skip_bad_files``, those pairs (and unreadable files) are skipped with a warning.

    Training crops take the same region of both images (LQ crop = GT crop / ``scale``) and apply the same
    flip/rotation. Validation (``patch_size=None``) uses whole pairs mod-cropped to ``scale * size_multiple``
    in GT pixels, or a ``center_crop``. The other arguments are ``RestorationDataset``'s.
    """

    def __init__(
        self,
        gt_root: str | Path,
        lq_root: str | Path,
        scale: int = 1,
        skip_bad_files: bool = False,
        verify_files: bool = False,
        **kwargs: Any,
    ) -> None:
        self.gt_root, gt_sources = scan_images(gt_root, verify_files, skip_bad_files)
        self.lq_root, lq_sources = scan_images(lq_root, verify_files, skip_bad_files)
        lq_by_name = {source.name: source for source in lq_sources}
        gt_names = {source.name for source in gt_sources}
        pairs, problems = [], []
        for gt in gt_sources:
            lq = lq_by_name.get(gt.name)
            if lq is None:
                problems.append(f"{gt.path}: no LQ image named {gt.name}.* in {self.lq_root}")
            elif (lq.size[0] * scale, lq.size[1] * scale) != gt.size:
                problems.append(
                    f"{gt.path} ({gt.size[0]}x{gt.size[1]}) vs {lq.path} ({lq.size[0]}x{lq.size[1]}): "
                    f"the GT must be exactly {scale}x the LQ"
                )
            else:
                pairs.append((gt, lq))
        problems += [
            f"{lq.path}: no GT image named {lq.name}.* in {self.gt_root}"
            for lq in lq_sources
            if lq.name not in gt_names
        ]
        if problems:
            listing = "\n  ".join(problems)
            if not skip_bad_files or not pairs:
                raise ValueError(
                    f"{len(problems)} mismatched pair(s) between {self.gt_root} and {self.lq_root}:\n  {listing}\n"
                    "Fix or delete them, or set skip_bad_files=true to skip them."
                )
            log.warning("skipping %d mismatched pair(s):\n  %s", len(problems), listing)
        self.lq_sources = [lq for _, lq in pairs]
        super().__init__([gt for gt, _ in pairs], scale=scale, **kwargs)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, torch.Tensor | str]:
        """``key``: an index, or ``(index, sample_seed[, patch_size])`` (see ``PatchDataset._parse_key``)."""
        index, rng, patch_size = self._parse_key(key)
        index %= len(self.sources)
        gt = read_rgb(self.sources[index].path)
        lq = read_rgb(self.lq_sources[index].path)
        patch_size = patch_size or self.patch_size
        crop = patch_size or self.center_crop
        if crop is not None:
            gt, lq = _pad_to(gt, crop), _pad_to(lq, crop // self.scale)
        top, left, height, width = self._crop_box(lq.shape[0], lq.shape[1], rng, patch_size, self.scale)
        s = self.scale
        lq = lq[top : top + height, left : left + width]
        gt = gt[top * s : (top + height) * s, left * s : (left + width) * s]
        if self.augment:
            k = int(rng.integers(8))
            gt, lq = _dihedral(gt, k), _dihedral(lq, k)
        return {
            "gt": _to_tensor(to_float(gt)),
            "lq": _to_tensor(to_float(lq)),
            "name": self.sources[index].name,
        }
