"""The front door: ``diffir.load`` / ``diffir.restore`` / ``diffir.build_model``, its examples, and the inputs it
refuses with a ``ValueError`` instead of a wrong image or an error from inside torch."""

from __future__ import annotations

import doctest

import pytest
import torch
from numerics import assert_float32_close

import diffir
import diffir.api
import diffir.tasks
from diffir.checkpoint import CheckpointError, atomic_save, model_record
from diffir.model_config import model_config
from diffir.restoration import pad_to_multiple, restore


def tiny(task: str, stage: int = 2, scale: int = 1):
    torch.manual_seed(0)
    return diffir.build_model(task, stage, scale, **diffir.model_preset(task, "tiny")).eval()


@pytest.fixture(scope="module")
def sr4():
    return tiny("sr", 2, 4)


@pytest.mark.parametrize("module", [diffir.api, diffir.tasks], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize("task,scale", [("sr", 4), ("sr", 2), ("sr", 1), ("deblur", 1)])
def test_the_model_knows_its_scale(task, scale):
    """The whole output, not its top-left corner: (H·s, W·s) with s from the model."""
    model = tiny(task, 2, scale)
    assert model.scale == scale
    lq = torch.rand(2, 3, 13, 21)
    out = diffir.restore(model, lq)
    assert out.shape == (2, 3, 13 * scale, 21 * scale)
    assert restore(model, lq).shape == out.shape


def test_load_gives_the_saved_model_and_restore_its_output(tmp_path, sr4):
    path = tmp_path / "model.pt"
    arch = diffir.model_preset("sr", "tiny")
    atomic_save(model_record(model_config("sr", 2, 4, arch, {"enabled": True}), sr4.state_dict()), path)
    loaded = diffir.load(path)
    assert not loaded.training and loaded.scale == 4
    lq = torch.rand(1, 3, 8, 12)
    # the same weights and the same seeded start vector: the same computation, bit for bit
    assert torch.equal(diffir.restore(loaded, lq, seed=3), diffir.restore(sr4, lq, seed=3))
    with pytest.raises(CheckpointError, match="does not exist"):
        diffir.load(tmp_path / "missing.ckpt")


def test_a_batch_restores_each_image_as_alone(sr4):
    """One start vector per image (as infer.py): batching does not change an image's restoration."""
    lq = torch.rand(2, 3, 8, 8)
    both = diffir.restore(sr4, lq, seed=5)
    # a batch of 2 vs 1 may be summed in another order: a 3x3 conv over at most 64 channels per value
    assert_float32_close(both[1:], diffir.restore(sr4, lq[1:], seed=5), terms=9 * 64)


@pytest.mark.parametrize(
    "lq,message",
    [
        (torch.rand(8, 8), r"\(N, C, H, W\), got \(8, 8\)"),
        (torch.rand(3, 8, 8), r"add the batch dimension"),
        ((torch.rand(1, 3, 8, 8) * 255).to(torch.uint8), r"dtype torch.uint8.*/ 255"),
        (torch.rand(1, 3, 8, 8, dtype=torch.float64), r"dtype torch.float64.*lq.to\(torch.float32\)"),
        (torch.rand(1, 1, 8, 8), r"1 channels; this model takes 3"),
        (torch.rand(1, 3, 8, 8) * 255, r"\[0, 1\].*divide 8-bit values by 255"),
        (torch.rand(1, 3, 0, 8), r"empty"),
    ],
    ids=["2d", "3d", "uint8", "float64", "grey", "0-255", "empty"],
)
def test_wrong_inputs_are_a_value_error_naming_the_problem(sr4, lq, message):
    with pytest.raises(ValueError, match=message):
        diffir.restore(sr4, lq)


def test_stage1_needs_the_gt_and_inpainting_the_mask():
    stage1 = tiny("sr", 1, 4)
    with pytest.raises(ValueError, match="needs the ground truth"):
        diffir.restore(stage1, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"gt must have shape \(1, 3, 32, 32\)"):
        diffir.restore(stage1, torch.rand(1, 3, 8, 8), gt=torch.rand(1, 3, 8, 8))
    assert diffir.restore(stage1, torch.rand(1, 3, 8, 8), gt=torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    inpainting = tiny("inpainting")
    image = torch.rand(1, 3, 12, 16)
    with pytest.raises(ValueError, match="needs mask="):
        diffir.restore(inpainting, image)
    mask = torch.zeros(1, 1, 12, 16)
    mask[..., 4:8, 4:10] = 1
    out = diffir.restore(inpainting, image, mask=mask)
    known = mask.expand_as(image) == 0
    assert torch.equal(out[known], image[known]), "the known pixels are kept"
    with pytest.raises(ValueError, match="mask= is for inpainting"):
        diffir.restore(tiny("deblur"), image, mask=mask)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (2, 1), (1, 17)])
def test_images_one_pixel_high_or_wide_are_restored(sr4, size):
    """Reflection has nothing to mirror in a 1-pixel side: it is replicated (this used to loop forever)."""
    padded, original = pad_to_multiple(torch.rand(1, 3, *size), 8)
    assert original == size and padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert diffir.restore(sr4, torch.rand(1, 3, *size)).shape == (1, 3, 4 * size[0], 4 * size[1])


def test_tiled_restore_through_the_front_door(sr4):
    lq = torch.rand(1, 3, 20, 28)
    assert diffir.restore(sr4, lq, tile=16, tile_overlap=4).shape == (1, 3, 80, 112)
