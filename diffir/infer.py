"""The run behind ``python infer.py``: restore every image of a file or folder with a stage-2 checkpoint.

Also holds the image I/O that ``diffir.evaluation`` shares: model loading with user-facing errors, image
listing, inpainting masks (LaMa conventions) and PNG writing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from .checkpoint import CheckpointError, load_model
from .data.datasets import IMAGE_EXTENSIONS, list_images, read_rgb, to_float
from .inference import check_tiling, restore, restore_tiled, start_noise
from .models import DiffIRS1, DiffIRS2

log = logging.getLogger("diffir")

USAGE = "python infer.py ckpt=<checkpoint> input=<image or folder> output=<folder> [mask=<file or folder>]"


class UsageError(RuntimeError):
    """A problem with a command's inputs (missing file, unusable checkpoint, ...), printed without a traceback."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:<i>``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={name} was requested but CUDA is not available here; use device=cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"unknown device={name!r}: use auto, cpu, cuda or cuda:<index>") from err


def check_tiling_config(cfg: DictConfig) -> None:
    """Bad ``tile=`` / ``tile_overlap=`` / ``prior=`` values fail before any image is processed."""
    if cfg.tile:
        try:
            check_tiling(cfg.tile, cfg.tile_overlap, cfg.prior)
        except ValueError as err:
            raise UsageError(f"tiling: {err}") from err


def load_checkpoint(path: str | Path, device: torch.device) -> tuple[DiffIRS1 | DiffIRS2, dict]:
    """:func:`diffir.checkpoint.load_model` with its errors turned into :class:`UsageError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"checkpoint {path} ({path.absolute()}) does not exist")
    try:
        model, config = load_model(path)
    except CheckpointError as err:
        raise UsageError(str(err)) from err
    return model.to(device), config


def require_stage2(model: DiffIRS1 | DiffIRS2, path: str | Path) -> DiffIRS2:
    """Stage-1 models cannot restore an image on their own: explain instead of failing later."""
    if isinstance(model, DiffIRS1):
        raise UsageError(
            f"{path} is a stage-1 checkpoint. Stage 1 (CPEN_S1) extracts the prior from the LQ *and* the ground "
            "truth: it is the oracle teacher for training stage 2 and cannot restore images without their GT. "
            "Use the stage-2 checkpoint of the same experiment (python train.py ... stage=2)."
        )
    return model


def find_images(path: str | Path) -> list[tuple[Path, str]]:
    """``(file, name)`` pairs: one file, or every image under a folder (recursive; name = relative path
    without extension)."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UsageError(f"{path} is not a supported image ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return [(path, path.stem)]
    if not path.is_dir():
        raise UsageError(f"input {path} ({path.absolute()}) does not exist")
    files = list_images(path)
    if not files:
        raise UsageError(
            f"input folder {path} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))}, searched recursively)"
        )
    return [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]


def read_image(path: Path) -> tuple[torch.Tensor, int]:
    """``(image, bits)``: a (1, 3, H, W) float tensor in [0, 1] (greyscale replicated, alpha dropped, as
    :func:`diffir.data.load_image` does) and the file's bit depth (8 or 16)."""
    try:
        raw = read_rgb(path)
    except Exception as err:  # PIL / OpenCV raise many types on broken files
        raise UsageError(f"cannot read image {path}: {err}") from err
    bits = 16 if raw.dtype == np.uint16 else 8
    return torch.from_numpy(to_float(raw).transpose(2, 0, 1).copy())[None], bits


def find_mask(masks: str | Path, name: str, image: Path | None = None) -> Path:
    """The mask of image ``name``: ``masks`` itself when it is a file, else ``<masks>/<name>.<ext>`` or
    LaMa's ``<masks>/<name>_mask*.<ext>`` (never ``image`` itself, for images and masks in one folder)."""
    masks = Path(masks).expanduser()
    if masks.is_file():
        return masks
    if not masks.is_dir():
        raise UsageError(f"mask {masks} ({masks.absolute()}) does not exist")
    rel = Path(name)
    folder = masks / rel.parent
    candidates = [
        p
        for p in sorted(folder.glob(f"{rel.name}*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and (p.stem == rel.name or p.stem.startswith(f"{rel.name}_mask"))
        and p != image
    ]
    if not candidates:
        raise UsageError(
            f"no mask for image {name!r} in {masks}: expected {folder / rel.name}.png (or {rel.name}_mask*.png)"
        )
    return min(candidates, key=lambda p: p.stem != rel.name)  # the exact name first


def read_mask(path: Path, size: tuple[int, int], image: Path | str) -> torch.Tensor:
    """A (1, 1, H, W) binary mask, 1 = hole: any non-zero pixel (LaMa binarises with ``mask > 0``)."""
    mask, _ = read_image(path)
    if tuple(mask.shape[-2:]) != tuple(size):
        raise UsageError(
            f"mask {path} is {mask.shape[-2]}x{mask.shape[-1]} but image {image} is {size[0]}x{size[1]}"
        )
    return (mask.amax(dim=1, keepdim=True) > 0).to(mask.dtype)


def inpainting_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The 4-channel network input ``cat[image·(1−mask), mask]`` (as ``InpaintingDegradation`` makes it)."""
    return torch.cat([image * (1 - mask), mask], dim=1)


def composite(restored: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LaMa's ``inpainted`` output: the prediction in the holes, the known pixels elsewhere."""
    return restored * mask + image * (1 - mask)


def save_png(image: torch.Tensor, path: Path, bits: int = 8) -> None:
    """Write a (3, H, W) or (1, 3, H, W) [0, 1] tensor as an 8- or 16-bit RGB PNG (parents created)."""
    peak, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    array = (image.detach().float().squeeze(0).clamp(0, 1) * peak).round().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array.astype(dtype).transpose(1, 2, 0)[..., ::-1]):
        raise UsageError(f"could not write {path}")


def _output_paths(images: list[tuple[Path, str]], output: Path) -> list[Path]:
    """``<output>/<name>.png`` per image; refuses name collisions and overwriting an input."""
    paths = [output / f"{name}.png" for _, name in images]
    seen: dict[Path, Path] = {}
    for (source, _), target in zip(images, paths, strict=True):
        if target in seen:
            raise UsageError(f"{seen[target]} and {source} would both be written to {target}; rename one")
        if target.resolve() == source.resolve():
            raise UsageError(f"writing {target} would overwrite the input image; choose another output=")
        seen[target] = source
    return paths


@torch.no_grad()
def infer(cfg: DictConfig) -> list[Path]:
    """Restore ``cfg.input`` (a file or folder) into ``cfg.output`` as PNGs; returns the written files."""
    missing = [key for key in ("ckpt", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise UsageError(f"missing {', '.join(f'{k}=' for k in missing)}; usage: {USAGE}")
    check_tiling_config(cfg)
    device = resolve_device(cfg.device)
    model, config = load_checkpoint(cfg.ckpt, device)
    model = require_stage2(model, cfg.ckpt)
    task, scale = config["task"], int(config["scale"])
    if task == "inpainting" and cfg.mask is None:
        raise UsageError("an inpainting checkpoint needs mask=<file or folder> (white / non-zero = hole)")
    if task != "inpainting" and cfg.mask is not None:
        raise UsageError(f"mask= is for inpainting checkpoints; {cfg.ckpt} is a {task} model")
    images = find_images(cfg.input)
    masks = [find_mask(cfg.mask, name, path) if cfg.mask is not None else None for path, name in images]
    targets = _output_paths(images, Path(cfg.output).expanduser())

    torch.manual_seed(cfg.seed)  # only used by models with reverse_noise; the start vector is seeded below
    noise = start_noise(model, 1, cfg.seed, device)
    for (path, _), mask_file, target in tqdm(
        list(zip(images, masks, targets, strict=True)), desc="infer", unit="img"
    ):
        image, bits = read_image(path)
        image = image.to(device)
        mask = None if mask_file is None else read_mask(mask_file, image.shape[-2:], path).to(device)
        lq = image if mask is None else inpainting_input(image, mask)
        if cfg.tile:
            out = restore_tiled(
                model, lq, cfg.tile, cfg.tile_overlap, scale, noise, cfg.prior, cfg.prior_max_side
            )
        else:
            out = restore(model, lq, noise=noise, scale=scale)
        if mask is not None:
            out = composite(out, image, mask)
        save_png(out, target, bits if cfg.keep_16bit else 8)
    log.info("wrote %d image(s) to %s", len(targets), cfg.output)
    return targets
