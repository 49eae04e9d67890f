"""Datasets of clean images, degraded on the fly into aligned (LQ, GT) pairs.

Every item is a dict of CHW float32 tensors in [0, 1]: ``gt`` (3 x H x W), ``lq`` (the network input:
3 x H/s x W/s for SR, 3 x H x W for deblurring, 4 x H x W for inpainting), ``mask`` (1 x H x W, inpainting
only) and ``name`` (the path relative to the dataset root without extension; the file stem for flat folders).

Training items (``patch_size`` set) are random crops with optional flips/rot90, degraded with worker-safe
randomness, or with randomness drawn from the ``sample_seed`` of an ``(index, sample_seed)`` key (from
``StepBatchSampler``). Validation items (``patch_size=None``) are the whole image mod-cropped to ``scale`` (or
a centre crop) and are degraded with an rng seeded by the image name, so the LQ (blur kernel, mask) is
identical every epoch and run.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import skimage
import torch
from torch.utils.data import Dataset

from diffir.data.degradations import Degradation
from diffir.io import IMAGE_EXTENSIONS, DecodeCheck, list_images, read_header, read_rgb, to_float

log = logging.getLogger(__name__)

# scikit-image's bundled colour photos (no download needed), by skimage.data function name.
SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png",  # 512 x 512
    "chelsea": "chelsea.png",  # 300 x 451
    "coffee": "coffee.png",  # 400 x 600
    "hubble_deep_field": "hubble_deep_field.jpg",  # 872 x 1000
    "immunohistochemistry": "ihc.png",  # 512 x 512
    "motorcycle_left": "motorcycle_left.png",  # 500 x 741 (stereo pair: keep both views in one split)
    "motorcycle_right": "motorcycle_right.png",  # 500 x 741
    "retina": "retina.jpg",  # 1411 x 1411
    "rocket": "rocket.jpg",  # 427 x 640
}
SKIMAGE_SPLITS = {
    "train": (
        "astronaut",
        "hubble_deep_field",
        "immunohistochemistry",
        "motorcycle_left",
        "motorcycle_right",
        "retina",
        "rocket",
    ),
    "val": ("chelsea", "coffee"),
}


@dataclass(frozen=True)
class ImageSource:
    """One image file: where it is, the name it is reported under, and its (height, width) from the header."""

    path: Path
    name: str
    size: tuple[int, int]


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad the bottom/right so both sides are at least ``size`` (BasicSR's choice for small GT)."""
    ph, pw = max(0, size - img.shape[0]), max(0, size - img.shape[1])
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else img


def _dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations (k in 0..7): BasicSR's hflip + vflip + rot90 augmentation."""
    img = np.rot90(img, k % 4)
    return img[:, ::-1] if k >= 4 else img


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


class PatchDataset(Dataset):
    """What RestorationDataset and PairedFolderDataset share: crop settings and their checks, each item's
    randomness, and the ``(index, sample_seed[, patch_size])`` keys. See ``RestorationDataset`` for the arguments.
    """

    def __init__(
        self,
        sources: Sequence[ImageSource],
        patch_size: int | None = None,
        scale: int = 1,
        augment: bool = False,
        repeat: int = 1,
        size_multiple: int = 1,
        center_crop: int | None = None,
        small_images: Literal["pad", "error"] = "pad",
        deterministic: bool | None = None,
        seed: int = 0,
    ) -> None:
        if not sources:
            raise ValueError("a dataset needs at least one image")
        multiple = scale * size_multiple
        for key, value in (("patch_size", patch_size), ("center_crop", center_crop)):
            if value is not None and (value <= 0 or value % multiple):
                raise ValueError(
                    f"{key}={value} must be a positive multiple of scale*size_multiple={multiple}"
                )
        if patch_size is not None and center_crop is not None:
            raise ValueError("center_crop is for validation; it cannot be combined with patch_size")
        if small_images not in ("pad", "error"):
            raise ValueError(f"small_images must be 'pad' or 'error', got {small_images!r}")
        crop = patch_size or center_crop
        if crop is not None and small_images == "error":
            small = [f"{s.path} ({s.size[0]}x{s.size[1]})" for s in sources if min(s.size) < crop]
            if small:
                raise ValueError(
                    f"{len(small)} image(s) are smaller than the {crop}x{crop} crop:\n  "
                    + "\n  ".join(small)
                    + "\nRemove them, lower the crop size, or set small_images=pad to reflect-pad them."
                )
        self.sources = list(sources)
        self.patch_size = patch_size
        self.scale = scale
        self.augment = augment
        self.repeat = repeat
        self.multiple = multiple
        self.center_crop = center_crop
        self.deterministic = patch_size is None if deterministic is None else deterministic
        self.seed = seed

    def __len__(self) -> int:
        return len(self.sources) * self.repeat

    def _item_rng(self, index: int) -> np.random.Generator:
        if self.deterministic:
            source = self.sources[index % len(self.sources)]
            return np.random.default_rng(
                [self.seed, zlib.crc32(source.name.encode()), index // len(self.sources)]
            )
        # A fresh seed from torch's generator: torch seeds each data-loader worker differently (and anew
        # each epoch unless workers persist); seed_everything / torch.manual_seed seed the main process.
        return np.random.default_rng(int(torch.randint(2**62, ()).item()))

    def _parse_key(self, key: int | tuple[int, ...]) -> tuple[int, np.random.Generator, int | None]:
        """``(index, rng, patch_size)`` of a key: an index, or ``(index, sample_seed[, patch_size])`` from
        ``StepBatchSampler``: the seed drives all of the sample's randomness, the patch size (progressive
        learning) overrides the crop."""
        if not isinstance(key, tuple):
            return key, self._item_rng(key), None
        patch_size = key[2] if len(key) > 2 else None
        if patch_size is not None and patch_size % self.multiple:
            raise ValueError(
                f"patch size {patch_size} is not a multiple of scale*size_multiple={self.multiple}"
            )
        return key[0], np.random.default_rng(key[1]), patch_size

    def _crop_box(
        self, height: int, width: int, rng: np.random.Generator, patch_size: int | None, unit: int = 1
    ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the crop of an image already padded to the crop size.

        Sizes are counted on a grid of ``unit`` GT pixels: 1 for the GT itself, ``scale`` for the LQ of a pair
        (whose GT crop is then this box times ``scale``, the same region).
        """
        if patch_size is not None:
            side = patch_size // unit
            return int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1)), side, side
        if self.center_crop is not None:
            side = self.center_crop // unit
            return (height - side) // 2, (width - side) // 2, side, side
        multiple = self.multiple // unit
        return 0, 0, height - height % multiple, width - width % multiple


class RestorationDataset(PatchDataset):
    """Clean images from a list of sources, cropped, augmented and degraded into (LQ, GT) pairs.

    Args:
        sources: the images.
        degradation: makes ``lq`` (and ``mask``) from a GT crop; its ``scale`` must equal ``scale``.
        patch_size: training crop side in GT pixels (a multiple of ``scale * size_multiple``); ``None`` for
            validation: the whole image, mod-cropped to ``scale * size_multiple``, or ``center_crop``.
        scale: GT / LQ size ratio (the SR factor; 1 otherwise).
        augment: random flips and 90-degree rotations.
        repeat: times each image appears per epoch (BasicSR's ``dataset_enlarge_ratio``).
        size_multiple: extra size constraint on the LQ (1: only mod-crop to ``scale``; the model pads).
        center_crop: validation only: centre crop of this side (GT pixels), for fast validation.
        small_images: images smaller than the crop are reflect-padded (``"pad"``) or rejected at construction
            (``"error"``).
        deterministic: seed each item's degradation by its name (default: when ``patch_size`` is None), so
            validation LQ is identical every epoch and run. Otherwise each item seeds its generator from
            torch's random generator, which torch seeds differently in every data-loader worker and epoch.
        seed: base seed of the deterministic mode.
        cache: keep decoded images in memory (per data-loader worker): for small sets read many times.
    """

    def __init__(
        self,
        sources: Sequence[ImageSource],
        degradation: Degradation,
        cache: bool = False,
        **kwargs: Any,
    ) -> None:
        if not sources:
            raise ValueError("a dataset needs at least one image")
        scale, deg_scale = kwargs.get("scale", 1), getattr(degradation, "scale", 1)
        if deg_scale != scale:
            raise ValueError(
                f"dataset scale={scale} but the degradation has scale={deg_scale}; set both alike"
            )
        super().__init__(sources, **kwargs)
        self.degradation = degradation
        self.cache = cache
        self._decoded: dict[int, np.ndarray] = {}

    def _crop(self, img: np.ndarray, rng: np.random.Generator, patch_size: int | None = None) -> np.ndarray:
        patch_size = patch_size or self.patch_size
        crop = patch_size or self.center_crop
        if crop is not None:
            img = _pad_to(img, crop)
        top, left, height, width = self._crop_box(img.shape[0], img.shape[1], rng, patch_size)
        img = img[top : top + height, left : left + width]
        if self.augment:
            img = _dihedral(img, int(rng.integers(8)))
        return np.ascontiguousarray(img)

    def _decode(self, source_index: int) -> np.ndarray:
        """Decode a source image; with ``cache``, once per process (small sets such as the samples)."""
        if source_index in self._decoded:
            return self._decoded[source_index]
        img = read_rgb(self.sources[source_index].path)
        if self.cache:
            self._decoded[source_index] = img
        return img

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, torch.Tensor | str]:
        """``key``: an index, or ``(index, sample_seed[, patch_size])`` (see ``PatchDataset._parse_key``)."""
        index, rng, patch_size = self._parse_key(key)
        source = self.sources[index % len(self.sources)]
        img = self._decode(index % len(self.sources))
        gt = to_float(self._crop(img, rng, patch_size))
        out = self.degradation(gt, rng)
        item: dict[str, torch.Tensor | str] = {
            "gt": _to_tensor(gt),
            "lq": _to_tensor(out["lq"]),
            "name": source.name,
        }
        if "mask" in out:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"], dtype=np.float32))
        if "kernel" in out:  # the synthetic blur kernel: GDP's known operator at evaluation
            item["kernel"] = torch.from_numpy(np.ascontiguousarray(out["kernel"], dtype=np.float32))
        return item


def scan_images(
    root: str | Path, verify_files: bool = False, skip_bad_files: bool = False
) -> tuple[Path, list[ImageSource]]:
    """The images under ``root`` (recursive) as sources named by their relative path, checked by ``read_header``
    and, with ``verify_files``, decoded once each (:class:`~diffir.io.DecodeCheck`: remembered across runs).

    Unreadable files raise one error naming all of them, or are skipped with a warning when
    ``skip_bad_files``. Returns the expanded root and the sources.
    """
    root = Path(root).expanduser()
    where = str(root) if root.is_absolute() else f"{root} (= {root.absolute()})"
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset directory {where} does not exist. Put your images there or point the config at "
            "your data, e.g. data.root=<dir>."
        )
    files = list_images(root)
    if not files:
        raise FileNotFoundError(
            f"dataset directory {where} contains no images "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}, searched recursively). Add images or point the "
            "config at another folder, e.g. data.root=<dir>."
        )
    decodes = DecodeCheck(root) if verify_files else None
    sources, bad = [], []
    for path in files:
        try:
            size = read_header(path)
            if decodes is not None:
                decodes(path)
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on broken files
            bad.append(f"{path}: {type(err).__name__}: {err}")
            continue
        sources.append(ImageSource(path, path.relative_to(root).with_suffix("").as_posix(), size))
    if decodes is not None:
        decodes.save()
    if bad:
        listing = "\n  ".join(bad)
        if not skip_bad_files:
            raise OSError(
                f"{len(bad)} unreadable image(s) in {root}:\n  {listing}\n"
                "Fix or delete them, or set skip_bad_files=true to skip them."
            )
        log.warning("skipping %d unreadable image(s) in %s:\n  %s", len(bad), root, listing)
    if not sources:
        raise FileNotFoundError(
            f"dataset directory {root} has no readable images (all {len(bad)} are broken)"
        )
    return root, sources


def held_out(
    sources: Sequence[ImageSource], count: int, split: Literal["train", "val"], root: Path
) -> list[ImageSource]:
    """The ``split`` of ``sources`` when validation holds out ``count`` of them (at most a tenth, at least
    one), chosen by a hash of their names: the same images in every run and in both datasets, whatever the
    listing order. A single image leaves nothing to train on once held out: a ``ValueError`` saying what to set.
    """
    if len(sources) < 2:
        raise ValueError(
            f"{root} has {len(sources)} image: nothing is left to validate on once it is trained on; give "
            "validation images with data.val_root=<dir>, or validate on the training image with "
            "data.validate_on_train=true"
        )
    ranked = sorted(sources, key=lambda s: (zlib.crc32(s.name.encode()), s.name))
    kept = {s.name for s in ranked[: max(1, min(count, len(sources) // 10))]}
    return [s for s in sources if (s.name in kept) == (split == "val")]


class FolderDataset(RestorationDataset):
    """All images in a folder tree (png/jpg/jpeg/webp/bmp/tif/tiff), checked at construction.

    Each file's header and last bytes are read but nothing is decoded, so 10k files take about a second;
    ``verify_files`` also decodes every file once (remembered by path, size and time: later runs decode only
    new or changed files), which finds damage inside files whose end is intact (see data/README.md).
    Unreadable or truncated files raise one error naming all of them, or are skipped with a warning when
    ``skip_bad_files``. ``hold_out=N`` splits the folder for training and validation (:func:`held_out`):
    ``split="val"`` is N of its images (at most a tenth), ``split="train"`` the others. See
    ``RestorationDataset`` for the other arguments.
    """

    def __init__(
        self,
        root: str | Path,
        degradation: Degradation,
        skip_bad_files: bool = False,
        verify_files: bool = False,
        hold_out: int = 0,
        split: Literal["train", "val"] = "train",
        **kwargs: Any,
    ) -> None:
        self.root, sources = scan_images(root, verify_files, skip_bad_files)
        if hold_out:
            everything = len(sources)
            sources = held_out(sources, hold_out, split, self.root)
            if split == "val":
                log.info(
                    "validating on %d of the %d images of %s, held out of training (data.val_root=<dir> "
                    "validates on other images)",
                    len(sources),
                    everything,
                    self.root,
                )
        super().__init__(sources, degradation, **kwargs)


class SamplesDataset(RestorationDataset):
    """The embedded default: scikit-image's bundled colour photos, with a fixed train/val split.

    Train: astronaut, hubble_deep_field, immunohistochemistry, motorcycle_left/right, retina, rocket.
    Val: chelsea, coffee. No download is needed. See ``RestorationDataset`` for the other arguments.
    """

    def __init__(
        self,
        split: Literal["train", "val"],
        degradation: Degradation,
        cache: bool = True,
        **kwargs: Any,
    ) -> None:
        if split not in SKIMAGE_SPLITS:
            raise ValueError(f"split must be one of {sorted(SKIMAGE_SPLITS)}, got {split!r}")
        data_dir = Path(skimage.__file__).parent / "data"
        sources = []
        for name in SKIMAGE_SPLITS[split]:
            path = data_dir / SKIMAGE_PHOTOS[name]
            if not path.is_file():
                raise FileNotFoundError(f"scikit-image {skimage.__version__} does not bundle {path}")
            sources.append(ImageSource(path, name, read_header(path)))
        self.split = split
        super().__init__(sources, degradation, cache=cache, **kwargs)
