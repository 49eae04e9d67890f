"""Image files: listing, reading (8/16-bit, greyscale, palette, RGBA) and writing PNGs, inpainting masks.

One module for every reader and writer of images: the training datasets, dataset preparation, ``eval.py``,
``infer.py`` and the demo. It sits below ``diffir.data`` (which imports it) and imports nothing of the
package but :mod:`diffir.errors`, so any part of the package may use it.

Arrays are ``H x W x 3`` RGB in the file's own precision (:func:`read_rgb`) or float32 in [0, 1]
(:func:`load_image`); tensors are ``(1, 3, H, W)`` float in [0, 1] (:func:`read_image`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import StorageError, UsageError

log = logging.getLogger("diffir")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
EXIF_ORIENTATION = 0x0112  # the EXIF tag of how a viewer turns the stored pixels upright

# The bytes that end a complete file; a truncated download or copy lacks them.
_END_MARKERS = {"PNG": b"IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}


def is_image_file(name: str | Path) -> bool:
    """A visible file with one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    name = Path(name).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def list_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, following symlinks, sorted), skipping hidden files and folders
    and the folder ``exclude`` (a run's output inside its input folder: its results are not inputs)."""
    skip = None if exclude is None else Path(exclude).expanduser().resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and Path(dirpath, d).resolve() != skip
        )
        found += [Path(dirpath, f) for f in sorted(filenames) if is_image_file(f)]
    return found


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 = stored upright) of an open image, 1 when it has none."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # an eXIf chunk after the pixels: PIL would decode the whole image to find it
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not make the picture unreadable
        return 1
    return value if value in range(1, 9) else 1


def file_orientation(path: str | Path) -> int:
    """The EXIF orientation of an image file (1 when it has none or cannot be read here)."""
    try:
        with Image.open(path) as img:
            return orientation(img)
    except Exception:  # noqa: BLE001 - the decoder that reads the pixels reports a broken file
        return 1


def upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The stored ``H x W [x C]`` pixels turned as a viewer shows them (EXIF orientation 1-8; what
    ``PIL.ImageOps.exif_transpose`` does, for any dtype)."""
    if orientation in (5, 6, 7, 8):  # the four that swap height and width
        arr = np.swapaxes(arr, 0, 1)  # transpose; then 5 done, 6 = flip the columns, 8 = flip the rows
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation in (2, 3):
        arr = arr[:, ::-1]
    if orientation in (3, 4):
        arr = arr[::-1]
    return np.ascontiguousarray(arr)


def _has_end_marker(path: str | Path, image_format: str | None) -> bool:
    """Whether a PNG / JPEG file ends with its end marker (a few trailing bytes tolerated); other formats: True."""
    marker = _END_MARKERS.get(image_format or "")
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        return marker in f.read()


def read_header(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header, plus a cheap completeness check: only the last bytes are read;
    a PNG or JPEG without its end marker (truncated) is decoded, which raises if it is really broken.

    Damage inside a file with an intact end is not seen here: :class:`DecodeCheck` decodes whole files.
    """
    with Image.open(path) as img:
        width, height = img.size
        if not _has_end_marker(path, img.format):
            img.load()
        if orientation(img) in (5, 6, 7, 8):  # shown turned a quarter: the viewer's height is the width
            width, height = height, width
    return height, width


class DecodeCheck:
    """Decode each file once to find the broken ones, remembering the files that decoded by relative path,
    size and modification time (a small JSON file per folder under ``$DIFFIR_CACHE_DIR``, default
    ``~/.cache/diffir``), so the next runs decode only new or changed files.

    It catches what the decoders report: a PNG with a bad zlib stream or CRC, a JPEG whose entropy-coded
    data is garbled ("broken data stream"). libjpeg *recovers* from some damage (e.g. a run of zero bytes,
    "premature end of data segment") with a warning that PIL does not pass on: such a JPEG decodes to a
    partly grey picture and is not caught by any check short of comparing pixels.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        cache_dir = Path(os.environ.get("DIFFIR_CACHE_DIR", Path.home() / ".cache" / "diffir"))
        self.file = cache_dir / "decoded" / f"{hashlib.sha256(str(self.root).encode()).hexdigest()[:20]}.json"
        try:
            self.known: dict[str, list[int]] = json.loads(self.file.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            self.known = {}
        self.changed = False

    def __call__(self, path: Path) -> None:
        """Raise the decoder's error unless ``path`` decodes, or decoded before and is unchanged."""
        stat = path.stat()
        key, stamp = Path(path).resolve().relative_to(self.root).as_posix(), [stat.st_size, stat.st_mtime_ns]
        if self.known.get(key) == stamp:
            return
        _decode_rgb(path)  # the decoder's own error: the caller names the file
        self.known[key] = stamp
        self.changed = True

    def save(self) -> None:
        """Remember the files that decoded (best effort: a read-only cache only costs decoding again)."""
        if self.changed:
            with contextlib.suppress(OSError):
                write_atomic(self.file, json.dumps({"root": str(self.root), "files": self.known}).encode())


def _decode_rgb(path: Path) -> np.ndarray:
    """The pixels as a viewer shows them: EXIF orientation applied, the first frame of an animation."""
    with Image.open(path) as img:
        rawmode = img.tile[0][3] if img.tile else ""  # decoder args: "RGB;16B" or ("RGB;16N", ...)
        turn = orientation(img)
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            log.warning("%s is animated (%d frames): using its first frame", path, frames)
        if img.mode in ("RGB", "RGBA") and ";16" in str(rawmode):
            # 16-bit colour PNG/TIFF: PIL would truncate to 8 bits, OpenCV keeps 16 (as BGR[A]).
            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # stored orientation, turned below
            if arr is None:
                raise OSError("OpenCV could not decode the 16-bit image")
            return upright(arr[..., 2::-1], turn)
        if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit greyscale
            arr = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        elif img.mode == "F":
            arr = np.clip(np.asarray(img, np.float32), 0, 1)
        else:  # 1, L, LA, P, PA, RGBA, CMYK, YCbCr, ...: 8-bit RGB, alpha dropped (as PIL and cv2.imread do)
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")  # palette transparency must go through RGBA
            arr = np.asarray(img.convert("RGB"))
    return upright(np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr, turn)


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode to an RGB ``H x W x 3`` array in the file's own precision (uint8, uint16 or float32).

    Any decoding failure is an ``OSError`` naming the file (data-loader workers otherwise hide which one).
    """
    try:
        return _decode_rgb(Path(path))
    except Exception as err:  # PIL / OpenCV raise OSError, SyntaxError, ValueError, ... on broken files
        raise OSError(f"cannot decode image {path}: {type(err).__name__}: {err}") from err


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float to float32 in [0, 1] (dividing by the type's peak value)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32)


def load_image(path: str | Path) -> np.ndarray:
    """Load any supported image as RGB float32 ``H x W x 3`` in [0, 1].

    Greyscale is replicated to 3 channels, palettes are expanded, alpha is dropped and 16-bit files keep
    their precision.
    """
    return to_float(read_rgb(path))


def read_image(path: Path) -> tuple[torch.Tensor, int]:
    """``(image, bits)``: a (1, 3, H, W) float tensor in [0, 1] (as :func:`load_image`) and the file's bit
    depth (8 or 16); an unreadable file is a :class:`UsageError` naming it."""
    try:
        raw = read_rgb(path)
    except OSError as err:
        raise UsageError(str(err)) from err
    bits = 16 if raw.dtype == np.uint16 else 8
    return torch.from_numpy(to_float(raw).transpose(2, 0, 1).copy())[None], bits


def find_images(path: str | Path, exclude: Path | None = None) -> list[tuple[Path, str]]:
    """``(file, name)`` pairs: one file, or every image under a folder (recursive; name = relative path
    without extension), leaving out the folder ``exclude`` (the run's own output)."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UsageError(f"{path} is not a supported image ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return [(path, path.stem)]
    if not path.is_dir():
        raise UsageError(f"input {path} ({path.absolute()}) does not exist")
    files = list_images(path, exclude)
    if not files:
        raise UsageError(
            f"input folder {path} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))}, searched recursively)"
        )
    return [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]


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


def require_writable_dir(path: str | Path, option: str, value: str | Path | None = None) -> Path:
    """``path`` (expanded) if it is, or can be made, a folder this process can write in: a regular file at it
    or above it, or a nearest existing folder that refuses new files (read-only file system, no permission),
    is a :class:`StorageError` naming that file or folder and the option (``output=``, ``output_dir=``,
    ``paths.experiments_dir=``) to change; ``value`` is the option's value when ``path`` is a folder under it."""
    path = Path(path).expanduser()
    given = f"{option}{path if value is None else value}"
    existing = next(p for p in (path, *path.parents) if p.exists())  # "/" or "." at the latest
    if not existing.is_dir():
        raise StorageError(f"{given} cannot be a folder: {existing} is a file; choose another {option}")
    try:
        with tempfile.TemporaryFile(dir=existing):  # what counts: can a file be made there (ro mounts, ACLs)
            pass
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
        raise StorageError(
            f"{given}: cannot write in {existing} ({reason}); choose a writable folder with {option}<dir>"
        ) from err
    return path


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file whose content replaces ``path`` only when the block ends without error: written to a
    hidden ``.<name>.<random>.tmp`` beside it, then renamed, so a crash never leaves half a file (parents are
    created). ``durable`` flushes it to the disk first (fsync, ~5 ms: for checkpoints and manifests, not for
    each of 100k prepared images)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make checkpoints and images private
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it, so set back at once): the permissions ``open`` would give."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | IO[bytes], durable: bool = True) -> None:
    """``data`` (bytes or a readable binary stream) into ``path`` through :func:`atomic_writer`."""
    with atomic_writer(path, durable) as f:
        if isinstance(data, bytes):
            f.write(data)
        else:
            shutil.copyfileobj(data, f, 1 << 20)


def save_png(image: torch.Tensor, path: Path, bits: int = 8) -> None:
    """Write a (3, H, W) or (1, 3, H, W) [0, 1] tensor as an 8- or 16-bit RGB PNG (parents created)."""
    peak, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    array = (image.detach().float().squeeze(0).clamp(0, 1) * peak).round().cpu().numpy()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err}") from err
    if not cv2.imwrite(str(path), array.astype(dtype).transpose(1, 2, 0)[..., ::-1]):
        raise UsageError(f"could not write {path}")
