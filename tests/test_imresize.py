"""MATLAB-compatible bicubic resizing: exact kernel taps, invariants, layouts and the Set5 bicubic baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import float32_tolerance
from PIL import Image
from skimage import data

from diffir.data.imresize import bicubic_downsample, bicubic_upsample, imresize, mod_crop
from diffir.metrics import psnr, ssim

# Keys cubic kernel (a = -0.5) at distances 1.75, 1.25, 0.75, 0.25: every x2-upscaled pixel mixes four
# input pixels with these weights, because output pixel centres fall a quarter pixel off input centres.
X2_UP_TAPS = [-0.0234375, -0.0703125, 0.2265625, 0.8671875]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real 8-bit RGB photo with odd, non-square size (so ceil and mod-crop matter)."""
    return data.astronaut()[37:242, 101:388]


def test_x2_upscale_of_an_impulse_gives_the_matlab_cubic_taps() -> None:
    row = np.zeros((1, 16))
    row[0, 8] = 1.0
    out = imresize(row, 2.0)
    expected = np.zeros(32)
    expected[13:21] = X2_UP_TAPS + X2_UP_TAPS[::-1]
    assert out.shape == (2, 32)
    np.testing.assert_allclose(out, np.stack([expected, expected]), rtol=0, atol=1e-15)


def test_borders_are_extended_symmetrically_with_the_edge_pixel_repeated() -> None:
    # An impulse on the first pixel: its mirror image at index -1 (MATLAB's symmetric extension) adds the
    # 0.2265625 tap to output 0 and the -0.0703125 tap to output 1.
    row = np.zeros((1, 16))
    row[0, 0] = 1.0
    expected = [1.09375, 0.796875, 0.203125, -0.0703125, -0.0234375, 0.0]
    np.testing.assert_allclose(imresize(row, 2.0)[0, :6], expected, rtol=0, atol=1e-15)


def test_uint8_output_rounds_half_away_from_zero_like_matlab() -> None:
    row = np.array([[20, 76, 123, 108, 103, 7]], dtype=np.uint8)
    assert imresize(row.astype(np.float64), 2.0)[0, 6] == 112.5  # exact: the x2 taps are multiples of 1/128
    expected = [15, 30, 61, 90, 116, 123, 113, 108, 110, 83, 26, 0]  # 112.5 -> 113, -2 saturates to 0
    np.testing.assert_array_equal(imresize(row, 2.0)[0], expected)


def test_x2_downscale_of_an_impulse_uses_the_widened_antialiasing_kernel() -> None:
    # Output pixel k (1-based) sits at input coordinate 2k - 0.5; the kernel is cubic(d / 2) / 2.
    row = np.zeros((1, 16))
    row[0, 8] = 1.0
    expected = np.zeros(8)
    expected[2:6] = [-0.01171875, 0.11328125, 0.43359375, -0.03515625]
    np.testing.assert_allclose(imresize(row, 0.5)[0], expected, rtol=0, atol=1e-15)
    # Without antialiasing the plain kernel samples at distances 0.5 and 1.5 only.
    plain = np.zeros(8)
    plain[3:5] = [-0.0625, 0.5625]
    np.testing.assert_allclose(imresize(row, 0.5, antialiasing=False)[0], plain, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.5, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("antialiasing", [True, False])
def test_constant_image_stays_constant(scale: float, antialiasing: bool) -> None:
    as_uint8 = np.full((23, 30, 3), 137, dtype=np.uint8)
    assert (imresize(as_uint8, scale, antialiasing) == 137).all()
    as_float = torch.full((2, 3, 23, 30), 0.3, dtype=torch.float64)
    # float64, ≤ 16 normalised taps per axis (scale 1/4), two passes: 32·ε of 0.3 (measured ≤ 1.7 ε)
    torch.testing.assert_close(
        imresize(as_float, scale, antialiasing),
        torch.full_like(imresize(as_float, scale), 0.3),
        rtol=0,
        atol=32 * torch.finfo(torch.float64).eps * 0.3,
    )


def test_scale_one_is_the_identity(photo: np.ndarray) -> None:
    np.testing.assert_array_equal(imresize(photo, 1.0), photo)
    as_float = torch.rand(2, 3, 17, 19)
    assert torch.equal(imresize(as_float, 1.0), as_float)


@pytest.mark.parametrize(
    ("scale", "expected"), [(1 / 4, (10, 13)), (1 / 3, (13, 17)), (0.5, (19, 25)), (3, (111, 150))]
)
def test_output_size_is_ceil_of_size_times_scale(scale: float, expected: tuple[int, int]) -> None:
    assert imresize(np.zeros((37, 50, 3), dtype=np.uint8), scale).shape == (*expected, 3)
    assert imresize(np.zeros((37, 50)), scale).shape == expected
    assert imresize(torch.zeros(2, 3, 37, 50), scale).shape == (2, 3, *expected)


def test_dtypes_are_preserved(photo: np.ndarray) -> None:
    assert imresize(photo, 0.5).dtype == np.uint8
    assert imresize(photo.astype(np.float32) / 255, 0.5).dtype == np.float32
    assert imresize(torch.rand(3, 8, 8, dtype=torch.float64), 2).dtype == torch.float64


def test_mod_crop_keeps_the_top_left_multiple_of_scale(photo: np.ndarray) -> None:
    cropped = mod_crop(photo, 4)
    assert cropped.shape == (204, 284, 3)
    np.testing.assert_array_equal(cropped, photo[:204, :284])
    assert mod_crop(torch.zeros(2, 3, 37, 50), 3).shape == (2, 3, 36, 48)


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0])
def test_uint8_and_float_inputs_agree(photo: np.ndarray, scale: float) -> None:
    # uint8 input is rounded after each 1-D pass (MATLAB's imresizemex returns its input's class); float
    # input is not. Away from saturation that moves the 8-bit result by at most one level: the rounding
    # error (<= 0.5) times the second pass's sum of |weights| (<= 1.3) stays below 1.
    unsaturated = (48 + photo.astype(np.float64) * (159 / 255)).round().astype(np.uint8)
    from_uint8 = imresize(unsaturated, scale).astype(np.int64)
    from_float = np.round(imresize(unsaturated / 255.0, scale) * 255).astype(np.int64)
    diff = np.abs(from_uint8 - from_float)
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.75


def test_bicubic_downsample_float_and_uint8_give_the_same_8bit_lr(photo: np.ndarray) -> None:
    lr_uint8 = bicubic_downsample(photo, 4)
    lr_float = bicubic_downsample(photo.astype(np.float32) / 255, 4)
    assert lr_uint8.dtype == np.uint8 and lr_float.dtype == np.float32
    assert lr_uint8.shape == (51, 71, 3)  # mod-crop 205x287 -> 204x284, then / 4
    np.testing.assert_array_equal(np.round(lr_float.astype(np.float64) * 255), lr_uint8)
    lr_tensor = bicubic_downsample(torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255, 4)
    np.testing.assert_array_equal((lr_tensor[0].permute(1, 2, 0) * 255).round().numpy(), lr_uint8)


def test_torch_layouts_match_numpy(photo: np.ndarray) -> None:
    as_float = photo / 255.0
    expected = imresize(as_float, 0.3)
    chw64 = imresize(torch.from_numpy(as_float).permute(2, 0, 1), 0.3)
    np.testing.assert_allclose(chw64.permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-12)
    batch = torch.from_numpy(np.stack([as_float, as_float[::-1]])).permute(0, 3, 1, 2).float()
    bchw32 = imresize(batch, 3.0)
    for got, image in zip(bchw32, (as_float, as_float[::-1]), strict=True):
        # float32 against float64: 4 taps per axis, two passes, 4·4 = 16 products of float32-rounded inputs
        # per output (measured ≤ 2.2 ε·M)
        expected = imresize(image, 3.0)
        atol = float32_tolerance(16, float(np.abs(expected).max()))
        np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, rtol=0, atol=atol)
    uint8_chw = imresize(torch.from_numpy(photo).permute(2, 0, 1), 0.5)
    np.testing.assert_array_equal(uint8_chw.permute(1, 2, 0).numpy(), imresize(photo, 0.5))
    np.testing.assert_array_equal(
        imresize(torch.from_numpy(photo[..., 1]), 0.5).numpy(), imresize(photo[..., 1], 0.5)
    )


@pytest.mark.parametrize(
    ("scale", "published_psnr", "published_ssim"), [(4, 28.42, 0.8104), (2, 33.66, 0.9299)]
)
def test_set5_bicubic_baseline_matches_published_numbers(
    benchmarks_dir: Path, scale: int, published_psnr: float, published_ssim: float
) -> None:
    paths = sorted((benchmarks_dir / "Set5").glob("*.png"))
    assert len(paths) == 5
    psnrs, ssims = [], []
    for path in paths:
        hr = mod_crop(np.asarray(Image.open(path).convert("RGB")), scale)
        sr = bicubic_upsample(bicubic_downsample(hr, scale), scale)
        assert sr.dtype == np.uint8 and sr.shape == hr.shape
        psnrs.append(psnr(sr, hr, crop_border=scale, test_y_channel=True))
        ssims.append(ssim(sr, hr, crop_border=scale, test_y_channel=True))
    assert np.mean(psnrs) == pytest.approx(published_psnr, abs=0.02)
    assert np.mean(ssims) == pytest.approx(published_ssim, abs=0.002)
