"""Data: degradations (SR, motion blur, inpainting), LaMa masks, folder/sample datasets and the DataModule."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from numerics import float32_tolerance
from PIL import Image
from scipy import ndimage
from skimage import data

from diffir.data import (
    BoxMaskGenerator,
    FolderDataset,
    InpaintingDegradation,
    IrregularMaskGenerator,
    MotionBlurDegradation,
    RestorationDataModule,
    SamplesDataset,
    SRDegradation,
    bicubic_downsample,
    irregular_mask,
    lama_mask_generator,
    load_image,
    random_motion_kernel,
)
from diffir.data.masks import EVAL_MASK_CONFIGS, MixedMaskGenerator


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96 x 128 float RGB crop of a real photo."""
    return data.astronaut()[40:136, 160:288].astype(np.float32) / 255.0


def _save(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder tree with 8-bit RGB, greyscale, RGBA, palette, 16-bit grey and 16-bit RGB images (40 x 48)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "rgb.png", rgb)
    _save(tmp_path / "sub" / "grey.png", rgb[..., 0])
    _save(tmp_path / "rgba.png", np.dstack([rgb, np.full((40, 48), 7, np.uint8)]))
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.png")
    _save(tmp_path / "grey16.png", (rng.integers(0, 65536, (40, 48))).astype(np.uint16))
    cv2.imwrite(str(tmp_path / "rgb16.png"), rng.integers(0, 65536, (40, 48, 3)).astype(np.uint16))
    _save(tmp_path / "photo.jpg", rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


# --- degradations -----------------------------------------------------------------------------------------


def test_sr_dataset_lq_is_exactly_the_bicubic_downsample_of_the_augmented_gt_crop() -> None:
    ds = SamplesDataset("train", SRDegradation(4), patch_size=48, scale=4, augment=True)
    for index in range(4):
        item = ds[index]
        gt = item["gt"].permute(1, 2, 0).numpy()
        assert item["gt"].shape == (3, 48, 48) and item["lq"].shape == (3, 12, 12)
        np.testing.assert_array_equal(item["lq"].permute(1, 2, 0).numpy(), bicubic_downsample(gt, 4))


def test_sr_validation_is_the_whole_image_mod_cropped_to_the_scale() -> None:
    item = SamplesDataset("val", SRDegradation(4), scale=4)[0]  # chelsea, 300 x 451
    assert item["name"] == "chelsea"
    assert item["gt"].shape == (3, 300, 448) and item["lq"].shape == (3, 75, 112)


def test_dataset_and_degradation_scales_must_agree() -> None:
    with pytest.raises(ValueError, match="scale"):
        SamplesDataset("train", SRDegradation(4), patch_size=48, scale=1)
    with pytest.raises(ValueError, match="multiple"):
        SamplesDataset("train", SRDegradation(4), patch_size=50, scale=4)


def test_motion_blur_lq_is_gt_convolved_with_the_returned_kernel_in_8_bits(photo: np.ndarray) -> None:
    out = MotionBlurDegradation(kernel_size=15)(photo, np.random.default_rng(3))
    kernel = out["kernel"]
    expected = np.stack([ndimage.convolve(photo[..., c], kernel, mode="mirror") for c in range(3)], -1)
    diff = np.abs(out["lq"] - expected)
    assert out["lq"].shape == photo.shape
    # only the 8-bit rounding, and the two float32 convolutions' 15² = 225-term sums of pixels ≤ 1
    assert diff.max() <= 0.5 / 255 + float32_tolerance(225, 1.0)
    # on the 8-bit grid: k/255 and ×255 are two float32 roundings of values ≤ 255
    np.testing.assert_allclose(
        out["lq"] * 255, np.round(out["lq"] * 255), rtol=0, atol=float32_tolerance(2, 255.0)
    )
    # A convolution, not a correlation: the flipped (asymmetric) kernel gives a different image.
    correlated = np.stack([ndimage.correlate(photo[..., c], kernel, mode="mirror") for c in range(3)], -1)
    assert np.abs(out["lq"] - correlated).max() > 5 / 255


def test_motion_kernels_are_normalised_centred_non_box_and_random() -> None:
    kernels = [random_motion_kernel(21, seed) for seed in range(10)]
    ys, xs = np.mgrid[:21, :21]
    for k in kernels:
        assert k.shape == (21, 21) and k.dtype == np.float32 and (k >= 0).all()
        # normalised and centred in float64; the float32 entries summed here: n·ε of the total for n = 441
        # terms (weights summing to 1; moments k·x of positions ≤ 20 summing to ≤ 20)
        assert k.sum() == pytest.approx(1.0, abs=float32_tolerance(k.size, 1.0))
        moment = float32_tolerance(k.size, 20.0)
        assert (k * xs).sum() == pytest.approx(10, abs=moment) and (k * ys).sum() == pytest.approx(
            10, abs=moment
        )
        support = k[k > 0]
        assert support.size >= 5 and support.std() > 0.2 * support.mean()  # a box filter has constant weights
    assert all(
        np.abs(kernels[0] - k).max() > float32_tolerance(k.size, 1.0) for k in kernels[1:]
    )  # not rounding
    np.testing.assert_array_equal(random_motion_kernel(21, 4), kernels[4])
    with pytest.raises(ValueError, match="odd"):
        MotionBlurDegradation(kernel_size=20)


def test_inpainting_lq_is_the_masked_gt_and_the_mask(photo: np.ndarray) -> None:
    out = InpaintingDegradation(lama_mask_generator("train"))(photo, np.random.default_rng(0))
    mask = out["mask"]
    assert mask.shape == (1, 96, 128) and set(np.unique(mask)) == {0.0, 1.0}
    assert out["lq"].shape == (96, 128, 4) and out["lq"].dtype == np.float32
    np.testing.assert_array_equal(out["lq"][..., 3], mask[0])
    np.testing.assert_array_equal(out["lq"][..., :3], photo * (1 - mask[0, ..., None]))  # × 0 or 1: exact


def test_inpainting_dataset_items_carry_the_mask() -> None:
    ds = SamplesDataset("train", InpaintingDegradation(lama_mask_generator("train")), patch_size=64)
    item = ds[0]
    assert item["lq"].shape == (4, 64, 64) and item["mask"].shape == (1, 64, 64)
    torch.testing.assert_close(item["lq"][3:], item["mask"], rtol=0, atol=0)  # moved, and × 0 or 1: exact
    torch.testing.assert_close(item["lq"][:3], item["gt"] * (1 - item["mask"]), rtol=0, atol=0)


# --- LaMa masks ---------------------------------------------------------------------------------------------


def test_training_mask_mix_statistics() -> None:
    """200 masks at 256 x 256. Measured on 5000 masks: 50.4% box; mean hole area 0.356 (box 0.251, irregular
    0.462); 5/50/95th percentiles 0.07/0.32/0.73. The bounds below are about 3 standard errors for n = 200."""
    gen = lama_mask_generator("train")
    samples = [gen.sample((256, 256), np.random.default_rng([7, i])) for i in range(200)]
    kinds = np.array([kind for _, kind in samples])
    areas = np.array([mask.mean() for mask, _ in samples])
    assert all(mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0} for mask, _ in samples)
    assert 0.40 <= (kinds == "box").mean() <= 0.60
    assert 0.31 <= areas.mean() <= 0.41
    assert 0.20 <= areas[kinds == "box"].mean() <= 0.31
    assert 0.40 <= areas[kinds == "irregular"].mean() <= 0.53


def test_irregular_generator_has_lamas_plus_one_times() -> None:
    """LaMa's ramp turns max_times=5 into 1..6 strokes groups: same draws as the raw function with 6."""
    gen = IrregularMaskGenerator(max_angle=4, max_len=200, max_width=100, min_times=1, max_times=5)
    for seed in range(5):
        raw = irregular_mask(
            (256, 256), np.random.default_rng(seed), max_len=200, max_width=100, min_times=1, max_times=6
        )
        np.testing.assert_array_equal(gen((256, 256), seed), raw)


def test_training_boxes_are_30_to_150_inclusive_inside_a_10px_margin() -> None:
    for seed in range(300):
        mask = lama_mask_generator("train").generators["box"]((256, 256), seed)
        assert (
            not mask[:10].any()
            and not mask[-10:].any()
            and not mask[:, :10].any()
            and not mask[:, -10:].any()
        )
    one_box = BoxMaskGenerator(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=1)
    rng = np.random.default_rng(1)
    sides = []
    for _ in range(1500):
        mask = one_box((256, 256), rng)
        sides += [np.flatnonzero(mask.any(1)).size, np.flatnonzero(mask.any(0)).size]
    assert min(sides) == 30 and max(sides) == 150


@pytest.mark.parametrize("preset", sorted(EVAL_MASK_CONFIGS))
def test_eval_masks_are_reproducible_and_at_most_half_the_image(preset: str) -> None:
    size = int(preset.split("_")[1])
    first = [lama_mask_generator(preset)((size, size), seed) for seed in range(25)]
    again = [lama_mask_generator(preset)((size, size), np.random.default_rng(seed)) for seed in range(25)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert 0 < a.mean() <= 0.5


def test_eval_mask_rejection_is_what_keeps_thick_masks_under_half() -> None:
    unfiltered = MixedMaskGenerator(**{**EVAL_MASK_CONFIGS["thick_512"], "max_tamper_area": 1.0})
    assert max(unfiltered((512, 512), seed).mean() for seed in range(25)) > 0.5


def test_eval_masks_match_their_recorded_checksums() -> None:
    """Guards the fixed evaluation masks against silent changes (generator code, numpy or OpenCV versions)."""
    assert int(lama_mask_generator("thick_512")((512, 512), 0).sum()) == 118134
    assert int(lama_mask_generator("thin_256")((256, 256), 0).sum()) == 21215


# --- image loading and folder datasets ---------------------------------------------------------------


def test_every_image_kind_loads_as_rgb_float(folder: Path) -> None:
    for path in folder.rglob("*.*"):
        if path.suffix == ".txt":
            continue
        img = load_image(path)
        assert img.shape == (40, 48, 3) and img.dtype == np.float32, path
        assert img.min() >= 0 and img.max() <= 1, path
    grey = load_image(folder / "sub" / "grey.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    np.testing.assert_array_equal(load_image(folder / "rgba.png"), load_image(folder / "rgb.png"))
    for name in ("grey16.png", "rgb16.png"):  # 16-bit precision is kept, not truncated to 8 bits
        img = load_image(folder / name)
        # off the 8-bit grid by more than float32 rounding (a 16-bit step is 0.0039 of an 8-bit one)
        assert not np.allclose(img * 255, np.round(img * 255), rtol=0, atol=1e-3)
    expected16 = cv2.imread(str(folder / "rgb16.png"), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535.0
    # float32 of x / 65535: one rounding of values ≤ 1 (measured ≤ 0.25 ε)
    np.testing.assert_allclose(
        load_image(folder / "rgb16.png"), expected16, rtol=0, atol=float32_tolerance(1, 1.0)
    )


def test_folder_dataset_finds_images_recursively_and_names_them(folder: Path) -> None:
    ds = FolderDataset(folder, MotionBlurDegradation(kernel_size=7))
    assert sorted(s.name for s in ds.sources) == [
        "grey16",
        "palette",
        "photo",
        "rgb",
        "rgb16",
        "rgba",
        "sub/grey",
    ]
    for index in range(len(ds)):
        item = ds[index]
        assert item["gt"].shape == (3, 40, 48) and item["lq"].shape == (3, 40, 48)


def test_truncated_file_is_reported_at_construction_or_skipped(folder: Path, caplog) -> None:
    data_bytes = (folder / "rgb.png").read_bytes()
    (folder / "broken.png").write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(OSError, match="broken.png"):
        FolderDataset(folder, MotionBlurDegradation(kernel_size=7))
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(folder, MotionBlurDegradation(kernel_size=7), skip_bad_files=True)
    assert len(ds) == 7 and "broken" not in {s.name for s in ds.sources}
    assert "broken.png" in caplog.text


def _corrupt_middle(jpeg: bytes, junk: bytes) -> bytes:
    """The JPEG with bytes in the middle of its entropy-coded data replaced; its end marker stays intact."""
    middle = len(jpeg) // 2
    return jpeg[:middle] + junk + jpeg[middle + len(junk) :]


def test_verify_files_decodes_each_file_once_and_catches_a_garbled_jpeg(tmp_path, monkeypatch) -> None:
    """The default start-up check reads headers and end markers only: a JPEG garbled in the middle passes it
    (and would fail when first loaded, mid-training). ``verify_files`` decodes every file, once: a second
    scan decodes only new or changed files."""
    import diffir.io

    monkeypatch.setenv("DIFFIR_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    root.mkdir()
    for name, photo in (("a", data.astronaut()), ("b", data.coffee())):
        Image.fromarray(photo[:96, :128]).save(root / f"{name}.jpg", quality=90)
    good = (root / "a.jpg").read_bytes()
    junk = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    (root / "garbled.jpg").write_bytes(_corrupt_middle(good, junk))
    assert (root / "garbled.jpg").read_bytes()[-2:] == b"\xff\xd9"
    degradation = SRDegradation(2)

    assert len(FolderDataset(root, degradation, scale=2)) == 3  # the cheap check cannot see it
    with pytest.raises(OSError, match=r"(?s)1 unreadable image.*garbled\.jpg: OSError: broken data stream"):
        FolderDataset(root, degradation, scale=2, verify_files=True)
    ds = FolderDataset(root, degradation, scale=2, verify_files=True, skip_bad_files=True)
    assert sorted(s.name for s in ds.sources) == ["a", "b"]

    decoded = []
    decode = diffir.io._decode_rgb
    monkeypatch.setattr(diffir.io, "_decode_rgb", lambda p: decoded.append(Path(p).name) or decode(p))
    (root / "garbled.jpg").unlink()
    FolderDataset(root, degradation, scale=2, verify_files=True)
    assert decoded == []  # both decoded before, unchanged
    (root / "b.jpg").write_bytes((root / "b.jpg").read_bytes() + b"\0")  # changed size
    FolderDataset(root, degradation, scale=2, verify_files=True)
    assert decoded == ["b.jpg"]


def test_missing_or_empty_root_names_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="no_such_dir") as err:
        FolderDataset(missing, SRDegradation(2), scale=2)
    assert "data.root=" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*no images"):
        FolderDataset(tmp_path / "empty", SRDegradation(2), scale=2)


def test_small_images_are_reflect_padded_or_rejected(folder: Path) -> None:
    degradation = MotionBlurDegradation(kernel_size=7)
    ds = FolderDataset(folder, degradation, patch_size=64, small_images="pad", deterministic=True)
    item = ds[[s.name for s in ds.sources].index("rgb")]
    gt = item["gt"].numpy()
    assert gt.shape == (3, 64, 64)
    # The 40 x 48 image sits somewhere in the crop; reflect padding mirrors it about its last row/column.
    original = load_image(folder / "rgb.png")
    np.testing.assert_array_equal(
        np.pad(original, ((0, 24), (0, 16), (0, 0)), mode="reflect"), gt.transpose(1, 2, 0)
    )
    with pytest.raises(ValueError, match="rgb.png"):
        FolderDataset(folder, degradation, patch_size=64, small_images="error")


# --- samples dataset, determinism and the DataModule --------------------------------------------------------


def test_samples_split_is_fixed_and_disjoint() -> None:
    train = SamplesDataset("train", SRDegradation(2), patch_size=32, scale=2)
    val = SamplesDataset("val", SRDegradation(2), scale=2)
    train_names = [s.name for s in train.sources]
    assert [s.name for s in val.sources] == ["chelsea", "coffee"]
    assert set(train_names).isdisjoint({"chelsea", "coffee"}) and len(train_names) == 7
    assert {"motorcycle_left", "motorcycle_right"} <= set(train_names)  # a stereo pair stays in one split


def test_validation_lq_is_identical_across_instances_and_calls() -> None:
    degradation = InpaintingDegradation(lama_mask_generator("thick_256"))
    a = SamplesDataset("val", degradation, center_crop=64)
    b = SamplesDataset("val", degradation, center_crop=64)
    torch.testing.assert_close(a[1]["lq"], b[1]["lq"], rtol=0, atol=0)  # identical: the same computation
    torch.testing.assert_close(a[1]["lq"], a[1]["lq"], rtol=0, atol=0)
    assert not torch.equal(a[0]["mask"], a[1]["mask"])


def test_training_randomness_follows_the_torch_seed_and_step_keys() -> None:
    ds = SamplesDataset("train", MotionBlurDegradation(kernel_size=7), patch_size=32, augment=True)
    torch.manual_seed(1)
    first = [ds[0]["lq"] for _ in range(2)]
    assert not torch.equal(first[0], first[1])  # the generator advances between draws
    torch.manual_seed(1)
    torch.testing.assert_close(ds[0]["lq"], first[0], rtol=0, atol=0)  # reproducible from the torch seed
    torch.manual_seed(2)
    assert not torch.equal(ds[0]["lq"], first[0])
    torch.testing.assert_close(
        ds[(0, 123)]["lq"], ds[(0, 123)]["lq"], rtol=0, atol=0
    )  # StepBatchSampler keys
    assert not torch.equal(ds[(0, 123)]["lq"], ds[(0, 124)]["lq"])


def test_data_loader_workers_draw_different_crops(tmp_path: Path) -> None:
    _save(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    ds = FolderDataset(tmp_path, MotionBlurDegradation(kernel_size=7), patch_size=16, repeat=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    first, second = (batch["gt"] for batch in loader)  # item 0 from worker 0, item 1 from worker 1
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    ("degradation", "scale", "lq_shape"),
    [
        ({"_target_": "diffir.data.SRDegradation", "scale": 4}, 4, (2, 3, 8, 8)),
        ({"_target_": "diffir.data.MotionBlurDegradation", "kernel_size": 9}, 1, (2, 3, 32, 32)),
        (
            {
                "_target_": "diffir.data.InpaintingDegradation",
                "mask_generator": {"_target_": "diffir.data.lama_mask_generator", "preset": "train"},
            },
            1,
            (2, 4, 32, 32),
        ),
    ],
    ids=["sr", "deblur", "inpainting"],
)
def test_datamodule_batches_have_the_right_shapes(degradation: dict, scale: int, lq_shape: tuple) -> None:
    common = {"_target_": "diffir.data.SamplesDataset", "degradation": degradation, "scale": scale}
    dm = RestorationDataModule(
        train={**common, "split": "train", "patch_size": 32, "augment": True},
        val={**common, "split": "val", "center_crop": 32},
        batch_size=2,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["gt"].shape == (2, 3, 32, 32) and tuple(batch["lq"].shape) == lq_shape
    assert batch["gt"].dtype == batch["lq"].dtype == torch.float32 and len(batch["name"]) == 2
    assert ("mask" in batch) == (lq_shape[1] == 4)
    if "mask" in batch:
        assert batch["mask"].shape == (2, 1, 32, 32)
    val_batches = list(dm.val_dataloader())
    assert [b["name"] for b in val_batches] == [["chelsea"], ["coffee"]]
    assert val_batches[0]["lq"].shape == (1, lq_shape[1], 32 // scale, 32 // scale)


def test_datamodule_step_sampler_gives_full_batches_for_max_steps() -> None:
    dm = RestorationDataModule(
        train=SamplesDataset("train", SRDegradation(2), patch_size=16, scale=2), batch_size=3, max_steps=4
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and all(b["gt"].shape == (3, 3, 16, 16) for b in batches)


def test_files_written_atomically_get_the_permissions_open_would_give(tmp_path):
    """Checkpoints, model folders and restored images go through a temporary file (mkstemp: mode 0600); the
    renamed file must be readable by others as a plain ``open`` would make it under the umask."""
    from diffir.io import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        write_atomic(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600


def test_realesrgan_degrade_batch_flips_then_degrades_with_one_seeded_generator() -> None:
    """``degrade_batch`` (what the LightningModule runs on the device): the batch's other keys kept, its GT
    replaced by the degraded pair; with ``flip`` first horizontal flips drawn from the same seeded generator."""
    from diffir.data import RealESRGANDegradation

    deg = RealESRGANDegradation(scale=2, gt_size=32, queue_size=0).eval()
    gt = torch.rand(4, 3, 80, 80)
    batch = {"gt": gt, "name": ["a", "b", "c", "d"]}
    plain = deg.degrade_batch(batch, 5, flip=False)
    expected = deg(gt, torch.Generator().manual_seed(5))
    assert plain["name"] == batch["name"] and plain.keys() == {"gt", "lq", "gt_usm", "name"}
    assert all(torch.equal(plain[k], expected[k]) for k in expected)

    generator = torch.Generator().manual_seed(5)
    flipped = torch.rand(4, generator=generator) < 0.5
    assert 0 < int(flipped.sum()) < 4  # this seed flips some and keeps some
    expected = deg(torch.where(flipped[:, None, None, None], gt.flip(-1), gt), generator)
    out = deg.degrade_batch(batch, 5, flip=True)
    assert all(torch.equal(out[k], expected[k]) for k in expected)
