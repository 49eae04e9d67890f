"""The test sets of an evaluation: clean images degraded on the fly (``kind: hr``), (LQ, GT) pairs from two
folders (``kind: paired``) and images with inpainting masks (``kind: masked``), each checked from the file
headers before any model runs, then loaded lazily one sample at a time."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from ..data import FolderDataset
from ..errors import UsageError
from ..io import find_images, find_mask, list_images, read_header, read_image, read_mask
from ..metrics.psnr_ssim import SSIM_SIZE
from ..restoration import inpainting_input
from .protocol import degradation

log = logging.getLogger("diffir")


@dataclass
class Sample:
    """One test image: the network input (1, C, h, w), its ground truth (1, 3, H, W), the inpainting mask
    and, for synthetic deblurring, the blur kernel (GDP's known operator)."""

    name: str
    lq: torch.Tensor
    gt: torch.Tensor
    mask: torch.Tensor | None = None
    kernel: torch.Tensor | None = None


@dataclass
class TestSet:
    """A dataset's lazy sample loaders, with each sample's file and ground-truth (height, width)."""

    loaders: list[Callable[[], Sample]]
    files: list[Path]
    gt_sizes: list[tuple[int, int]]


def _require_dir(path: str | Path, dataset: str, prepare: str | None) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        hint = f"\n  {prepare}" if prepare else ""
        raise UsageError(f"dataset '{dataset}': directory {path} ({path.absolute()}) does not exist.{hint}")
    return path


def _header(path: Path) -> tuple[int, int]:
    try:
        return read_header(path)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on broken files
        raise UsageError(f"cannot read image {path}: {type(err).__name__}: {err}") from err


def _hr_set(
    name: str, root: Path, cfg: DictConfig, degrade: Any, scale: int, device: torch.device
) -> TestSet:
    """Clean images degraded by the task's degradation (SR: mod-crop, MATLAB bicubic, 8-bit), seeded per image."""
    try:
        dataset = FolderDataset(root, degrade, scale=scale, deterministic=True, seed=cfg.seed)
    except (FileNotFoundError, OSError) as err:
        raise UsageError(f"dataset '{name}': {err}") from err

    def load(index: int) -> Sample:
        item = dataset[index]
        mask = item["mask"][None].to(device) if "mask" in item else None
        kernel = item["kernel"].to(device) if "kernel" in item else None
        return Sample(item["name"], item["lq"][None].to(device), item["gt"][None].to(device), mask, kernel)

    sizes = [(h - h % scale, w - w % scale) for h, w in (s.size for s in dataset.sources)]
    return TestSet([partial(load, i) for i in range(len(dataset))], [s.path for s in dataset.sources], sizes)


def _paired_set(lq_dir: Path, gt_dir: Path, scale: int, device: torch.device) -> TestSet:
    """Files matched by relative path without extension. The GT is mod-cropped to ``scale`` (BasicSR crops
    its bottom/right rows to LQ size x scale); every GT must then be exactly ``scale`` x its LQ."""

    def names(root: Path) -> dict[str, Path]:
        return {f.relative_to(root).with_suffix("").as_posix(): f for f in list_images(root)}

    lq, gt = names(lq_dir), names(gt_dir)
    missing = sorted(set(lq) ^ set(gt))
    if missing or not lq:
        raise UsageError(
            f"{lq_dir} and {gt_dir} must hold images of the same names; unmatched: {missing[:5] or 'no images'}"
        )
    order = sorted(lq)
    sizes, wrong = [], []
    for name in order:
        (lh, lw), (gh, gw) = _header(lq[name]), _header(gt[name])
        if (gh - gh % scale, gw - gw % scale) != (lh * scale, lw * scale):
            wrong.append(f"{gt[name]} ({gh}x{gw}) vs {lq[name]} ({lh}x{lw})")
        sizes.append((lh * scale, lw * scale))
    if wrong:
        raise UsageError(
            f"{len(wrong)} pair(s) whose GT is not {scale}x the LQ (after cropping the GT to a multiple of "
            f"{scale}): " + "; ".join(wrong) + ". Check data.lq= / data.gt= and the model's scale."
        )

    def load(name: str) -> Sample:
        lq_img, gt_img = read_image(lq[name])[0], read_image(gt[name])[0]
        h, w = lq_img.shape[-2] * scale, lq_img.shape[-1] * scale
        return Sample(name, lq_img.to(device), gt_img[..., :h, :w].to(device))

    return TestSet([partial(load, name) for name in order], [gt[name] for name in order], sizes)


def _masked_set(images_dir: Path, masks_dir: Path, device: torch.device) -> TestSet:
    together = images_dir.resolve() == masks_dir.resolve()
    images = [(p, n) for p, n in find_images(images_dir) if not (together and "_mask" in Path(n).name)]
    pairs = [(path, name, find_mask(masks_dir, name, path)) for path, name in images]

    def load(path: Path, name: str, mask_path: Path) -> Sample:
        image = read_image(path)[0].to(device)
        mask = read_mask(mask_path, image.shape[-2:], path).to(device)
        return Sample(name, inpainting_input(image, mask), image, mask)

    return TestSet(
        [partial(load, *p) for p in pairs], [p for p, _ in images], [_header(p) for p, _ in images]
    )


def build_datasets(
    cfg: DictConfig, task: str, scale: int, task_cfg: DictConfig, device: torch.device
) -> dict[str, TestSet]:
    """Every dataset of ``cfg.data``; missing folders and mismatched pairs fail here, before any model
    runs."""
    datasets = {}
    for name, spec in cfg.data.items_ex(resolve=False):
        if not isinstance(spec, DictConfig):  # the presets' parameters (data.root, data.lq, ...)
            continue
        try:
            spec = OmegaConf.to_container(spec, resolve=True, throw_on_missing=True)
        except (MissingMandatoryValue, InterpolationToMissingValueError) as err:
            raise UsageError(f"dataset '{name}' is incomplete: {spec.get('prepare', err)}") from err
        prepare = spec.get("prepare")
        if spec["kind"] == "hr":
            root = _require_dir(spec["root"], name, prepare)
            datasets[name] = _hr_set(name, root, cfg, degradation(cfg, task_cfg), scale, device)
        elif spec["kind"] == "paired":
            if task == "inpainting":
                raise UsageError(f"dataset '{name}' has (LQ, GT) pairs; inpainting needs images and masks")
            lq_dir, gt_dir = (_require_dir(spec[k], name, prepare) for k in ("lq", "gt"))
            datasets[name] = _paired_set(lq_dir, gt_dir, scale, device)
        elif spec["kind"] == "masked":
            if task != "inpainting":
                raise UsageError(
                    f"dataset '{name}' is an inpainting set (images + masks), not for task={task}"
                )
            images_dir, masks_dir = (_require_dir(spec[k], name, prepare) for k in ("images", "masks"))
            datasets[name] = _masked_set(images_dir, masks_dir, device)
        else:
            raise UsageError(f"dataset '{name}': unknown kind {spec['kind']!r} (hr, paired or masked)")
    if not datasets:
        raise UsageError("no dataset selected: data=<preset> or data=[<preset>,<preset>]")
    return datasets


FID_MIN_IMAGES = 2  # FID needs a covariance of the features: two images at the very least
FID_RELIABLE_IMAGES = 1000  # below this, FID is dominated by its small-sample bias (papers use 2k-36k images)


def check_fid_set_sizes(datasets: dict[str, TestSet], metric_args: dict[str, Any]) -> None:
    """FID over too few images: refused below :data:`FID_MIN_IMAGES` before any image is restored (it would
    fail after the whole run), and a warning below :data:`FID_RELIABLE_IMAGES` (a number, but no measure)."""
    if "fid" not in metric_args["metrics"]:
        return
    for name, test_set in datasets.items():
        n = len(test_set.files)
        if n < FID_MIN_IMAGES:
            raise UsageError(
                f"FID needs at least {FID_MIN_IMAGES} images and dataset '{name}' has {n}: add images, or leave "
                "FID out (metrics=[psnr,ssim,lpips])"
            )
        if n < FID_RELIABLE_IMAGES:
            log.warning(
                "FID on %d images of '%s' is dominated by its small-sample bias (reliable from about %d images): "
                "do not compare it with published FIDs",
                n,
                name,
                FID_RELIABLE_IMAGES,
            )


def check_sizes(datasets: dict[str, TestSet], metric_args: dict[str, Any]) -> None:
    """Images too small for the metrics' border crop (and SSIM's window) fail before the run, named: scoring
    the others alone would give a mean that no published number is comparable with."""
    crop = metric_args["crop_border"]
    needs_window = "ssim" in metric_args["metrics"]
    least = 2 * crop + (SSIM_SIZE if needs_window else 1)
    small = [
        f"{path} ({h}x{w})"
        for test_set in datasets.values()
        for path, (h, w) in zip(test_set.files, test_set.gt_sizes, strict=True)
        if min(h, w) < least
    ]
    if small:
        window = f" + SSIM's {SSIM_SIZE}x{SSIM_SIZE} window" if needs_window else ""
        raise UsageError(
            f"{len(small)} image(s) too small for the metrics (a {crop}-pixel border crop{window} needs at "
            f"least {least}x{least} GT pixels): {', '.join(small)}; remove them from the set"
        )
