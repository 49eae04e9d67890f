"""The run behind ``python infer.py``: restore every image of a file or folder with a stage-2 checkpoint.

Unreadable images (and masks) do not stop the run: every readable image is restored, then the skipped ones
are reported and the run fails, unless ``skip_bad_files=true`` makes them a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..errors import UsageError
from ..io import find_images, find_mask, read_image, read_mask, require_writable_dir, save_png
from ..models.switches import log_compile_cost
from ..restoration import check_tiling_config
from ..restorer import load_restorer

log = logging.getLogger("diffir")

USAGE = "python infer.py ckpt=<checkpoint> input=<image or folder> output=<folder> [mask=<file or folder>]"


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


@torch.inference_mode()
def infer(cfg: DictConfig) -> list[Path]:
    """Restore ``cfg.input`` (a file or folder) into ``cfg.output`` as PNGs; returns the written files.

    An image or mask that cannot be read is skipped and the others are restored; then the skipped ones are
    a :class:`UsageError` (``skip_bad_files=false``) or a warning (``skip_bad_files=true``).
    """
    missing = [key for key in ("ckpt", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise UsageError(f"missing {', '.join(f'{k}=' for k in missing)}; usage: {USAGE}")
    check_tiling_config(cfg)
    output = require_writable_dir(cfg.output, "output=")
    restorer = load_restorer(cfg.ckpt, cfg)
    task = restorer.task
    if task == "inpainting" and cfg.mask is None:
        raise UsageError("an inpainting checkpoint needs mask=<file or folder> (white / non-zero = hole)")
    if task != "inpainting" and cfg.mask is not None:
        raise UsageError(f"mask= is for inpainting checkpoints; {cfg.ckpt} is a {task} model")
    images = find_images(cfg.input, exclude=output)  # a second run does not restore the first's output
    masks = [find_mask(cfg.mask, name, path) if cfg.mask is not None else None for path, name in images]
    targets = _output_paths(images, output)

    torch.manual_seed(cfg.seed)  # models with reverse_noise draw from torch's generator (as the app does)
    written, skipped = [], []
    for (path, _), mask_file, target in tqdm(
        list(zip(images, masks, targets, strict=True)), desc="infer", unit="img"
    ):
        try:
            image, bits = read_image(path)
            mask = None if mask_file is None else read_mask(mask_file, image.shape[-2:], path)
        except UsageError as err:
            skipped.append(str(err))
            continue
        out = restorer(image, mask)
        save_png(out, target, bits if cfg.keep_16bit else 8)
        written.append(target)
    log.info("wrote %d image(s) to %s", len(written), output)
    if cfg.get("compile"):
        log_compile_cost()
    if skipped:
        listing = "\n  ".join(skipped)
        summary = f"skipped {len(skipped)} of {len(images)} image(s) that could not be read:\n  {listing}"
        if not cfg.skip_bad_files:
            raise UsageError(
                f"{summary}\n{len(written)} restored image(s) were written to {output}; fix or remove the "
                "skipped files, or pass skip_bad_files=true to accept them as a warning."
            )
        log.warning(summary)
    return written
