"""Tiled inference: placement and blending, the shared whole-image prior, sizes, and bounded memory."""

from __future__ import annotations

import math

import pytest
import skimage.data
import torch
import torch.nn.functional as F
from numerics import assert_float32_close, float32_tolerance
from torch import nn

from diffir.data import bicubic_downsample
from diffir.model_config import model_preset
from diffir.models import DiffIRS2, build_model
from diffir.restoration import estimate_prior, restore, restore_tiled, start_noise, tile_starts

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(task: str = "sr", stage: int = 2, scale: int = 4) -> DiffIRS2:
    torch.manual_seed(0)
    return build_model(task, stage, scale, **model_preset(task, "tiny")).eval()


@pytest.fixture(scope="module")
def sr_model() -> DiffIRS2:
    return tiny()


@pytest.fixture(scope="module")
def photo_lq() -> torch.Tensor:
    """A 48 x 64 LQ made from a real photo by the SR benchmark pipeline (random noise is no test of tiling)."""
    gt = torch.from_numpy(skimage.data.astronaut()[:192, 96:352].copy()).permute(2, 0, 1)[None] / 255.0
    return bicubic_downsample(gt, 4)


class PointwiseG(nn.Module):
    """A DIRformer stand-in without spatial context: nearest upsampling shifted by the prior's mean. Tiling it
    must reproduce the whole-image result exactly, so any misplaced or mis-weighted tile shows."""

    size_multiple = 8

    def __init__(self, scale: int, inp_channels: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.upscale = scale if scale > 1 else None  # what the model reads its scale from, as off a DIRformer
        self.inp_channels = inp_channels

    def forward(self, lq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lq[:, :3], scale_factor=self.scale, mode="nearest") + z.mean(1).view(-1, 1, 1, 1)


def record_calls(module: nn.Module) -> tuple[list[tuple[torch.Size, torch.Tensor | None]], object]:
    """Record (input shape, prior) of every call of ``module``."""
    calls: list[tuple[torch.Size, torch.Tensor | None]] = []

    def hook(_module: nn.Module, args: tuple) -> None:
        calls.append((args[0].shape, args[1].clone() if len(args) > 1 else None))

    return calls, module.register_forward_pre_hook(hook)


def test_tile_starts_cover_with_overlap():
    assert tile_starts(20, 32, 8) == [0]
    assert tile_starts(64, 32, 16) == [0, 16, 32]
    assert tile_starts(70, 32, 8) == [0, 24, 38]  # the last tile is aligned to the end


@pytest.mark.parametrize("task,scale", [("sr", 4), ("sr", 2), ("deblur", 1), ("inpainting", 1)])
def test_blending_is_exact_for_a_network_without_spatial_context(task, scale):
    model = tiny(task, 2, scale)
    model.G = PointwiseG(scale, 4 if task == "inpainting" else 3)
    lq = torch.rand(1, 4 if task == "inpainting" else 3, 45, 70)
    noise = start_noise(model, 1, seed=0)
    whole = restore(model, lq, noise=noise)
    tiled = restore_tiled(model, lq, tile=24, tile_overlap=8, noise=noise)
    assert tiled.shape == whole.shape == (1, 3, 45 * scale, 70 * scale)
    # The blend sums ≤ 4 weighted tiles (ε's of the output); the prior enters through z.mean(), pooled by the
    # tiled CPEN in another order than by the whole-image one: n·ε of |z| for the ≤ 48·80 padded pixels.
    z = estimate_prior(model, lq, noise)
    atol = float32_tolerance(4, float(whole.abs().max())) + float32_tolerance(48 * 80, float(z.abs().max()))
    torch.testing.assert_close(tiled, whole, rtol=0, atol=atol)


def test_one_tile_covering_the_image_is_restore(sr_model, photo_lq):
    noise = start_noise(sr_model, 1, seed=0)
    whole = restore(sr_model, photo_lq, noise=noise)
    tiled = restore_tiled(sr_model, photo_lq, tile=64, tile_overlap=8, noise=noise)
    # one tile, one G call: only the prior differs, the CPEN's 48·64 pixels summed tile by tile vs pooled by
    # AdaptiveAvgPool2d (on channels-last), and the output it modulates with it
    assert_float32_close(tiled, whole, terms=photo_lq.shape[-2] * photo_lq.shape[-1])


@pytest.fixture(scope="module")
def photo_runs(sr_model, photo_lq) -> dict:
    """The photo restored whole, tiled under the shared prior and tiled per tile, with G's calls recorded."""
    noise = start_noise(sr_model, 1, seed=0)
    runs = {
        "whole": restore(sr_model, photo_lq, noise=noise),
        "prior": estimate_prior(sr_model, photo_lq, noise),
    }
    for mode in ("global", "per_tile"):
        calls, handle = record_calls(sr_model.G)
        try:
            runs[mode] = restore_tiled(sr_model, photo_lq, 32, 16, noise=noise, prior=mode)
        finally:
            handle.remove()
        runs[f"{mode}_priors"] = [z for _, z in calls]
    return runs


def test_tiled_agrees_with_untiled_under_the_shared_prior(photo_runs):
    # The DIRformer's channel attention pools over the whole input, so tiles cannot match exactly; measured
    # with this model and photo: max |tiled - untiled| = 0.0034 (mean 0.00015) for 32-px tiles, 16 overlap.
    difference = (photo_runs["global"] - photo_runs["whole"]).abs()
    assert difference.max() < 0.005
    assert difference.mean() < 0.0003


def test_global_prior_is_shared_and_per_tile_priors_differ(photo_runs):
    shared, own = photo_runs["global_priors"], photo_runs["per_tile_priors"]
    assert len(shared) == len(own) == 2 * 3  # 48 x 64 in 32-px tiles with 16 overlap
    # one prior for all tiles; equal to the whole-image CPEN's up to the order it sums its 48·64 pooled pixels
    assert all(torch.equal(z, shared[0]) for z in shared)
    assert_float32_close(shared[0], photo_runs["prior"], terms=48 * 64)
    # each tile's own prior (another input) is farther from it than its tiled computation is (measured:
    # ≥ 2.8e-5 against ≤ 0.3 ε of the prior), and all differ
    gap = (shared[0] - photo_runs["prior"]).abs().max()
    assert all((z - photo_runs["prior"]).abs().max() > gap for z in own)
    assert len({tuple(z.flatten().tolist()) for z in own}) == len(own)
    # the same G on the same tiles in both modes: only the priors differ, so equal priors would give equal bits
    assert not torch.equal(photo_runs["per_tile"], photo_runs["global"])


@pytest.mark.parametrize("size", [(13, 29), (8, 8), (33, 17), (5, 70)])
@pytest.mark.parametrize("task,scale", [("sr", 4), ("sr", 2), ("inpainting", 1)])
def test_odd_sizes_return_their_size(task, scale, size):
    model = tiny(task, 2, scale)
    lq = torch.rand(1, 4 if task == "inpainting" else 3, *size)
    out = restore_tiled(model, lq, tile=12, tile_overlap=4)  # 12: not a multiple of 8 or 16
    assert out.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(out).all()


def test_memory_is_bounded_by_the_tile(sr_model):
    """Every DIRformer call sees one padded tile, and the CPEN trunk one tile plus its halo (or, with
    prior_max_side, a bounded copy): no activation of the image's size is ever computed (the output aside)."""
    lq = torch.rand(1, 3, 72, 100)
    g_calls, g_handle = record_calls(sr_model.G)
    c_calls, c_handle = record_calls(sr_model.condition.E[0])
    try:
        out = restore_tiled(sr_model, lq, tile=40, tile_overlap=8, prior_max_side=24)
    finally:
        g_handle.remove()
        c_handle.remove()
    assert out.shape == (1, 3, 288, 400)
    assert len(g_calls) == len(tile_starts(72, 40, 8)) * len(tile_starts(100, 40, 8)) == 2 * 3
    assert {tuple(shape[-2:]) for shape, _ in g_calls} == {(40, 40)}
    assert [tuple(shape[-2:]) for shape, _ in c_calls] == [
        (24, 24)
    ]  # 72x100 area-downscaled to 17x24, padded

    c_calls, c_handle = record_calls(sr_model.condition.E[0])
    try:
        restore_tiled(sr_model, lq, tile=40, tile_overlap=8)
    finally:
        c_handle.remove()
    bound = 40 + 2 * sr_model.condition.receptive_radius
    assert len(c_calls) > 1 and all(max(shape[-2:]) <= bound for shape, _ in c_calls)


def test_stage1_and_bad_arguments_are_refused(sr_model):
    lq = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="stage-2 model"):
        restore_tiled(tiny("sr", 1, 4), lq, tile=8, tile_overlap=2)
    with pytest.raises(ValueError, match="tile_overlap < tile"):
        restore_tiled(sr_model, lq, tile=8, tile_overlap=8)
    with pytest.raises(ValueError, match="per_tile"):
        restore_tiled(sr_model, lq, tile=8, tile_overlap=2, prior="local")


def test_start_noise_is_seeded(sr_model):
    assert torch.equal(start_noise(sr_model, 2, seed=3), start_noise(sr_model, 2, seed=3))
    assert not torch.equal(start_noise(sr_model, 1, seed=3), start_noise(sr_model, 1, seed=4))
    assert start_noise(sr_model, 1, seed=0).shape == (1, 4 * model_preset("sr", "tiny")["n_feats"])
    assert start_noise(tiny("sr", 1, 4), 1, seed=0) is None


@pytest.mark.parametrize("task,scale", [("sr", 4), ("sr", 2), ("deblur", 1), ("inpainting", 1)])
def test_tiled_cpen_gives_the_whole_image_prior(task, scale):
    """CPEN run tile by tile (with its receptive-radius halo) equals CPEN on the whole image."""
    from diffir.restoration import condition_tiled

    torch.manual_seed(0)
    model = build_model(task, 2, scale, **{**model_preset(task, "tiny"), "n_encoder_res": 3}).eval()
    lq = torch.rand(1, 4 if task == "inpainting" else 3, 72, 88)
    with torch.no_grad():
        whole = model.condition(lq)
        tiled = condition_tiled(model.condition, lq, tile=8)
    # the pool sums the trunk's pixels tile by tile vs at once (measured ≤ 0.8 ε·M)
    assert_float32_close(tiled, whole, terms=math.prod(model.condition.network_input(lq).shape[-2:]))
    assert model.condition.receptive_radius == 1 + 2 * 3 + 3
