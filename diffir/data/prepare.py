"""Get the paper's datasets and prepare them as the official code does, into the layouts of ``conf/data``.

    python -m diffir.data.prepare <dataset> --root <data dir> [--from-archive <file> ...]

Each run: (1) gets the official archives, downloaded resumably (HTTP Range into ``<file>.part``) and checked
against their checksum when one is published, or taken from ``--from-archive`` (zip or tar of any
compression, recognised by content, never downloading); (2) extracts only the files needed, straight to their
place; (3) runs the official preprocessing (BasicSR's ``extract_subimages.py``, Restormer's
``generate_patches_gopro.py``, LaMa's ``fetch_data`` scripts and ``gen_mask_dataset.py``); (4) writes
``<root>/<dataset dir>/prepare_manifest.json``. A second run reads the manifest and does nothing; an
interrupted run resumes (finished extractions and finished output files are kept). ``--help`` lists every
dataset's sources and licence; ``data/README.md`` the resulting layouts.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from diffir.data.datasets import IMAGE_EXTENSIONS, list_images, read_header, read_rgb, to_float
from diffir.data.imresize import bicubic_downsample
from diffir.data.masks import lama_mask_generator

MANIFEST = "prepare_manifest.json"
MANIFEST_FORMAT = 1
SUBIMAGE_CROP, SUBIMAGE_STEP, SUBIMAGE_THRESHOLD = 480, 240, 0  # BasicSR extract_subimages.py (DF2K)
SR_SCALES = (2, 3, 4)
GOPRO_PATCH, GOPRO_STRIDE, GOPRO_VAL_CROP = 512, 256, 256  # Restormer generate_patches_gopro.py
PLACES_MASK_SETS = ("thick_256", "thin_256", "medium_256", "thick_512", "thin_512", "medium_512")
CELEBAHQ_MASK_SETS = ("thick_256", "thin_256")
EVAL_CROP_MIN_OVERLAP = 1.0  # LaMa configs/data_gen/random_*.yaml: cropping.crop_min_overlap

Route = Callable[[str], "str | None"]


class PrepareError(RuntimeError):
    """A problem with the inputs of a preparation, with what to do about it."""


# --- sources --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    """One official archive: where to get it, and where its needed files go.

    ``route`` maps a member path to its destination relative to the root (None: not needed). ``dest`` is the
    folder it fills, which keeps the ``.extracted-<filename>.json`` marker of a finished extraction.
    """

    filename: str
    page: str
    dest: str
    route: Route
    url: str | None = None  # None: download by hand (request form, Google Drive)
    checksum: str | None = None  # "sha256:<hex>" or "md5:<hex>" of the official file
    expected: int | None = None  # files the full archive yields, to flag subsets

    def marker(self, root: Path) -> Path:
        return root / self.dest / f".extracted-{self.filename}.json"


def _is_image(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _folder_route(folder: str, dest: str) -> Route:
    """Images ``.../<folder>/<file>`` go to ``<dest>/<file>``."""

    def route(member: str) -> str | None:
        parts = member.split("/")
        return f"{dest}/{parts[-1]}" if parts[-2:-1] == [folder] and _is_image(parts[-1]) else None

    return route


def _normalised(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def _benchmark_route(name: str) -> Route:
    """HR images of an SR test set: ``.../<name>/HR/<file>`` (EDSR's benchmark.tar) or ``.../<name>/<file>``."""
    key = _normalised(name)

    def route(member: str) -> str | None:
        parts = member.split("/")
        for i, part in enumerate(parts[:-1]):
            rest = parts[i + 1 :]
            if _normalised(part) == key and (len(rest) == 1 or (len(rest) == 2 and rest[0].upper() == "HR")):
                return f"{name}/HR/{rest[-1]}" if _is_image(rest[-1]) else None
        return None

    return route


_GOPRO_KINDS = {"blur": "input", "input": "input", "sharp": "target", "target": "target"}


def _gopro_route(member: str) -> str | None:
    """``GOPRO_Large/<split>/<sequence>/{blur,sharp}/<frame>`` (official; ``blur_gamma`` unused) or Restormer's
    ``train/{input,target}/<file>``, ``test/GoPro/{input,target}/<file>`` -> ``GoPro/<split>/{input,target}``."""
    parts = member.split("/")
    if len(parts) < 3 or not _is_image(parts[-1]) or _GOPRO_KINDS.get(parts[-2]) is None:
        return None
    if any(p.lower().startswith(("hide", "realblur")) for p in parts):
        return None
    splits = [p for p in parts[:-2] if p in ("train", "test")]
    if not splits:
        return None
    sequence = parts[-3]
    prefix = (
        ""
        if sequence in ("train", "test") or sequence.lower() in ("gopro", "gopro_large")
        else sequence + "_"
    )
    return f"GoPro/{splits[-1]}/{_GOPRO_KINDS[parts[-2]]}/{prefix}{parts[-1]}"


def _hide_route(member: str) -> str | None:
    """Official ``HIDE_dataset/{GT,test/test-*}/<file>`` or Restormer's ``test/HIDE/{input,target}/<file>``:
    blurred test images to ``HIDE/test/input``, ground truth to ``HIDE/GT`` (paired by name afterwards)."""
    parts = member.split("/")
    if len(parts) < 2 or not _is_image(parts[-1]):
        return None
    folder = parts[-2]
    hide_layout = len(parts) >= 3 and parts[-3].lower() == "hide"
    if folder == "GT" or (hide_layout and folder == "target"):
        return f"HIDE/GT/{parts[-1]}"
    if (folder.startswith("test-") and "test" in parts[:-2]) or (hide_layout and folder == "input"):
        return f"HIDE/test/input/{parts[-1]}"
    return None


def _places_train_route(member: str) -> str | None:
    """``data_large/a/airfield/00000001.jpg`` -> ``Places365/train/a_airfield_00000001.jpg`` (flat: the file
    names repeat across categories, so the category stays in the name)."""
    parts = member.split("/")
    if len(parts) < 3 or not parts[0].startswith("data_large") or not _is_image(parts[-1]):
        return None
    return "Places365/train/" + "_".join(parts[1:])


def _celebahq_route(member: str) -> str | None:
    """``data256x256/00001.jpg`` .. ``30000.jpg`` -> ``CelebA-HQ/data256x256/0.jpg`` .. ``29999.jpg`` (LaMa's
    re-indexing)."""
    parts = member.split("/")
    match = re.fullmatch(r"(\d+)\.jpg", parts[-1])
    if match is None or parts[-2:-1] != ["data256x256"]:
        return None
    return f"CelebA-HQ/data256x256/{int(match[1]) - 1}.jpg"


DIV2K_PAGE = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
DIV2K_TRAIN = Archive(
    "DIV2K_train_HR.zip",
    DIV2K_PAGE,
    "DIV2K/DIV2K_train_HR",
    _folder_route("DIV2K_train_HR", "DIV2K/DIV2K_train_HR"),
    url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
    checksum="sha256:9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
    expected=800,
)
DIV2K_VALID = Archive(
    "DIV2K_valid_HR.zip",
    DIV2K_PAGE,
    "DIV2K/DIV2K_valid_HR",
    _folder_route("DIV2K_valid_HR", "DIV2K/DIV2K_valid_HR"),
    url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
    checksum="sha256:20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
    expected=100,
)
FLICKR2K = Archive(
    "Flickr2K.tar",
    "https://github.com/LimBee/NTIRE2017",
    "Flickr2K/Flickr2K_HR",
    _folder_route("Flickr2K_HR", "Flickr2K/Flickr2K_HR"),
    url="https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",
    expected=2650,
)


def _edsr_benchmark(name: str, count: int) -> Archive:
    return Archive(
        "benchmark.tar",
        "https://github.com/sanghyun-son/EDSR-PyTorch",
        f"{name}/HR",
        _benchmark_route(name),
        url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        expected=count,
    )


def _by_hand(filename: str, page: str, dest: str, route: Route, expected: int | None = None) -> Archive:
    return Archive(filename, page, dest, route, expected=expected)


# --- files, archives, downloads -------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes | IO[bytes]) -> None:
    """Write via a hidden temporary file and rename, so an interrupted run never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        if isinstance(data, bytes):
            f.write(data)
        else:
            shutil.copyfileobj(data, f, 1 << 20)
    os.replace(tmp, path)


def _write_png(path: Path, img: np.ndarray) -> None:
    """An array in OpenCV's layout (BGR[A] or grey, 8 or 16 bits) as PNG (BasicSR's compression level 3)."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"could not encode {path}")
    _atomic_write(path, buffer.tobytes())


def _save_pil(path: Path, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    _atomic_write(path, buffer.getvalue())


def _read_bgr_uint8(path: Path) -> np.ndarray:
    """BGR (OpenCV's order) uint8 ``H x W x 3``: greyscale, palette, alpha and 16-bit files converted."""
    img = read_rgb(path)
    img = img if img.dtype == np.uint8 else np.round(to_float(img) * 255.0).astype(np.uint8)
    return img[..., ::-1]


def verify_checksum(path: Path, checksum: str) -> None:
    """Raise PrepareError unless ``path`` has ``checksum`` (``"sha256:<hex>"`` or ``"md5:<hex>"``)."""
    algorithm, expected = checksum.split(":", 1)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f, _bar(os.path.getsize(path), f"checking {path.name}", "B") as bar:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() != expected:
        raise PrepareError(
            f"{path}: {algorithm} is {digest.hexdigest()}, expected {expected} (corrupt download)"
        )


def download(url: str, path: Path, checksum: str | None = None) -> Path:
    """Download ``url`` to ``path``, resuming ``<path>.part`` of an earlier attempt (HTTP Range), then check it.

    A corrupt file is renamed to ``<path>.corrupt`` so that the next attempt starts afresh.
    """
    part = path.with_name(path.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "diffir-prepare"} | ({"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as err:
        if not (err.code == 416 and done):  # 416: nothing left to fetch, the .part is complete
            raise PrepareError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
        response = None
    except (urllib.error.URLError, OSError) as err:
        raise PrepareError(f"cannot download {url}: {err}") from err
    if response is not None:
        with response:
            if "text/html" in response.headers.get("Content-Type", ""):
                raise PrepareError(
                    f"{url} answered with a web page, not the archive (moved, or needs a login)"
                )
            if done and response.status != 206:  # the server ignored the range: start again
                done = 0
            length = int(response.headers.get("Content-Length") or 0)
            with open(part, "ab" if done else "wb") as f, _bar(length + done or None, path.name, "B") as bar:
                bar.update(done)
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    if checksum:
        try:
            verify_checksum(part, checksum)
        except PrepareError:
            part.replace(path.with_name(path.name + ".corrupt"))
            raise
    part.replace(path)
    return path


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """``(member path, opener)`` of each file of a zip or tar archive (detected by content), in one pass."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: zf.open(info)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, mode="r|*") as tf:  # streaming: one sequential read, even of 100 GB
            for member in tf:
                if member.isfile():
                    yield member.name, lambda member=member: tf.extractfile(member)
    else:
        raise PrepareError(f"{archive} is neither a zip nor a tar archive")


def extract(archive: Path, sources: Sequence[Archive], root: Path) -> dict[str, int]:
    """Write the members of ``archive`` routed by ``sources`` under ``root``; returns files per source."""
    counts = dict.fromkeys((s.filename for s in sources), 0)
    with _bar(None, f"extracting {archive.name}", " files") as bar:
        for name, open_member in _members(archive):
            member = re.sub(r"^(\./|/)+", "", name.replace("\\", "/"))
            for source in sources:
                dest = source.route(member)
                if dest is not None and ".." not in Path(dest).parts:
                    with open_member() as stream:
                        _atomic_write(root / dest, stream)
                    counts[source.filename] += 1
                    bar.update()
                    break
    return counts


def _bar(total: int | None, desc: str, unit: str) -> tqdm:
    """A progress bar on stderr (hidden when it is not a terminal)."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=None, leave=False)


# --- parallel jobs ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """torch on one thread: the jobs run in parallel processes, and multi-threaded resizing of small images on
    a busy machine is 20x slower than single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _named(function: Callable[..., Any], *job: Any) -> Any:
    """``function(*job)``, with errors naming the job's input file (``job[0]``)."""
    try:
        return function(*job)
    except PrepareError:
        raise
    except Exception as err:
        raise PrepareError(f"{job[0]}: {type(err).__name__}: {err}") from err


def run_jobs(function: Callable[..., Any], jobs: Sequence[tuple], workers: int, desc: str) -> list[Any]:
    """``function(*job)`` for every job, with a progress bar: in this process, or in ``workers`` processes."""
    named = functools.partial(_named, function)
    if workers <= 1 or len(jobs) <= 1:
        with _single_threaded():
            return [named(*job) for job in tqdm(jobs, desc=desc, disable=None, leave=False)]
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        results = pool.map(named, *zip(*jobs, strict=True), chunksize=max(1, len(jobs) // (workers * 16)))
        return list(tqdm(results, total=len(jobs), desc=desc, disable=None, leave=False))


# --- preprocessing ------------------------------------------------------------------------------------------


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
        outputs = [out_dir / "HR_sub" / name] + [out_dir / f"LR_bicubic_sub/X{s}" / name for s in SR_SCALES]
        if all(p.exists() for p in outputs):
            continue
        img = _read_bgr_uint8(source) if img is None else img
        sub = np.ascontiguousarray(img[top : top + SUBIMAGE_CROP, left : left + SUBIMAGE_CROP])
        for scale, path in zip((1, *SR_SCALES), outputs, strict=True):
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


def _build_div2k(root: Path, options: Mapping[str, int], workers: int) -> None:
    _make_subimages([root / DIV2K_TRAIN.dest], root / "DIV2K", workers)


def _build_df2k(root: Path, options: Mapping[str, int], workers: int) -> None:
    _make_subimages([root / DIV2K_TRAIN.dest, root / FLICKR2K.dest], root / "DF2K", workers)


def _build_nothing(root: Path, options: Mapping[str, int], workers: int) -> None:
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
    """Both images exactly as stored (OpenCV, unchanged), which must have the same size."""
    a, b = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (blurred, sharp))
    for img, path in ((a, blurred), (b, sharp)):
        if img is None:
            raise PrepareError(f"cannot decode {path}")
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


def _build_gopro(root: Path, options: Mapping[str, int], workers: int) -> None:
    base = root / "GoPro"
    train = _pairs(base / "train/input", base / "train/target")
    run_jobs(_gopro_patches_job, [(a, b, base / "train") for a, b in train], workers, "GoPro train patches")
    test = _pairs(base / "test/input", base / "test/target")
    run_jobs(_gopro_center_job, [(a, b, base / "val") for a, b in test], workers, "GoPro val crops")


def _build_hide(root: Path, options: Mapping[str, int], workers: int) -> None:
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
            with Image.open(source) as img:
                image = img.convert("RGB")
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


def _build_places(root: Path, options: Mapping[str, int], workers: int) -> None:
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


def _build_celebahq(root: Path, options: Mapping[str, int], workers: int) -> None:
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


# --- the datasets -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """A preparable dataset: its archives, its preprocessing and the folders it produces."""

    title: str
    licence: str
    directory: str  # holds the manifest
    archives: tuple[Archive, ...]
    build: Callable[[Path, Mapping[str, int], int], None]
    outputs: tuple[str, ...]  # reported folders (relative to the root)
    products: tuple[str, ...] = ()  # made by the preprocessing: removed by --force
    options: Mapping[str, int] = field(default_factory=dict)  # settable options and their defaults
    notes: str = ""


_LR_SUB = tuple(f"LR_bicubic_sub/X{s}" for s in SR_SCALES)
_SR_TEST = "HR images only: the LR is made at evaluation time (mod-crop, MATLAB bicubic, 8 bits)."


def _sr_test_set(name: str, title: str, licence: str, archive: Archive) -> DatasetSpec:
    return DatasetSpec(title, licence, name, (archive,), _build_nothing, (f"{name}/HR",), notes=_SR_TEST)


DATASETS: dict[str, DatasetSpec] = {
    "div2k": DatasetSpec(
        "DIV2K: 800 training + 100 validation 2K images",
        "academic research only (DIV2K / NTIRE 2017 terms)",
        "DIV2K",
        (DIV2K_TRAIN, DIV2K_VALID),
        _build_div2k,
        (DIV2K_TRAIN.dest, DIV2K_VALID.dest, "DIV2K/HR_sub", *(f"DIV2K/{d}" for d in _LR_SUB)),
        products=("DIV2K/HR_sub", "DIV2K/LR_bicubic_sub"),
        notes="480 px HR sub-images (step 240) with MATLAB-bicubic LR x2/x3/x4 of each; DIV2K100 validation HR.",
    ),
    "df2k": DatasetSpec(
        "DF2K: DIV2K train (800) + Flickr2K (2650), the paper's SR training set",
        "DIV2K: academic research only; Flickr2K: Flickr images collected by the EDSR authors, research use",
        "DF2K",
        (DIV2K_TRAIN, FLICKR2K, DIV2K_VALID),
        _build_df2k,
        (DIV2K_TRAIN.dest, FLICKR2K.dest, DIV2K_VALID.dest, "DF2K/HR_sub", *(f"DF2K/{d}" for d in _LR_SUB)),
        products=("DF2K",),
        notes="480 px HR sub-images (step 240) of both with MATLAB-bicubic LR x2/x3/x4; DIV2K100 validation HR.",
    ),
    "set5": _sr_test_set(
        "Set5", "Set5 (5 images)", "research benchmark (Bevilacqua et al. 2012)", _edsr_benchmark("Set5", 5)
    ),
    "set14": _sr_test_set(
        "Set14", "Set14 (14 images)", "research benchmark (Zeyde et al. 2010)", _edsr_benchmark("Set14", 14)
    ),
    "urban100": _sr_test_set(
        "Urban100",
        "Urban100 (100 images)",
        "research benchmark (Huang et al. 2015)",
        _edsr_benchmark("Urban100", 100),
    ),
    "manga109": _sr_test_set(
        "Manga109",
        "Manga109 (109 images, the SR test set)",
        "academic use only, by request; redistribution not permitted (manga109.org)",
        _by_hand(
            "Manga109.zip",
            "http://www.manga109.org/en/download.html",
            "Manga109/HR",
            _benchmark_route("Manga109"),
            109,
        ),
    ),
    "general100": _sr_test_set(
        "General100",
        "General100 (100 images, FSRCNN)",
        "research use (Dong et al. 2016, FSRCNN)",
        _by_hand(
            "General100.zip",
            "http://mmlab.ie.cuhk.edu.hk/projects/FSRCNN.html",
            "General100/HR",
            _benchmark_route("General100"),
            100,
        ),
    ),
    "gopro": DatasetSpec(
        "GoPro (GOPRO_Large): 2103 training + 1111 test blurred/sharp pairs",
        "CC BY 4.0 (Nah et al. 2017)",
        "GoPro",
        (
            Archive(
                "GOPRO_Large.zip",
                "https://seungjunnah.github.io/Datasets/gopro",
                "GoPro",
                _gopro_route,
                url="https://huggingface.co/datasets/snah/GOPRO_Large/resolve/main/GOPRO_Large.zip",
                expected=6428,
            ),
        ),
        _build_gopro,
        (
            "GoPro/train/input_crops",
            "GoPro/train/target_crops",
            "GoPro/val/input_crops",
            "GoPro/val/target_crops",
        )
        + ("GoPro/test/input", "GoPro/test/target"),
        products=("GoPro/train/input_crops", "GoPro/train/target_crops", "GoPro/val"),
        notes="Also accepts Restormer's train.zip / test.zip (download_data.py). Uses the non-gamma `blur` frames.",
    ),
    "hide": DatasetSpec(
        "HIDE: 2025 blurred test images and their ground truth",
        "research use (Shen et al. 2019; no explicit licence)",
        "HIDE",
        (_by_hand("HIDE_dataset.zip", "https://github.com/joanshen0508/HA_deblur", "HIDE", _hide_route),),
        _build_hide,
        ("HIDE/test/input", "HIDE/test/target"),
        products=("HIDE",),
        notes="Google Drive only: download by hand. Also accepts Restormer's HIDE test.zip.",
    ),
    "places": DatasetSpec(
        "Places365-Standard (high resolution): 1.8M training images, 36,500 validation images",
        "non-commercial research and education only (Places365 terms); images belong to their owners",
        "Places365",
        (
            Archive(
                "train_large_places365standard.tar",
                "http://places2.csail.mit.edu/download.html",
                "Places365/train",
                _places_train_route,
                url="http://data.csail.mit.edu/places/places365/train_large_places365standard.tar",
                checksum="md5:67e186b496a84c929568076ed01a8aa1",
                expected=1803460,
            ),
            Archive(
                "val_large.tar",
                "http://places2.csail.mit.edu/download.html",
                "Places365/val_large",
                _folder_route("val_large", "Places365/val_large"),
                url="http://data.csail.mit.edu/places/places365/val_large.tar",
                checksum="md5:9b71c4993ad89d2d8bcbdc4aef38042f",
                expected=36500,
            ),
        ),
        _build_places,
        ("Places365/train", "Places365/val", "Places365/val_large")
        + tuple(f"Places365/evaluation/random_{m}" for m in PLACES_MASK_SETS),
        products=("Places365/val", "Places365/evaluation", "Places365/eval_random_files.txt"),
        options={"seed": 0, "eval_size": 30000, "val_size": 2000},
        notes=(
            "Evaluation: --eval-size images of val_large (seeded; LaMa's eval_sampler.py is unseeded) with LaMa "
            "masks thick/thin/medium at 256 and 512. Validation: --val-size other val_large images (LaMa takes "
            "them from the 19 GB test_large.tar)."
        ),
    ),
    "celebahq": DatasetSpec(
        "CelebA-HQ 256x256 (30,000 images)",
        "non-commercial research and education only (CelebA agreement)",
        "CelebA-HQ",
        (
            _by_hand(
                "data256x256.zip",
                "https://drive.google.com/drive/folders/11Vz0fqHS2rXDb5pprgTjpD7S2BAJhi1P (LaMa's README)",
                "CelebA-HQ",
                _celebahq_route,
                30000,
            ),
        ),
        _build_celebahq,
        ("CelebA-HQ/train_256", "CelebA-HQ/val_source_256", "CelebA-HQ/visual_test_source_256")
        + tuple(f"CelebA-HQ/evaluation/random_{m}" for m in CELEBAHQ_MASK_SETS),
        products=("CelebA-HQ",),
        options={"seed": 0, "val_size": 2000, "visual_test_size": 2000},
        notes=(
            "Re-indexed 0..29999; a seeded shuffle gives val (2000), visual test (2000) and train (26,000). LaMa "
            "shuffles its shipped 28k list with an unseeded `shuf`, so its split cannot be reproduced."
        ),
    ),
}


# --- the run ------------------------------------------------------------------------------------------------


def _count(path: Path) -> int:
    return len(list_images(path)) if path.is_dir() else 0


def _obtain(spec: DatasetSpec, root: Path, given: Sequence[Path], delete_archives: bool) -> None:
    """Extract every archive of ``spec`` not extracted yet: from ``given`` files, or else downloaded."""
    pending = [a for a in spec.archives if not a.marker(root).exists()]
    if not pending:
        print("  archives: already extracted")
        return
    counts: dict[str, int] = dict.fromkeys((a.filename for a in pending), 0)
    origin: dict[str, list[str]] = {a.filename: [] for a in pending}
    if given:
        for path in given:
            if not path.is_file():
                raise PrepareError(f"--from-archive {path}: no such file")
            for name, n in extract(path, pending, root).items():
                counts[name] += n
                if n:
                    origin[name].append(str(path))
        missing = [a for a in pending if counts[a.filename] == 0]
        if missing:
            raise PrepareError(
                "the given archives hold none of the files of:\n  "
                + "\n  ".join(f"{a.filename}: {a.url or 'download by hand from ' + a.page}" for a in missing)
            )
    else:
        manual = [a for a in pending if a.url is None]
        if manual:
            raise PrepareError(
                "download by hand (no direct link), then pass the file(s) with --from-archive:\n  "
                + "\n  ".join(f"{a.filename}: {a.page}" for a in manual)
            )
        for archive in pending:
            path = root / "downloads" / archive.filename
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"  downloading {archive.url}")
                download(archive.url, path, archive.checksum)
            counts.update(extract(path, [archive], root))
            origin[archive.filename].append(str(path))
            if delete_archives:
                path.unlink()
    for archive in pending:
        n = counts[archive.filename]
        subset = f" (the full archive has {archive.expected})" if archive.expected not in (None, n) else ""
        sources = ", ".join(origin[archive.filename])
        print(f"  extracted {n} files of {archive.filename} from {sources}{subset}")
        marker = archive.marker(root)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"files": n, "from": origin[archive.filename]}))


def prepare(
    dataset: str,
    root: str | Path,
    archives: Sequence[str | Path] = (),
    *,
    options: Mapping[str, int | None] | None = None,
    workers: int = 1,
    force: bool = False,
    delete_archives: bool = False,
) -> dict[str, Any]:
    """Prepare ``dataset`` under ``root`` (see the module docstring); returns the manifest plus ``status``.

    ``archives``: files downloaded by hand (nothing is downloaded then). ``options``: the dataset's settable
    options (``seed``, subset sizes); None values keep the defaults.
    """
    if dataset not in DATASETS:
        raise PrepareError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    chosen = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(chosen) - set(spec.options))
    if unknown:
        raise PrepareError(
            f"{dataset} has no option {', '.join(unknown)} (it has: {', '.join(spec.options) or 'none'})"
        )
    settings = {**spec.options, **chosen}
    root = Path(root).expanduser().resolve()
    manifest_path = root / spec.directory / MANIFEST
    print(f"{dataset}: {spec.title} -> {root / spec.directory}")
    if force:
        for product in spec.products:
            target = root / product
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        for archive in spec.archives:
            archive.marker(root).unlink(missing_ok=True)
        manifest_path.unlink(missing_ok=True)
    elif manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("options") != settings:
            raise PrepareError(
                f"{root / spec.directory} was prepared with {old.get('options')}, not {settings}; "
                "run with --force to prepare it again"
            )
        changed = [
            f"{d} ({n} -> {_count(root / d)} files)"
            for d, n in old["outputs"].items()
            if _count(root / d) != n
        ]
        if not changed:
            print(f"  nothing to do: already prepared ({manifest_path}, {old['finished']})")
            _print_outputs(old["outputs"], root)
            return {**old, "status": "up to date"}
        print("  outputs changed since the last run, preparing again: " + ", ".join(changed))
    start = time.time()
    _obtain(spec, root, [Path(a).expanduser() for a in archives], delete_archives)
    spec.build(root, settings, workers)
    manifest = {
        "dataset": dataset,
        "format": MANIFEST_FORMAT,
        "options": settings,
        "archives": [a.filename for a in spec.archives],
        "outputs": {d: _count(root / d) for d in spec.outputs},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _atomic_write(manifest_path, json.dumps(manifest, indent=2).encode())
    print(f"  prepared in {time.time() - start:.1f} s; manifest: {manifest_path}")
    _print_outputs(manifest["outputs"], root)
    return {**manifest, "status": "prepared"}


def _print_outputs(outputs: Mapping[str, int], root: Path) -> None:
    for folder, n in outputs.items():
        print(f"  {n:>9,d} images  {root / folder}")


def _sources_help() -> str:
    lines = ["datasets (sources, licence, what is made):"]
    for name, spec in DATASETS.items():
        lines.append(f"\n  {name}: {spec.title}\n    licence: {spec.licence}")
        for archive in spec.archives:
            how = archive.url or "download by hand"
            check = f", {archive.checksum}" if archive.checksum else ""
            lines.append(f"    {archive.filename}: {how}{check}\n      page: {archive.page}")
        if spec.notes:
            lines.append(f"    {spec.notes}")
    lines.append("\nLayouts and the matching training presets (data=<name>): data/README.md")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffir.data.prepare",
        description="Download (or take from --from-archive), extract and preprocess a dataset of the paper.",
        epilog=_sources_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", choices=list(DATASETS))
    parser.add_argument(
        "--root", type=Path, required=True, help="the data directory (the configs' paths.data_dir)"
    )
    parser.add_argument(
        "--from-archive",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="archives downloaded by hand (zip or tar, recognised by content); nothing is downloaded",
    )
    parser.add_argument(
        "--seed", type=int, help="places, celebahq: seed of the subsets and masks (default 0)"
    )
    parser.add_argument("--eval-size", type=int, help="places: evaluation images (default 30000)")
    parser.add_argument("--val-size", type=int, help="places, celebahq: validation images (default 2000)")
    parser.add_argument("--visual-test-size", type=int, help="celebahq: visual-test images (default 2000)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument("--force", action="store_true", help="prepare again from the archives")
    parser.add_argument(
        "--delete-archives", action="store_true", help="delete downloaded archives once extracted"
    )
    args = parser.parse_args(argv)
    options = {"seed": args.seed, "eval_size": args.eval_size, "val_size": args.val_size}
    options["visual_test_size"] = args.visual_test_size
    try:
        prepare(
            args.dataset,
            args.root,
            args.from_archive,
            options=options,
            workers=args.workers,
            force=args.force,
            delete_archives=args.delete_archives,
        )
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
