"""Restoring images of any size: reflect-pad to the model's multiple and crop back (as the official tests do),
or restore overlapping tiles under one whole-image prior when the image does not fit in memory.

DiffIR's prior (the IPR) is one global vector per image (CPEN ends in a global average pool), so restoring
tiles independently would give every tile its own prior and visibly different restorations. Tiled
inference therefore estimates ẑ once on the whole LQ (optionally on a downscaled copy) and runs only the
DIRformer ``G(tile, ẑ)`` per tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from .errors import UsageError
from .models import CPEN, DiffIRS1, DiffIRS2
from .onnx_runtime import OnnxModel

if TYPE_CHECKING:
    from .baselines import PixelDiffusion

PriorMode = Literal["global", "per_tile"]
TileProgress = Callable[[int, int], None]  # (tiles done, tiles in all): the app's progress bar


def reflect_indices(
    size: int | torch.Tensor, length: int | torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Indices of ``length`` pixels along an axis of ``size`` pixels mirrored at its ends, the edge pixel not
    repeated (0, 1, …, size−1, size−2, …, 1, 0, 1, …): what repeated ``F.pad(mode="reflect")`` steps (each
    at most size−1) compute; a 1-pixel axis repeats its pixel. ``size`` may be a traced size (ONNX export)."""
    period = 2 * size - 2
    period = (period if isinstance(period, torch.Tensor) else torch.tensor(period)).to(device)
    index = torch.arange(length, device=device) % period.clamp(min=1)
    return torch.minimum(index, period - index)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom and right of ``x`` to a multiple of ``multiple``; returns the original (H, W).

    One gather per axis (:func:`reflect_indices`), so any size pads in one step, also inside an exported graph
    whose sizes are symbolic: small images are mirrored back and forth; a side of one pixel is replicated.
    """
    h, w = x.shape[-2:]
    for dim, size in ((-2, h), (-1, w)):
        length = (size + multiple - 1) // multiple * multiple
        if torch.jit.is_tracing() or length != size:  # traced sizes are symbolic: always gather
            x = x.index_select(dim, reflect_indices(size, length, x.device))
    return x, (h, w)


def check_input(model: DiffIRS1 | DiffIRS2, lq: torch.Tensor, gt: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` naming the problem for an input the model cannot restore: not an (N, C, H, W)
    floating tensor of the model's dtype with the model's input channels, or a stage-1 model without GT."""
    if not isinstance(lq, torch.Tensor):
        raise ValueError(f"lq must be a torch.Tensor of shape (N, C, H, W), got {type(lq).__name__}")
    if lq.dim() != 4:
        hint = " (add the batch dimension: lq[None])" if lq.dim() == 3 else ""
        raise ValueError(f"lq must have shape (N, C, H, W), got {tuple(lq.shape)}{hint}")
    dtype = next(model.parameters()).dtype
    if not lq.is_floating_point():
        raise ValueError(
            f"lq has dtype {lq.dtype}; the model takes {dtype} values in [0, 1] (e.g. lq.to({dtype}) / 255)"
        )
    if lq.dtype != dtype:
        raise ValueError(f"lq has dtype {lq.dtype} but the model's weights are {dtype}: pass lq.to({dtype})")
    if lq.shape[1] != model.in_channels:
        what = "masked RGB and the mask" if model.in_channels == 4 else "RGB"
        raise ValueError(
            f"lq has {lq.shape[1]} channels; this model takes {model.in_channels} ({what}), shape (N, C, H, W)"
        )
    if min(lq.shape[-2:]) < 1 or lq.shape[0] < 1:
        raise ValueError(f"lq is empty: shape {tuple(lq.shape)}")
    if isinstance(model, DiffIRS1):
        if gt is None:
            raise ValueError(
                "a stage-1 model needs the ground truth (gt=) to extract its prior: it is the oracle teacher "
                "of stage 2; use a stage-2 model to restore images without their GT"
            )
        want = (lq.shape[0], 3, lq.shape[-2] * model.scale, lq.shape[-1] * model.scale)
        if tuple(gt.shape) != want:
            raise ValueError(
                f"gt must have shape {want} (the LQ's size x{model.scale}), got {tuple(gt.shape)}"
            )


@torch.inference_mode()
def restore(
    model: DiffIRS1 | DiffIRS2,
    lq: torch.Tensor,
    gt: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a model on an LQ batch of any H×W and return an output of exactly (H·s, W·s), s = ``model.scale``.

    Stage 1 needs ``gt`` (it is an oracle); stage 2 starts its reverse diffusion from ``noise`` when given.
    """
    check_input(model, lq, gt)
    return restore_unchecked(model, lq, gt, noise)


def restore_unchecked(
    model: DiffIRS1 | DiffIRS2,
    lq: torch.Tensor,
    gt: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`restore` without its input checks and inference mode: what ``diffir.export`` traces."""
    multiple, scale = model.size_multiple, model.scale
    lq_padded, (h, w) = pad_to_multiple(lq, multiple)
    if isinstance(model, DiffIRS1):
        gt_padded, _ = pad_to_multiple(gt, multiple * scale)
        out, _ = model(lq_padded, gt_padded)
    else:
        out, _ = model(lq_padded, noise=noise)
    return out[..., : h * scale, : w * scale]


def inpainting_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The 4-channel network input ``cat[image·(1−mask), mask]`` (as ``InpaintingDegradation`` makes it)."""
    return torch.cat([image * (1 - mask), mask], dim=1)


def composite(restored: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LaMa's ``inpainted`` output: the prediction in the holes, the known pixels elsewhere."""
    return restored * mask + image * (1 - mask)


def restore_image(
    model: DiffIRS1 | DiffIRS2 | OnnxModel,
    image: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    gt: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    prior: PriorMode = "global",
    prior_max_side: int | None = None,
    progress: TileProgress | None = None,
) -> torch.Tensor:
    """One restoration as ``infer.py`` writes it: for inpainting the input ``cat[image·(1−mask), mask]`` and
    the composite with the known pixels; whole (:func:`restore`) or tiled (:func:`restore_tiled`, which
    reports each finished tile to ``progress``). An ONNX graph (:class:`~diffir.onnx_runtime.OnnxModel`)
    does all of it inside, on whole images."""
    if isinstance(model, OnnxModel):
        if tile:
            raise ValueError(f"{model.path} is an ONNX graph, which restores whole images: drop tile=")
        return model(image, mask=mask, noise=noise)
    lq = image if mask is None else inpainting_input(image, mask)
    if tile:
        out = restore_tiled(model, lq, tile, tile_overlap, noise, prior, prior_max_side, progress)
    else:
        out = restore(model, lq, gt=gt, noise=noise)
    return out if mask is None else composite(out, image, mask)


def start_noise(
    model: DiffIRS1 | DiffIRS2 | OnnxModel, batch: int, seed: int, device: torch.device | str | None = None
) -> torch.Tensor | None:
    """The Gaussian start vector of the reverse diffusion drawn from ``seed``, so a stage-2 restoration is
    reproducible; None for models without a diffusion (stage 1, the no-diffusion ablation). ``model`` may
    also be an ONNX graph (:class:`diffir.onnx_runtime.OnnxModel`): the same vector for the same seed."""
    dim = getattr(model, "noise_dim", None)
    if dim is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=generator).to(device)


def seeded_noise(model: DiffIRS2 | PixelDiffusion, seed: int, device: torch.device) -> torch.Tensor | None:
    """Seed torch (models with ``reverse_noise`` draw from it) and draw the prior's start vector from
    ``seed``: what a run does before its first image, so the app and ``infer.py`` restore alike."""
    torch.manual_seed(seed)
    return start_noise(model, 1, seed, device)


@torch.inference_mode()
def restore_one(
    model: DiffIRS2 | PixelDiffusion,
    image: torch.Tensor,
    mask: torch.Tensor | None,
    noise: torch.Tensor | None,
    device: torch.device,
    *,
    gt: torch.Tensor | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    prior: PriorMode = "global",
    prior_max_side: int | None = None,
    pixel: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: TileProgress | None = None,
) -> torch.Tensor:
    """The restoration of one image (1, 3, H, W), moved to the model's ``device``, as ``infer.py`` writes it
    (with :func:`diffir.io.save_png`) and the app shows it: ``pixel`` is the sampler of an SR3 / cDDPM
    checkpoint, else DiffIR's :func:`restore_image` (``progress`` hears of each tile; a stage-1 oracle takes
    the ``gt``)."""
    image = image.to(device)
    mask = None if mask is None else mask.to(device)
    gt = None if gt is None else gt.to(device)
    if pixel is not None:
        lq = image if mask is None else inpainting_input(image, mask)
        return pixel(lq) if mask is None else composite(pixel(lq), image, mask)
    return restore_image(
        model,
        image,
        mask=mask,
        gt=gt,
        noise=noise,
        tile=tile,
        tile_overlap=tile_overlap,
        prior=prior,
        prior_max_side=prior_max_side,
        progress=progress,
    )


@torch.inference_mode()
def condition_tiled(cpen: CPEN, lq: torch.Tensor, tile: int) -> torch.Tensor:
    """CPEN_S2's output on a whole image, computed tile by tile: exact and with memory bounded by the tile.

    The trunk before CPEN's global average pool is local (3×3 convolutions, zero-padded at the image border),
    so each tile is run with a halo of its receptive radius, the halo's features are dropped and the core's
    are summed; the sum over all tiles divided by the pixel count is the global pool.
    """
    x = cpen.network_input(lq)
    trunk, halo = cpen.E[:-1], cpen.receptive_radius
    h, w = x.shape[-2:]
    total = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            top, left = max(0, y0 - halo), max(0, x0 - halo)
            window = x[..., top : min(h, y1 + halo), left : min(w, x1 + halo)]
            core = trunk(window)[..., y0 - top : y1 - top, x0 - left : x1 - left].sum(dim=(-2, -1))
            total = core if total is None else total + core
    return cpen.mlp(total / (h * w))


@torch.inference_mode()
def estimate_prior(
    model: DiffIRS2,
    lq: torch.Tensor,
    noise: torch.Tensor | None = None,
    max_side: int | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """ẑ of a whole LQ image, padded as :func:`restore` pads it.

    With ``tile`` the CPEN runs tile by tile (:func:`condition_tiled`): the same ẑ with memory bounded by
    the tile. With ``max_side`` a larger image is first area-downscaled so its longer side is ``max_side``
    (cheaper still, but the prior is then seen at another resolution).
    """
    h, w = lq.shape[-2:]
    if max_side is not None and max(h, w) > max_side:
        factor = max_side / max(h, w)
        lq = F.interpolate(lq, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="area")
    padded, _ = pad_to_multiple(lq, model.size_multiple)
    c = condition_tiled(model.condition, padded, tile) if tile else None
    return model.estimate_prior(padded, noise=noise, c=c)[-1]


def check_tiling(tile: int, tile_overlap: int, prior: str = "global") -> None:
    """Raise ``ValueError`` for arguments :func:`restore_tiled` cannot use (callers check before a long run)."""
    if tile <= 0 or not 0 <= tile_overlap < tile:
        raise ValueError(
            f"need tile > 0 and 0 <= tile_overlap < tile, got tile={tile}, tile_overlap={tile_overlap}"
        )
    if prior not in ("global", "per_tile"):
        raise ValueError(f"prior must be 'global' or 'per_tile', got {prior!r}")


def check_tiling_config(cfg: Any) -> None:
    """Bad ``tile=`` / ``tile_overlap=`` / ``prior=`` values of a run's config fail before any image is
    processed, as a :class:`~diffir.errors.UsageError`."""
    if cfg.tile:
        try:
            check_tiling(cfg.tile, cfg.tile_overlap, cfg.prior)
        except ValueError as err:
            raise UsageError(f"tiling: {err}") from err


def check_tile_size(tile: int | None, model: DiffIRS1 | DiffIRS2 | OnnxModel, path: str | Path) -> None:
    """``tile=`` below the model's size multiple is refused: every tile would be padded up to the multiple,
    so a 1-pixel tile runs the network once per LQ pixel (about a minute for a small image). An ONNX graph
    restores whole images (its prior is estimated inside it, on the whole input): no tiles."""
    if tile and isinstance(model, OnnxModel):
        raise UsageError(
            f"tile={tile}: {path} is an ONNX graph, which restores whole images (the prior of the whole image "
            "is estimated inside it): drop tile=, or use the PyTorch checkpoint for tiled inference"
        )
    if tile and tile < model.size_multiple:
        raise UsageError(
            f"tile={tile} is smaller than the size multiple {model.size_multiple} of {path} (tiles are "
            f"padded to it): use tile>={model.size_multiple}, a few hundred LQ pixels in practice, or no tile="
        )


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` in common;
    the last tile is aligned to the end (so it may overlap its neighbour more)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def _axis_weights(
    starts: list[int], length: int, tile: int, ramp: int, scale: int, like: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-tile 1-D blending weights along one axis (in output pixels) and their sum over the tiles.

    Each weight is 1 inside the tile and rises / falls along a raised-cosine ramp of ``ramp`` pixels on
    the sides shared with a neighbour (strictly positive, so every pixel has weight); image borders keep 1.
    """
    size = min(tile, length) * scale
    n = min(ramp, size)
    positions = torch.arange(n, dtype=like.dtype, device=like.device) + 0.5
    edge = torch.sin(0.5 * math.pi * positions / max(n, 1)) ** 2
    weights, total = [], like.new_zeros(length * scale)
    for start in starts:
        weight = like.new_ones(size)
        if n and start > 0:
            weight[:n] = edge
        if n and start + tile < length:
            weight[-n:] = torch.minimum(weight[-n:], edge.flip(0))
        total[start * scale : start * scale + size] += weight
        weights.append(weight)
    return weights, total


@torch.inference_mode()
def restore_tiled(
    model: DiffIRS2,
    lq: torch.Tensor,
    tile: int,
    tile_overlap: int,
    noise: torch.Tensor | None = None,
    prior: PriorMode = "global",
    prior_max_side: int | None = None,
    progress: TileProgress | None = None,
) -> torch.Tensor:
    """Restore ``lq`` (B, C, H, W) tile by tile; the output is exactly (H·s, W·s), s = ``model.scale``.

    Tiles of ``tile`` LQ pixels overlap by ``tile_overlap``; each is padded to ``model.size_multiple`` like
    :func:`restore`, restored by ``model.G`` and blended into the output with a separable raised-cosine
    window, one tile at a time, so the DIRformer's memory is that of one tile whatever the image size.
    ``prior="global"`` estimates ẑ once for the whole image and shares it across tiles (the CPEN also runs
    tile by tile, exactly, so memory stays bounded; or on a copy of at most ``prior_max_side`` pixels a side:
    see :func:`estimate_prior`);
    ``"per_tile"`` estimates one per tile (bounded CPEN memory too, but each tile is then restored under
    a different prior). ``noise`` is the diffusion's start vector (:func:`start_noise`); ``progress`` is
    called with (tiles done, tiles in all) after each tile.
    """
    if isinstance(model, DiffIRS1):
        raise ValueError(
            "tiled inference needs a stage-2 model: a stage-1 model extracts its prior from the ground truth "
            "(it is the oracle teacher of stage 2), so use restore(model, lq, gt=...) on whole images instead"
        )
    if not isinstance(model, DiffIRS2):
        raise TypeError(f"expected a DiffIRS2 model, got {type(model).__name__}")
    check_tiling(tile, tile_overlap, prior)
    check_input(model, lq)

    h, w, scale = *lq.shape[-2:], model.scale
    z = estimate_prior(model, lq, noise, prior_max_side, tile=tile) if prior == "global" else None
    ys, xs = tile_starts(h, tile, tile_overlap), tile_starts(w, tile, tile_overlap)
    wy, norm_y = _axis_weights(ys, h, tile, tile_overlap * scale, scale, lq)
    wx, norm_x = _axis_weights(xs, w, tile, tile_overlap * scale, scale, lq)
    # Tiles form a full grid and each window is an outer product, so the windows sum to norm_y ⊗ norm_x.

    out: torch.Tensor | None = None
    done, total = 0, len(ys) * len(xs)
    for y, weight_y in zip(ys, wy, strict=True):
        for x, weight_x in zip(xs, wx, strict=True):
            patch = lq[..., y : y + tile, x : x + tile]
            padded, (th, tw) = pad_to_multiple(patch, model.size_multiple)
            z_tile = z if z is not None else model.estimate_prior(padded, noise=noise)[-1]
            restored = model.G(padded, z_tile)[..., : th * scale, : tw * scale]
            if out is None:
                out = lq.new_zeros(lq.shape[0], restored.shape[1], h * scale, w * scale)
            weight = weight_y[:, None] * weight_x[None, :]
            out[..., y * scale : (y + th) * scale, x * scale : (x + tw) * scale] += restored * weight
            done += 1
            if progress is not None:
                progress(done, total)
    return out.div_(norm_y[:, None] * norm_x[None, :])
