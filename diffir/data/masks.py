"""LaMa's random inpainting masks (irregular strokes and boxes), seeded with numpy ``Generator``s.

The generators reproduce ``saicinpainting/training/data/masks.py`` (the LaMa code DiffIR-inpainting uses)
with the ramp coefficient fixed at 1, as in DiffIR's training and in LaMa's mask-set generation. The
parameters keep LaMa's names and values so configs map one to one; the ramp's off-by-one effects are
applied here, not in the configs:

* irregular: ``min_times..max_times + 1`` "times" (e.g. 1-6 for ``min_times=1, max_times=5``);
* box: sizes ``bbox_min_size..bbox_max_size`` inclusive, ``min_times..max_times`` boxes.

Masks are float32 ``H x W`` arrays in {0, 1}, 1 marking the hole. Every generator is called as
``generator((height, width), rng)`` where ``rng`` is a ``np.random.Generator`` or an int seed, so a fixed
seed gives the same mask on every run and machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

RngLike = np.random.Generator | int | None


def irregular_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    max_angle: int = 4,
    max_len: int = 60,
    max_width: int = 20,
    min_times: int = 0,
    max_times: int = 10,
) -> np.ndarray:
    """LaMa's ``make_random_irregular_mask`` (LINE): ``min_times..max_times`` groups of 1-5 strokes.

    Each stroke starts where the previous one ended, has angle ``0.01 + randint(max_angle)`` rad (mirrored to
    ``2π - angle`` for even groups), length ``10 + randint(max_len)`` and width ``5 + randint(max_width)``.
    """
    height, width = shape
    mask = np.zeros((height, width), np.float32)
    for i in range(rng.integers(min_times, max_times + 1)):
        start_x, start_y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + rng.integers(5)):
            angle = 0.01 + rng.integers(max_angle)
            if i % 2 == 0:
                angle = 2 * 3.1415926 - angle
            length = 10 + rng.integers(max_len)
            brush_w = 5 + int(rng.integers(max_width))
            end_x = int(np.clip(np.int32(start_x + length * np.sin(angle)), 0, width))
            end_y = int(np.clip(np.int32(start_y + length * np.cos(angle)), 0, height))
            cv2.line(mask, (start_x, start_y), (end_x, end_y), 1.0, brush_w)
            start_x, start_y = end_x, end_y
    return mask


def box_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    margin: int = 10,
    bbox_min_size: int = 30,
    bbox_max_size: int = 100,
    min_times: int = 0,
    max_times: int = 3,
) -> np.ndarray:
    """LaMa's ``make_random_rectangle_mask``: ``min_times..max_times`` boxes, ``margin`` px from the border.

    ``bbox_max_size`` is exclusive, as in LaMa, and is also capped by the image size minus the margins; on
    images too small for ``bbox_min_size`` the minimum shrinks instead of failing.
    """
    height, width = shape
    hi = min(bbox_max_size, height - 2 * margin, width - 2 * margin)
    if hi < 2:
        raise ValueError(f"a {height}x{width} image is too small for box masks with margin {margin}")
    lo = min(bbox_min_size, hi - 1)
    mask = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(min_times, max_times + 1)):
        box_w, box_h = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        x0 = int(rng.integers(margin, width - margin - box_w + 1))
        y0 = int(rng.integers(margin, height - margin - box_h + 1))
        mask[y0 : y0 + box_h, x0 : x0 + box_w] = 1
    return mask


class IrregularMaskGenerator:
    """LaMa's ``RandomIrregularMaskGenerator`` at ramp coefficient 1: ``min_times..max_times + 1`` groups."""

    def __init__(
        self,
        max_angle: int = 4,
        max_len: int = 60,
        max_width: int = 20,
        min_times: int = 0,
        max_times: int = 10,
    ) -> None:
        self.kwargs = {
            "max_angle": max_angle,
            "max_len": max_len,
            "max_width": max_width,
            "min_times": min_times,
            "max_times": max_times + 1,  # LaMa: int(min_times + 1 + (max_times - min_times) * 1)
        }

    def __call__(self, shape: tuple[int, int], rng: RngLike = None) -> np.ndarray:
        return irregular_mask(shape, np.random.default_rng(rng), **self.kwargs)


class BoxMaskGenerator:
    """LaMa's ``RandomRectangleMaskGenerator`` at ramp coefficient 1: box sides in ``[min, max]``."""

    def __init__(
        self,
        margin: int = 10,
        bbox_min_size: int = 30,
        bbox_max_size: int = 100,
        min_times: int = 0,
        max_times: int = 3,
    ) -> None:
        self.kwargs = {
            "margin": margin,
            "bbox_min_size": bbox_min_size,
            # LaMa passes int(min + 1 + (max - min) * coef) on, used as an exclusive bound
            "bbox_max_size": bbox_max_size + 1,
            "min_times": min_times,
            "max_times": max_times,
        }

    def __call__(self, shape: tuple[int, int], rng: RngLike = None) -> np.ndarray:
        return box_mask(shape, np.random.default_rng(rng), **self.kwargs)


class MixedMaskGenerator:
    """LaMa's ``MixedMaskGenerator`` (irregular + box) with its mask sets' ``max_tamper_area`` rejection.

    The probabilities are renormalised, as in LaMa. A mask covering more than ``max_tamper_area`` of the image
    is redrawn; in distribution this is LaMa's "draw ``variants_n`` masks, drop the large ones, keep one at
    random, retry up to 10 times", and it gives up after ``max_attempts`` draws (LaMa: 5 x 10).
    """

    def __init__(
        self,
        irregular_proba: float = 1.0,
        irregular_kwargs: Mapping[str, Any] | None = None,
        box_proba: float = 1.0,
        box_kwargs: Mapping[str, Any] | None = None,
        max_tamper_area: float = 1.0,
        max_attempts: int = 50,
    ) -> None:
        self.generators: dict[str, IrregularMaskGenerator | BoxMaskGenerator] = {}
        probas = []
        if irregular_proba > 0:
            self.generators["irregular"] = IrregularMaskGenerator(**(irregular_kwargs or {}))
            probas.append(irregular_proba)
        if box_proba > 0:
            self.generators["box"] = BoxMaskGenerator(**(box_kwargs or {}))
            probas.append(box_proba)
        if not probas:
            raise ValueError("MixedMaskGenerator needs irregular_proba > 0 or box_proba > 0")
        self.probas = np.asarray(probas, np.float64) / sum(probas)
        self.max_tamper_area = max_tamper_area
        self.max_attempts = max_attempts

    def __call__(self, shape: tuple[int, int], rng: RngLike = None) -> np.ndarray:
        return self.sample(shape, rng)[0]

    def sample(self, shape: tuple[int, int], rng: RngLike = None) -> tuple[np.ndarray, str]:
        """Return ``(mask, kind)`` with ``kind`` the generator used: ``"irregular"`` or ``"box"``."""
        rng = np.random.default_rng(rng)
        kinds = list(self.generators)
        for _ in range(self.max_attempts):
            kind = kinds[rng.choice(len(kinds), p=self.probas)]
            mask = self.generators[kind](shape, rng)
            if mask.mean() <= self.max_tamper_area:
                return mask, kind
        raise RuntimeError(
            f"no mask of {shape[0]}x{shape[1]} covered at most {self.max_tamper_area:.0%} of the image "
            f"in {self.max_attempts} draws; the mask parameters are too large for this size"
        )


# DiffIR / LaMa training mix (configs/training/data/abl-04-256-mh-dist.yaml): irregular 0.5, box 0.5.
TRAIN_MASK_CONFIG: dict[str, Any] = {
    "irregular_proba": 1,
    "irregular_kwargs": {"max_angle": 4, "max_len": 200, "max_width": 100, "min_times": 1, "max_times": 5},
    "box_proba": 1,
    "box_kwargs": {"margin": 10, "bbox_min_size": 30, "bbox_max_size": 150, "min_times": 1, "max_times": 4},
}


def _eval_config(
    irregular: tuple[int, int, int, int], box: tuple[int, int, int, int, int] | None
) -> dict[str, Any]:
    min_times, max_times, max_width, max_len = irregular
    config: dict[str, Any] = {
        "irregular_proba": 1,
        "irregular_kwargs": {
            "max_angle": 4,
            "max_len": max_len,
            "max_width": max_width,
            "min_times": min_times,
            "max_times": max_times,
        },
        "box_proba": 0,
        "max_tamper_area": 0.5,
    }
    if box is not None:
        min_size, max_size, min_times, max_times, margin = box
        config["box_proba"] = 0.3
        config["box_kwargs"] = {
            "margin": margin,
            "bbox_min_size": min_size,
            "bbox_max_size": max_size,
            "min_times": min_times,
            "max_times": max_times,
        }
    return config


# LaMa's configs/data_gen/random_{thick,thin,medium}_{256,512}.yaml (irregular proba 1, box proba 0.3).
# irregular: (min_times, max_times, max_width, max_len);
# box: (min_size, max_size, min_times, max_times, margin)
EVAL_MASK_CONFIGS: dict[str, dict[str, Any]] = {
    "thick_256": _eval_config((1, 5, 100, 200), (30, 150, 1, 3, 10)),
    "thin_256": _eval_config((4, 50, 10, 40), None),
    "medium_256": _eval_config((4, 5, 50, 100), (10, 50, 1, 5, 0)),
    "thick_512": _eval_config((1, 5, 250, 450), (30, 300, 1, 4, 10)),
    "thin_512": _eval_config((4, 70, 20, 100), None),
    "medium_512": _eval_config((4, 10, 100, 200), (30, 150, 1, 5, 0)),
}


def lama_mask_generator(preset: str = "train") -> MixedMaskGenerator:
    """Build a LaMa preset by name: ``train`` or one of the evaluation sets ``{thick,thin,medium}_{256,512}``.

    For Hydra: ``{_target_: diffir.data.masks.lama_mask_generator, preset: thick_512}``.
    """
    if preset == "train":
        return MixedMaskGenerator(**TRAIN_MASK_CONFIG)
    if preset not in EVAL_MASK_CONFIGS:
        raise ValueError(
            f"unknown mask preset {preset!r}; choose 'train' or one of {sorted(EVAL_MASK_CONFIGS)}"
        )
    return MixedMaskGenerator(**EVAL_MASK_CONFIGS[preset])
