"""Every preparable dataset: its title, licence, archives, preprocessing, outputs and options (``--help``
prints this table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .builders import (
    BICUBIC_LR_SCALES,
    CELEBAHQ_MASK_SETS,
    PLACES_MASK_SETS,
    build_celebahq,
    build_df2k,
    build_div2k,
    build_gopro,
    build_hide,
    build_nothing,
    build_places,
)
from .sources import (
    DIV2K_TRAIN,
    DIV2K_VALID,
    FLICKR2K,
    Archive,
    benchmark_route,
    by_hand,
    celebahq_route,
    edsr_benchmark,
    folder_route,
    gopro_route,
    hide_route,
    places_train_route,
)


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


_LR_SUB = tuple(f"LR_bicubic_sub/X{s}" for s in BICUBIC_LR_SCALES)
_SR_TEST = "HR images only: the LR is made at evaluation time (mod-crop, MATLAB bicubic, 8 bits)."


def _sr_test_set(name: str, title: str, licence: str, archive: Archive) -> DatasetSpec:
    return DatasetSpec(title, licence, name, (archive,), build_nothing, (f"{name}/HR",), notes=_SR_TEST)


DATASETS: dict[str, DatasetSpec] = {
    "div2k": DatasetSpec(
        "DIV2K: 800 training + 100 validation 2K images",
        "academic research only (DIV2K / NTIRE 2017 terms)",
        "DIV2K",
        (DIV2K_TRAIN, DIV2K_VALID),
        build_div2k,
        (DIV2K_TRAIN.dest, DIV2K_VALID.dest, "DIV2K/HR_sub", *(f"DIV2K/{d}" for d in _LR_SUB)),
        products=("DIV2K/HR_sub", "DIV2K/LR_bicubic_sub"),
        notes="480 px HR sub-images (step 240) with MATLAB-bicubic LR x2/x3/x4 of each; DIV2K100 validation HR.",
    ),
    "df2k": DatasetSpec(
        "DF2K: DIV2K train (800) + Flickr2K (2650), the paper's SR training set",
        "DIV2K: academic research only; Flickr2K: Flickr images collected by the EDSR authors, research use",
        "DF2K",
        (DIV2K_TRAIN, FLICKR2K, DIV2K_VALID),
        build_df2k,
        (DIV2K_TRAIN.dest, FLICKR2K.dest, DIV2K_VALID.dest, "DF2K/HR_sub", *(f"DF2K/{d}" for d in _LR_SUB)),
        products=("DF2K",),
        notes="480 px HR sub-images (step 240) of both with MATLAB-bicubic LR x2/x3/x4; DIV2K100 validation HR.",
    ),
    "set5": _sr_test_set(
        "Set5", "Set5 (5 images)", "research benchmark (Bevilacqua et al. 2012)", edsr_benchmark("Set5", 5)
    ),
    "set14": _sr_test_set(
        "Set14", "Set14 (14 images)", "research benchmark (Zeyde et al. 2010)", edsr_benchmark("Set14", 14)
    ),
    "urban100": _sr_test_set(
        "Urban100",
        "Urban100 (100 images)",
        "research benchmark (Huang et al. 2015)",
        edsr_benchmark("Urban100", 100),
    ),
    "manga109": _sr_test_set(
        "Manga109",
        "Manga109 (109 images, the SR test set)",
        "academic use only, by request; redistribution not permitted (manga109.org)",
        by_hand(
            "Manga109.zip",
            "http://www.manga109.org/en/download.html",
            "Manga109/HR",
            benchmark_route("Manga109"),
            109,
        ),
    ),
    "general100": _sr_test_set(
        "General100",
        "General100 (100 images, FSRCNN)",
        "research use (Dong et al. 2016, FSRCNN)",
        by_hand(
            "General100.zip",
            "http://mmlab.ie.cuhk.edu.hk/projects/FSRCNN.html",
            "General100/HR",
            benchmark_route("General100"),
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
                gopro_route,
                url="https://huggingface.co/datasets/snah/GOPRO_Large/resolve/main/GOPRO_Large.zip",
                expected=6428,
            ),
        ),
        build_gopro,
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
        (by_hand("HIDE_dataset.zip", "https://github.com/joanshen0508/HA_deblur", "HIDE", hide_route),),
        build_hide,
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
                places_train_route,
                url="http://data.csail.mit.edu/places/places365/train_large_places365standard.tar",
                checksum="md5:67e186b496a84c929568076ed01a8aa1",
                expected=1803460,
            ),
            Archive(
                "val_large.tar",
                "http://places2.csail.mit.edu/download.html",
                "Places365/val_large",
                folder_route("val_large", "Places365/val_large"),
                url="http://data.csail.mit.edu/places/places365/val_large.tar",
                checksum="md5:9b71c4993ad89d2d8bcbdc4aef38042f",
                expected=36500,
            ),
        ),
        build_places,
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
            by_hand(
                "data256x256.zip",
                "https://drive.google.com/drive/folders/11Vz0fqHS2rXDb5pprgTjpD7S2BAJhi1P (LaMa's README)",
                "CelebA-HQ",
                celebahq_route,
                30000,
            ),
        ),
        build_celebahq,
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
