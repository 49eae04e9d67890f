"""The official preprocessing of each dataset, after extraction: BasicSR's ``extract_subimages.py`` (DF2K /
DIV2K sub-images and their bicubic LR), Restormer's ``generate_patches_gopro.py`` (GoPro / HIDE), LaMa's
``fetch_data`` splits and ``gen_mask_dataset.py`` evaluation masks (Places365 / CelebA-HQ)."""

from __future__ import annotations

import io
import os
import shutil
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from diffir.data.imresize import bicubic_downsample
from diffir.data.masks import lama_mask_generator
from diffir.errors import PrepareError
from diffir.io import file_orientation, list_images, read_header, read_rgb, to_float, upright, write_atomic

from .jobs import run_jobs
from .sources import DIV2K_TRAIN, FLICKR2K

SUBIMAGE_CROP, SUBIMAGE_STEP, SUBIMAGE_THRESHOLD = 480, 240, 0  # BasicSR extract_subimages.py (DF2K)
BICUBIC_LR_SCALES = (
    2,
    3,
    4,
)  # the x<s> MATLAB-bicubic LR sub-images made beside the HR ones (official DF2K layout)
GOPRO_PATCH, GOPRO_STRIDE, GOPRO_VAL_CROP = 512, 256, 256  # Restormer generate_patches_gopro.py
PLACES_MASK_SETS = ("thick_256", "thin_256", "medium_256", "thick_512", "thin_512", "medium_512")
CELEBAHQ_MASK_SETS = ("thick_256", "thin_256")
EVAL_CROP_MIN_OVERLAP = 1.0  # LaMa configs/data_gen/random_*.yaml: cropping.crop_min_overlap


def _write_png(path: Path, img: np.ndarray) -> None:
    """An array in OpenCV's layout (BGR[A] or grey, 8 or 16 bits) as PNG (BasicSR's compression level 3)."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"could not encode {path}")
    write_atomic(path, buffer.tobytes(), durable=False)


def _save_pil(path: Path, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue(), durable=False)


def _read_bgr_uint8(path: Path) -> np.ndarray:
    """BGR (OpenCV's order) uint8 ``H x W x 3``: greyscale, palette, alpha and 16-bit files converted."""
    img = read_rgb(path)
    img = img if img.dtype == np.uint8 else np.round(to_float(img) * 255.0).astype(np.uint8)
    return img[..., ::-1]


def subimage_positions(
    length: int, crop: int = SUBIMAGE_CROP, step: int = SUBIMAGE_STEP, threshold: int = SUBIMAGE_THRESHOLD
) -> list[int]:
    """Crop offsets along one side, as BasicSR's ``extract_subimages.py``: every ``step``, plus one aligned to
    the border when more than ``threshold`` pixels would be left over. Empty if the side is under ``crop``."""
    if length < crop:
        return []
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > threshold:
        positions.append(length - crop)
    return positions


def patch_positions(length: int, patch: int = GOPRO_PATCH, stride: int = GOPRO_STRIDE) -> list[int]:
    """Patch offsets along one side, as Restormer's ``generate_patches_gopro.py``: every ``stride`` below
    ``length - patch``, then the border-aligned ``length - patch``. Empty if the side is under ``patch``."""
    return [*range(0, length - patch, stride), length - patch] if length >= patch else []


def _subimage_job(source: Path, out_dir: Path) -> int:
    """HR sub-images ``<stem>_s001.png``... of one image, and their MATLAB-bicubic LR; returns their number.

    Existing outputs are kept, so an interrupted run resumes.
    """
    img: np.ndarray | None = None
    height, width = read_header(source)
    rows, cols = subimage_positions(height), subimage_positions(width)
    for index, (top, left) in enumerate(((y, x) for y in rows for x in cols), start=1):
        name = f"{source.stem}_s{index:03d}.png"
        outputs = [out_dir / "HR_sub" / name] + [
            out_dir / f"LR_bicubic_sub/X{s}" / name for s in BICUBIC_LR_SCALES
        ]
        if all(p.exists() for p in outputs):
            continue
        img = _read_bgr_uint8(source) if img is None else img
        sub = np.ascontiguousarray(img[top : top + SUBIMAGE_CROP, left : left + SUBIMAGE_CROP])
        for scale, path in zip((1, *BICUBIC_LR_SCALES), outputs, strict=True):
            _write_png(path, sub if scale == 1 else bicubic_downsample(sub, scale))
    return len(rows) * len(cols)


def _make_subimages(hr_dirs: Sequence[Path], out_dir: Path, workers: int) -> None:
    sources = [path for folder in hr_dirs for path in list_images(folder)]
    counts = run_jobs(
        _subimage_job, [(s, out_dir) for s in sources], workers, f"sub-images -> {out_dir.name}"
    )
    small = [str(s) for s, n in zip(sources, counts, strict=True) if n == 0]
    if small:
        print(f"  note: {len(small)} image(s) under {SUBIMAGE_CROP} px gave no sub-image: {', '.join(small)}")


def build_div2k(root: Path, options: Mapping[str, int], workers: int) -> None:
    _make_subimages([root / DIV2K_TRAIN.dest], root / "DIV2K", workers)


def build_df2k(root: Path, options: Mapping[str, int], workers: int) -> None:
    _make_subimages([root / DIV2K_TRAIN.dest, root / FLICKR2K.dest], root / "DF2K", workers)


def build_nothing(root: Path, options: Mapping[str, int], workers: int) -> None:
    """SR test sets: the HR images are used as they are (the LR is made at evaluation time)."""


def _pairs(input_dir: Path, target_dir: Path) -> list[tuple[Path, Path]]:
    """Blurred / sharp files matched by name; an error lists the unmatched ones."""
    inputs = {p.stem: p for p in list_images(input_dir)} if input_dir.is_dir() else {}
    targets = {p.stem: p for p in list_images(target_dir)} if target_dir.is_dir() else {}
    if not inputs:
        raise PrepareError(f"no images in {input_dir}")
    unmatched = [str(p) for k, p in inputs.items() if k not in targets]
    unmatched += [str(p) for k, p in targets.items() if k not in inputs]
    if unmatched:
        raise PrepareError(
            f"{len(unmatched)} image(s) without a partner of the same name:\n  " + "\n  ".join(unmatched)
        )
    return [(inputs[k], targets[k]) for k in sorted(inputs)]


def _read_pair(blurred: Path, sharp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both images as stored (OpenCV, unchanged bit depth and channel order) and turned upright as a viewer
    shows them (EXIF orientation), which must have the same size."""
    a, b = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (blurred, sharp))
    for img, path in ((a, blurred), (b, sharp)):
        if img is None:
            raise PrepareError(f"cannot decode {path}")
    a, b = upright(a, file_orientation(blurred)), upright(b, file_orientation(sharp))
    if a.shape != b.shape:
        raise PrepareError(f"{blurred} {a.shape[:2]} and {sharp} {b.shape[:2]} differ in size")
    return a, b


def _gopro_patches_job(blurred: Path, sharp: Path, out_dir: Path) -> int:
    """512 px patches, stride 256, of one pair: ``<stem>-<n>.png`` in ``input_crops`` / ``target_crops``, n
    counting row by row from 1 (an image under 512 px is kept whole as ``<stem>.png``)."""
    a, b = _read_pair(blurred, sharp)
    rows, cols = patch_positions(a.shape[0]), patch_positions(a.shape[1])
    boxes = [(y, x, GOPRO_PATCH) for y in rows for x in cols]
    names = [f"{blurred.stem}-{n}.png" for n in range(1, len(boxes) + 1)]
    if not boxes:
        boxes, names = [(0, 0, max(a.shape[:2]))], [f"{blurred.stem}.png"]
    for (top, left, side), name in zip(boxes, names, strict=True):
        _write_png(out_dir / "input_crops" / name, a[top : top + side, left : left + side])
        _write_png(out_dir / "target_crops" / name, b[top : top + side, left : left + side])
    return len(names)


def _gopro_center_job(blurred: Path, sharp: Path, out_dir: Path) -> None:
    """The 256 px centre crop of one pair (the validation set of the official training)."""
    a, b = _read_pair(blurred, sharp)
    top, left = max(0, (a.shape[0] - GOPRO_VAL_CROP) // 2), max(0, (a.shape[1] - GOPRO_VAL_CROP) // 2)
    for img, folder in ((a, "input_crops"), (b, "target_crops")):
        crop = img[top : top + GOPRO_VAL_CROP, left : left + GOPRO_VAL_CROP]
        _write_png(out_dir / folder / f"{blurred.stem}.png", crop)


def build_gopro(root: Path, options: Mapping[str, int], workers: int) -> None:
    base = root / "GoPro"
    train = _pairs(base / "train/input", base / "train/target")
    run_jobs(_gopro_patches_job, [(a, b, base / "train") for a, b in train], workers, "GoPro train patches")
    test = _pairs(base / "test/input", base / "test/target")
    run_jobs(_gopro_center_job, [(a, b, base / "val") for a, b in test], workers, "GoPro val crops")


def build_hide(root: Path, options: Mapping[str, int], workers: int) -> None:
    """Pair each blurred test image with the ground truth of the same name, then drop the unused GT."""
    base = root / "HIDE"
    inputs = list_images(base / "test/input") if (base / "test/input").is_dir() else []
    if not inputs:
        raise PrepareError(f"no blurred test images in {base / 'test/input'}")
    gt = {p.stem: p for p in list_images(base / "GT")} if (base / "GT").is_dir() else {}
    moves, problems = [], []
    for blurred in inputs:
        target = base / "test/target" / blurred.name
        if target.exists():
            continue
        sharp = gt.get(blurred.stem)
        if sharp is None:
            problems.append(f"{blurred}: no ground truth {blurred.stem}.* in {base / 'GT'}")
        elif read_header(sharp) != read_header(blurred):
            problems.append(f"{blurred} and {sharp} differ in size")
        else:
            moves.append((sharp, base / "test/target" / f"{blurred.stem}{sharp.suffix}"))
    if problems:
        raise PrepareError(
            f"{len(problems)} HIDE test image(s) cannot be paired:\n  " + "\n  ".join(problems)
        )
    (base / "test/target").mkdir(parents=True, exist_ok=True)
    for sharp, target in moves:
        os.replace(sharp, target)
    shutil.rmtree(base / "GT", ignore_errors=True)


def _square_crop(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of LaMa's ``propose_random_square_crop``: a square of the short side that, along the long
    side, starts where it keeps ``EVAL_CROP_MIN_OVERLAP`` of the hole's extent."""
    height, width = mask.shape
    side = min(height, width)
    coords, length = (np.nonzero(mask)[1], width) if height < width else (np.nonzero(mask)[0], height)
    reach = coords.min() + (coords.max() - coords.min()) * EVAL_CROP_MIN_OVERLAP
    low = max(0, min(length - side - 1, reach - side))
    high = max(low + 1, min(length - side, reach))
    start = int(rng.integers(int(low), int(high)))
    return (0, start) if height < width else (start, 0)


def evaluation_mask(
    preset: str, shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """A mask of LaMa's ``gen_mask_dataset.py``: drawn on the whole (resized) image, cropped to a square that
    overlaps it, kept if the crop's hole is non-empty and covers at most ``max_tamper_area``.

    Returns the square mask and the crop's top and left.
    """
    generator = lama_mask_generator(preset)
    limit, generator.max_tamper_area = generator.max_tamper_area, 1.0  # LaMa filters the crop, not the image
    side = min(shape)
    for _ in range(50):
        mask = generator(shape, rng)
        if not mask.any():
            continue
        top, left = _square_crop(mask, rng)
        crop = mask[top : top + side, left : left + side]
        if crop.any() and crop.mean() <= limit:
            return crop, top, left
    raise PrepareError(f"no {preset} mask of at most {limit:.0%} in 50 draws on a {shape} image")


def _eval_masks_job(source: Path, out_root: Path, presets: Sequence[str], seed: int) -> None:
    """One image of each evaluation set ``random_<preset>``: LaMa's layout ``<stem>_crop000.png`` (resized so
    the short side is the set's size, bicubic, then square-cropped) and ``<stem>_crop000_mask000.png``.

    The mask depends only on (seed, preset, image name), whatever the order or process.
    """
    image = None
    for preset in presets:
        out_dir, name = out_root / f"random_{preset}", f"{source.stem}_crop000"
        if (out_dir / f"{name}_mask000.png").exists():  # written last: the pair is complete
            continue
        if image is None:
            rgb = read_rgb(source)  # upright (EXIF orientation), RGB, the first frame of an animation
            image = Image.fromarray(
                rgb if rgb.dtype == np.uint8 else (to_float(rgb) * 255).round().astype(np.uint8)
            )
        size = int(preset.rsplit("_", 1)[1])
        factor = size / min(image.size)
        resized = image.resize(tuple(int(round(s * factor)) for s in image.size), Image.Resampling.BICUBIC)
        rng = np.random.default_rng([seed, zlib.crc32(preset.encode()), zlib.crc32(source.stem.encode())])
        mask, top, left = evaluation_mask(preset, (resized.height, resized.width), rng)
        _save_pil(out_dir / f"{name}.png", resized.crop((left, top, left + size, top + size)))
        _save_pil(out_dir / f"{name}_mask000.png", Image.fromarray((mask * 255).astype(np.uint8), mode="L"))


def _link(source: Path, dest: Path) -> None:
    """Hard link (no extra space), or copy across file systems."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def build_places(root: Path, options: Mapping[str, int], workers: int) -> None:
    """LaMa's evaluation set (``eval_sampler.py`` + ``gen_mask_dataset.py``) and a validation set, from
    ``val_large``, with a seeded draw instead of LaMa's unseeded shuffle."""
    base = root / "Places365"
    images = list_images(base / "val_large")
    n_eval, n_val = options["eval_size"], options["val_size"]
    if len(images) < n_eval + n_val:
        raise PrepareError(
            f"{base / 'val_large'} has {len(images)} images, fewer than --eval-size {n_eval} + --val-size {n_val}"
        )
    order = np.random.default_rng(options["seed"]).permutation(len(images))
    evaluation = sorted(images[i] for i in order[:n_eval])
    (base / "eval_random_files.txt").write_text("".join(f"{p.name}\n" for p in evaluation))
    for i in order[n_eval : n_eval + n_val]:
        _link(images[i], base / "val" / images[i].name)
    jobs = [(p, base / "evaluation", PLACES_MASK_SETS, options["seed"]) for p in evaluation]
    run_jobs(_eval_masks_job, jobs, workers, "Places evaluation masks")


def build_celebahq(root: Path, options: Mapping[str, int], workers: int) -> None:
    """LaMa's ``celebahq_dataset_prepare.sh`` split with a seeded shuffle, and ``celebahq_gen_masks.sh``."""
    base = root / "CelebA-HQ"
    flists = {  # LaMa's names
        "val_source_256": "val_shuffled.flist",
        "visual_test_source_256": "visual_test_shuffled.flist",
        "train_256": "train_shuffled.flist",
    }
    splits = tuple(flists)
    found = {
        p.name: p
        for folder in ("data256x256", *splits)
        if (base / folder).is_dir()
        for p in list_images(base / folder)
    }
    names = sorted(found, key=lambda n: int(Path(n).stem))
    n_val, n_visual = options["val_size"], options["visual_test_size"]
    if len(names) <= n_val + n_visual:
        raise PrepareError(f"{len(names)} CelebA-HQ images, not more than --val-size + --visual-test-size")
    order = [names[i] for i in np.random.default_rng(options["seed"]).permutation(len(names))]
    parts = dict(
        zip(splits, (order[:n_val], order[n_val : n_val + n_visual], order[n_val + n_visual :]), strict=True)
    )
    for split, members in parts.items():
        (base / split).mkdir(exist_ok=True)
        for name in members:
            if found[name] != base / split / name:
                os.replace(found[name], base / split / name)
        (base / flists[split]).write_text("".join(f"{name}\n" for name in members))
    shutil.rmtree(base / "data256x256", ignore_errors=True)
    jobs = [
        (base / "val_source_256" / n, base / "evaluation", CELEBAHQ_MASK_SETS, options["seed"])
        for n in parts["val_source_256"]
    ]
    run_jobs(_eval_masks_job, jobs, workers, "CelebA-HQ evaluation masks")
