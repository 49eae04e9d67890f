"""Where each dataset comes from: the official archives (URL, checksum, page, licence) and the routes that
map an archive member to its place under the data root (or skip it: only the needed files are extracted)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffir.io import is_image_file

Route = Callable[[str], "str | None"]


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


def folder_route(folder: str, dest: str) -> Route:
    """Images ``.../<folder>/<file>`` go to ``<dest>/<file>``."""

    def route(member: str) -> str | None:
        parts = member.split("/")
        return f"{dest}/{parts[-1]}" if parts[-2:-1] == [folder] and is_image_file(parts[-1]) else None

    return route


def _normalised(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def benchmark_route(name: str) -> Route:
    """HR images of an SR test set: ``.../<name>/HR/<file>`` (EDSR's benchmark.tar) or ``.../<name>/<file>``."""
    key = _normalised(name)

    def route(member: str) -> str | None:
        parts = member.split("/")
        for i, part in enumerate(parts[:-1]):
            rest = parts[i + 1 :]
            if _normalised(part) == key and (len(rest) == 1 or (len(rest) == 2 and rest[0].upper() == "HR")):
                return f"{name}/HR/{rest[-1]}" if is_image_file(rest[-1]) else None
        return None

    return route


_GOPRO_KINDS = {"blur": "input", "input": "input", "sharp": "target", "target": "target"}


def gopro_route(member: str) -> str | None:
    """``GOPRO_Large/<split>/<sequence>/{blur,sharp}/<frame>`` (official; ``blur_gamma`` unused) or Restormer's
    ``train/{input,target}/<file>``, ``test/GoPro/{input,target}/<file>`` -> ``GoPro/<split>/{input,target}``."""
    parts = member.split("/")
    if len(parts) < 3 or not is_image_file(parts[-1]) or _GOPRO_KINDS.get(parts[-2]) is None:
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


def hide_route(member: str) -> str | None:
    """Official ``HIDE_dataset/{GT,test/test-*}/<file>`` or Restormer's ``test/HIDE/{input,target}/<file>``:
    blurred test images to ``HIDE/test/input``, ground truth to ``HIDE/GT`` (paired by name afterwards)."""
    parts = member.split("/")
    if len(parts) < 2 or not is_image_file(parts[-1]):
        return None
    folder = parts[-2]
    hide_layout = len(parts) >= 3 and parts[-3].lower() == "hide"
    if folder == "GT" or (hide_layout and folder == "target"):
        return f"HIDE/GT/{parts[-1]}"
    if (folder.startswith("test-") and "test" in parts[:-2]) or (hide_layout and folder == "input"):
        return f"HIDE/test/input/{parts[-1]}"
    return None


def places_train_route(member: str) -> str | None:
    """``data_large/a/airfield/00000001.jpg`` -> ``Places365/train/a_airfield_00000001.jpg`` (flat: the file
    names repeat across categories, so the category stays in the name)."""
    parts = member.split("/")
    if len(parts) < 3 or not parts[0].startswith("data_large") or not is_image_file(parts[-1]):
        return None
    return "Places365/train/" + "_".join(parts[1:])


def celebahq_route(member: str) -> str | None:
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
    folder_route("DIV2K_train_HR", "DIV2K/DIV2K_train_HR"),
    url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
    checksum="sha256:9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
    expected=800,
)
DIV2K_VALID = Archive(
    "DIV2K_valid_HR.zip",
    DIV2K_PAGE,
    "DIV2K/DIV2K_valid_HR",
    folder_route("DIV2K_valid_HR", "DIV2K/DIV2K_valid_HR"),
    url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
    checksum="sha256:20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
    expected=100,
)
FLICKR2K = Archive(
    "Flickr2K.tar",
    "https://github.com/LimBee/NTIRE2017",
    "Flickr2K/Flickr2K_HR",
    folder_route("Flickr2K_HR", "Flickr2K/Flickr2K_HR"),
    url="https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",
    expected=2650,
)


def edsr_benchmark(name: str, count: int) -> Archive:
    return Archive(
        "benchmark.tar",
        "https://github.com/sanghyun-son/EDSR-PyTorch",
        f"{name}/HR",
        benchmark_route(name),
        url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        expected=count,
    )


def by_hand(filename: str, page: str, dest: str, route: Route, expected: int | None = None) -> Archive:
    return Archive(filename, page, dest, route, expected=expected)
