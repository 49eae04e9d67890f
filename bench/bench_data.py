"""Data loading speed per dataset type, its share of a paper-model training step, and dataset start-up time.

    python -m bench.bench_data [--batches 8] [--batch-size 4] [--workers 0 2] [--no-step] [--step-512]
                               [--construction-files 10000] [--construction-size 64]   # from the repo root

Fixture data are scikit-image photos written to a temporary folder: about 1000 px PNGs for the folder
datasets, 480 px HR sub-images with their MATLAB-bicubic x4 LR for paired SR (as ``prepare df2k`` makes),
512 px blurred / sharp crops for paired deblurring (as ``prepare gopro`` makes). Each row loads training
batches through a DataLoader with the training sampler (``StepBatchSampler`` keys) at the paper's patch size
(SR GT 256, deblurring 256 and 512, inpainting 256) with 0 and 2 workers, and reports samples per second
(the first batch, which includes worker start-up, is not counted).

``step s`` is one stage-1 forward + backward of the ``paper`` model preset at batch 1 and that patch size,
timed in the same run (one call: the first call's one-off costs are included). ``data/step`` is the loading
time of one sample over the step time: with 0 workers the loader runs between steps, so this is the share it
adds; with workers it runs alongside the step (given spare cores), and only a ratio above 1 would make the
model wait. The 512 px deblurring step needs more than 17 GB of memory at batch 1 on a CPU, so it is only
timed with ``--step-512``.

Last, the start-up cost of a FolderDataset over ``--construction-files`` PNGs of ``--construction-size`` px
(photo crops): header and end-marker checks (the default) against ``verify_files=True`` (PIL's integrity
check, which reads whole files).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
from torch.utils.data import DataLoader, Dataset

from diffir.data import (
    FolderDataset,
    InpaintingDegradation,
    MotionBlurDegradation,
    PairedFolderDataset,
    SRDegradation,
    bicubic_downsample,
    lama_mask_generator,
)
from diffir.data.batch_sampler import StepBatchSampler
from diffir.model_config import model_preset
from diffir.models import build_model
from diffir.tasks import task_facts


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def photos() -> list[np.ndarray]:
    """Six RGB photos of 512 to 1411 px (two small ones upscaled x2, as camera photos are large)."""
    retina = skimage.data.retina()
    small = [
        cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        for img in (skimage.data.coffee(), skimage.data.rocket())
    ]
    return [
        retina,
        retina[200:1200, 100:1100],
        skimage.data.hubble_deep_field(),
        skimage.data.astronaut(),
        *small,
    ]


def make_fixtures(root: Path) -> None:
    """``folder/``: the photos; ``sr/{gt,lq}``: 480 px sub-images and their x4 LR; ``deblur/{gt,lq}``: 512 px
    crops and their motion-blurred versions."""
    blur = MotionBlurDegradation()
    for i, img in enumerate(photos()):
        write_png(root / f"folder/{i}.png", img)
        for j, (y, x) in enumerate(((0, 0), (img.shape[0] - 512, img.shape[1] - 512))):
            sub = img[y : y + 480, x : x + 480]
            write_png(root / f"sr/gt/{i}_{j}.png", sub)
            write_png(root / f"sr/lq/{i}_{j}.png", bicubic_downsample(sub, 4))
            sharp = img[y : y + 512, x : x + 512]
            blurred = blur(sharp.astype(np.float32) / 255, np.random.default_rng(i * 2 + j))["lq"]
            write_png(root / f"deblur/gt/{i}_{j}.png", sharp)
            write_png(root / f"deblur/lq/{i}_{j}.png", np.round(blurred * 255).astype(np.uint8))


def datasets(root: Path) -> list[tuple[str, str, int, int, Callable[[], Dataset]]]:
    """(row name, task, scale, GT patch, dataset factory) of each benchmarked configuration."""
    inpainting = InpaintingDegradation(lama_mask_generator("train"))
    folder = root / "folder"
    rows = [
        ("folder SR x4", "sr", 4, 256, lambda: FolderDataset(folder, SRDegradation(4), 256, 4, augment=True)),
        (
            "paired SR x4",
            "sr",
            4,
            256,
            lambda: PairedFolderDataset(root / "sr/gt", root / "sr/lq", 256, 4, augment=True),
        ),
    ]
    for patch in (256, 512):
        rows += [
            (
                f"folder deblur {patch}",
                "deblur",
                1,
                patch,
                lambda p=patch: FolderDataset(folder, MotionBlurDegradation(), p, augment=True),
            ),
            (
                f"paired deblur {patch}",
                "deblur",
                1,
                patch,
                lambda p=patch: PairedFolderDataset(root / "deblur/gt", root / "deblur/lq", p, augment=True),
            ),
        ]
    rows.append(
        (
            "folder inpainting",
            "inpainting",
            1,
            256,
            lambda: FolderDataset(folder, inpainting, 256, augment=True),
        )
    )
    return rows


def samples_per_second(dataset: Dataset, batch_size: int, batches: int, workers: int) -> float:
    """Training batches through a DataLoader; the first batch (worker start-up) is not counted."""
    sampler = StepBatchSampler(len(dataset), batch_size, batches + 1, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in iterator:
        pass
    return batches * batch_size / (time.perf_counter() - start)


def step_seconds(task: str, scale: int, patch: int) -> float:
    """One stage-1 forward + backward of the paper model at batch 1."""
    torch.manual_seed(0)
    model = build_model(task, 1, scale, **model_preset(task, "paper"))
    channels = task_facts(task).input_channels
    lq = torch.rand(1, channels, patch // scale, patch // scale)
    gt = torch.rand(1, 3, patch, patch)
    start = time.perf_counter()
    out, _ = model(lq, gt)
    (out - gt).abs().mean().backward()
    return time.perf_counter() - start


def construction_times(files: int, side: int, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` FolderDataset construction over ``files`` PNGs of ``side`` px: header checks, verify."""
    photo = skimage.data.retina()
    room = photo.shape[0] - side
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(files):
            y, x = (i * 7) % room, (i * 13) % room
            cv2.imwrite(f"{tmp}/{i:05d}.png", photo[y : y + side, x : x + side])
        times = {}
        for verify in (False, True):
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                FolderDataset(tmp, SRDegradation(4), scale=4, verify_files=verify)
                runs.append(time.perf_counter() - start)
            times[verify] = min(runs)
    return times[False], times[True]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=8, help="timed batches per measurement")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--no-step", action="store_true", help="skip the model step timings")
    parser.add_argument("--step-512", action="store_true", help="also time the 512 px deblurring step")
    parser.add_argument("--construction-files", type=int, default=10000, help="0: skip")
    parser.add_argument("--construction-size", type=int, default=64, help="side of those PNGs")
    args = parser.parse_args()

    print(f"torch threads: {torch.get_num_threads()}, batch size {args.batch_size}, {args.batches} batches")
    steps: dict[tuple[str, int], float] = {}
    header = ["dataset", "patch"] + [f"samples/s ({w} workers)" for w in args.workers]
    header += ["step s"] + [f"data/step ({w} w)" for w in args.workers]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with tempfile.TemporaryDirectory() as tmp:
        make_fixtures(Path(tmp))
        for name, task, scale, patch, factory in datasets(Path(tmp)):
            dataset = factory()
            speeds = [samples_per_second(dataset, args.batch_size, args.batches, w) for w in args.workers]
            key = (task, patch)
            if key not in steps and not args.no_step and (patch < 512 or args.step_512):
                steps[key] = step_seconds(task, scale, patch)
            step = steps.get(key)
            ratios = [f"{1 / s / step:.4f}" if step else "-" for s in speeds]
            cells = [name, str(patch), *(f"{s:.1f}" for s in speeds), f"{step:.1f}" if step else "-", *ratios]
            table.append("| " + " | ".join(cells) + " |")
            print(table[-1], flush=True)
    print("\n" + "\n".join(table))
    if args.construction_files:
        header_only, verified = construction_times(args.construction_files, args.construction_size)
        print(
            f"\nFolderDataset over {args.construction_files} PNGs ({args.construction_size} px): "
            f"{header_only:.2f} s with header and end-marker checks (default), "
            f"{verified:.2f} s with verify_files=True"
        )


if __name__ == "__main__":
    main()
