"""Dataset preparation (``python -m diffir.data.prepare``) on small archives in the official layouts, made on the
fly from scikit-image's photos (never the network), the training presets on its outputs, and
PairedFolderDataset's start-up checks."""

from __future__ import annotations

import io
import logging
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from numerics import assert_float32_close
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from skimage import data as skdata

from diffir.config import compose_config
from diffir.data import PairedFolderDataset, bicubic_downsample
from diffir.data.prepare import (
    PrepareError,
    main,
    patch_positions,
    prepare,
    subimage_positions,
    verify_checksum,
)


def photo(name: str, height: int, width: int, top: int = 0, left: int = 0) -> np.ndarray:
    """A ``height x width`` RGB uint8 crop of a scikit-image photo."""
    img = getattr(skdata, name)()[top : top + height, left : left + width]
    assert img.shape == (height, width, 3), f"{name} is too small for {height}x{width}"
    return np.ascontiguousarray(img)


def encode(img: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format=fmt)
    return buffer.getvalue()


def make_zip(path: Path, files: Mapping[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path


def make_tar(path: Path, files: Mapping[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture(autouse=True)
def single_threaded_torch():
    """MATLAB bicubic on small images: one torch thread is many times faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def names(folder: Path) -> list[str]:
    """The files of a folder, without the hidden extraction markers."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def prepare_twice(capsys, dataset: str, root: Path, archives: list[Path], **options: int) -> dict:
    """Prepare, check the second run does nothing and says so; returns the first run's manifest."""
    manifest = prepare(dataset, root, archives, options=options)
    assert manifest["status"] == "prepared"
    capsys.readouterr()
    again = prepare(dataset, root, archives, options=options)
    assert again["status"] == "up to date" and "nothing to do" in capsys.readouterr().out
    return manifest


def first_batch(tmp_path: Path, task: str, data: str, patch: int, *extra: str) -> dict:
    """The first training batch of ``data=<data>`` on the prepared root, through compose_config + DataModule."""
    cfg = compose_config(
        [
            f"task={task}",
            f"data={data}",
            f"paths.data_dir={tmp_path}",
            "data.num_workers=0",
            "stage1.batch_size=2",
            f"stage1.patch_size={patch}",
            *extra,
        ]
    )
    datamodule = instantiate(cfg.data.module, _convert_="object")
    datamodule.setup("fit")
    assert len(datamodule.val_set) > 0
    return next(iter(datamodule.train_dataloader()))


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    img = np.rot90(img, k % 4)
    return img[:, ::-1] if k >= 4 else img


def locate(crop: np.ndarray, image: np.ndarray) -> tuple[int, int, int]:
    """(top, left, k) with ``dihedral(image[top:, left:][:side, :side], k) == crop`` (exact, unique)."""
    side = crop.shape[0]
    windows = sliding_window_view(image, (side, side, 3))[:, :, 0]
    found = [
        (int(top), int(left), k)
        for k in range(8)
        for top, left in zip(
            *np.nonzero((windows == dihedral_inverse(crop, k)).all(axis=(2, 3, 4))), strict=True
        )
    ]
    assert len(found) >= 1, "the crop is not a region of the image"
    return found[0]


def dihedral_inverse(img: np.ndarray, k: int) -> np.ndarray:
    img = img[:, ::-1] if k >= 4 else img
    return np.rot90(img, -(k % 4))


# --- SR: DIV2K / DF2K and the test sets -------------------------------------------------------------------


def test_subimage_and_patch_positions_follow_the_official_scripts() -> None:
    # BasicSR extract_subimages.py: step 240, the last crop aligned to the border if anything is left over
    assert subimage_positions(500) == [0, 20]
    assert subimage_positions(730) == [0, 240, 250]
    assert subimage_positions(720) == [0, 240]  # 720 = 240 + 480 exactly: nothing left, no extra crop
    assert subimage_positions(480) == [0] and subimage_positions(479) == []
    assert subimage_positions(2040) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    # Restormer generate_patches_gopro.py: stride 256 below length - 512, then length - 512
    assert patch_positions(720) == [0, 208]
    assert patch_positions(1280) == [0, 256, 512, 768]
    assert patch_positions(512) == [0] and patch_positions(511) == []


def test_div2k_subimages_lr_and_idempotence(tmp_path: Path, capsys) -> None:
    hr = photo("hubble_deep_field", 500, 730, 100, 100)
    train = make_zip(tmp_path / "DIV2K_train_HR.zip", {"DIV2K_train_HR/0001.png": encode(hr)})
    valid = make_zip(
        tmp_path / "DIV2K_valid_HR.zip", {"DIV2K_valid_HR/0801.png": encode(photo("chelsea", 300, 451))}
    )
    root = tmp_path / "data"
    manifest = prepare_twice(capsys, "div2k", root, [train, valid])
    base = root / "DIV2K"
    subs = names(base / "HR_sub")
    assert subs == [f"0001_s{i:03d}.png" for i in range(1, 7)]  # rows [0, 20] x columns [0, 240, 250]
    positions = [(y, x) for y in (0, 20) for x in (0, 240, 250)]
    for name, (y, x) in zip(subs, positions, strict=True):
        sub = read(base / "HR_sub" / name)
        np.testing.assert_array_equal(sub, hr[y : y + 480, x : x + 480])
        for scale in (2, 3, 4):
            lr = read(base / f"LR_bicubic_sub/X{scale}" / name)
            np.testing.assert_array_equal(lr, bicubic_downsample(sub, scale))
    assert manifest["outputs"]["DIV2K/DIV2K_valid_HR"] == 1 and manifest["outputs"]["DIV2K/HR_sub"] == 6
    assert (base / "prepare_manifest.json").is_file()


def test_df2k_paired_preset_gives_aligned_crops(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    archives = [
        make_zip(tmp_path / "train.zip", {"DIV2K_train_HR/0001.png": encode(photo("astronaut", 480, 480))}),
        # a gzipped tar under a misleading name: the format is detected from the content
        make_tar(
            tmp_path / "flickr.download",
            {"Flickr2K/Flickr2K_HR/000001.png": encode(photo("retina", 480, 480, 400, 400))},
            "w:gz",
        ),
        make_zip(tmp_path / "valid.zip", {"DIV2K_valid_HR/0801.png": encode(photo("coffee", 400, 600))}),
    ]
    prepare_twice(capsys, "df2k", root, archives)
    assert names(root / "DF2K/HR_sub") == ["000001_s001.png", "0001_s001.png"]

    batch = first_batch(root, "sr", "df2k", 64, "scale=4")
    assert batch["gt"].shape == (2, 3, 64, 64) and batch["lq"].shape == (2, 3, 16, 16)
    for gt, lq, name in zip(batch["gt"], batch["lq"], batch["name"], strict=True):
        gt_u8, lq_u8 = (np.round(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8) for t in (gt, lq))
        hr_sub, lr_sub = (
            read(root / f"DF2K/HR_sub/{name}.png"),
            read(root / f"DF2K/LR_bicubic_sub/X4/{name}.png"),
        )
        top, left, k = locate(lq_u8, lr_sub)
        # the GT crop is the same region (x4) with the same flip/rotation ...
        np.testing.assert_array_equal(
            gt_u8, dihedral(hr_sub[4 * top : 4 * top + 64, 4 * left : 4 * left + 64], k)
        )
        # ... and the LR crop is the MATLAB bicubic of the HR crop (away from the crop's 2-px border, where
        # the bicubic of the whole sub-image also sees pixels outside the crop)
        hr_crop, lr_crop = dihedral_inverse(gt_u8, k), dihedral_inverse(lq_u8, k)
        np.testing.assert_array_equal(bicubic_downsample(hr_crop, 4)[2:-2, 2:-2], lr_crop[2:-2, 2:-2])


def test_sr_test_sets_from_edsr_benchmark_tar_and_hand_made_archives(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    small = {
        name: photo("chelsea", 48, 60, 10 * i, 10 * i) for i, name in enumerate(["baby", "bird", "comic"])
    }
    benchmark = make_tar(
        tmp_path / "benchmark.tar",
        {
            f"benchmark/{s}/HR/{n}.png": encode(img)
            for s in ("Set5", "Set14", "Urban100")
            for n, img in small.items()
        }
        | {f"benchmark/Set5/LR_bicubic/X2/{n}x2.png": encode(img[::2, ::2]) for n, img in small.items()},
    )
    manga = make_zip(tmp_path / "manga.zip", {f"Manga109/{n}.png": encode(img) for n, img in small.items()})
    general = make_zip(
        tmp_path / "g.zip", {f"General-100/im_{i}.bmp": encode(small["baby"], "BMP") for i in (1, 2)}
    )
    for dataset, directory, archive in [
        ("set5", "Set5", benchmark),
        ("set14", "Set14", benchmark),
        ("urban100", "Urban100", benchmark),
        ("manga109", "Manga109", manga),
        ("general100", "General100", general),
    ]:
        prepare_twice(capsys, dataset, root, [archive])
        expected = (
            ["im_1.bmp", "im_2.bmp"] if dataset == "general100" else ["baby.png", "bird.png", "comic.png"]
        )
        assert names(root / directory / "HR") == expected, (
            dataset
        )  # HR only: the LR_bicubic folders are not taken
    np.testing.assert_array_equal(read(root / "Set14/HR/bird.png"), small["bird"])


# --- deblurring: GoPro and HIDE -----------------------------------------------------------------------------


def test_gopro_patches_val_crops_and_paired_preset(tmp_path: Path, capsys) -> None:
    # Official GOPRO_Large layout. The "blurred" frame is the inverted sharp one: any misalignment between an
    # input and a target crop shows as input != 255 - target.
    sharp = {"train": photo("retina", 600, 800, 300, 300), "test": photo("hubble_deep_field", 300, 400)}
    files = {}
    for split, img in sharp.items():
        folder = f"GOPRO_Large/{split}/GOPR0001_{split}"
        files |= {
            f"{folder}/sharp/000001.png": encode(img),
            f"{folder}/blur/000001.png": encode(255 - img),
            f"{folder}/blur_gamma/000001.png": encode(img // 2),
        }
    root = tmp_path / "data"
    manifest = prepare_twice(capsys, "gopro", root, [make_zip(tmp_path / "GOPRO_Large.zip", files)])
    base = root / "GoPro"
    stem = "GOPR0001_train_000001"
    assert names(base / "train/target_crops") == sorted(
        f"{stem}-{n}.png" for n in range(1, 7)
    )  # rows [0, 88] x columns [0, 256, 288]
    for n, (y, x) in enumerate(((y, x) for y in (0, 88) for x in (0, 256, 288)), start=1):
        target, blurred = (read(base / f"train/{d}/{stem}-{n}.png") for d in ("target_crops", "input_crops"))
        np.testing.assert_array_equal(target, sharp["train"][y : y + 512, x : x + 512])
        np.testing.assert_array_equal(blurred, 255 - target)
    val = read(base / "val/target_crops/GOPR0001_test_000001.png")
    np.testing.assert_array_equal(val, sharp["test"][22:278, 72:328])  # the 256 px centre crop
    np.testing.assert_array_equal(read(base / "val/input_crops/GOPR0001_test_000001.png"), 255 - val)
    assert manifest["outputs"]["GoPro/test/input"] == manifest["outputs"]["GoPro/test/target"] == 1

    batch = first_batch(root, "deblur", "gopro", 128)
    assert batch["gt"].shape == batch["lq"].shape == (2, 3, 128, 128)
    # t/255, (255 − t)/255 and 1 − gt: three float32 roundings of values ≤ 1
    assert_float32_close(batch["lq"], 1 - batch["gt"], terms=4)


def test_hide_pairs_test_images_with_their_ground_truth_by_name(tmp_path: Path, capsys) -> None:
    images = {n: photo("coffee", 64, 96, 20 * i, 30 * i) for i, n in enumerate(["a", "b", "c"])}
    files = {f"HIDE_dataset/GT/{n}.png": encode(img) for n, img in images.items()}
    files |= {
        "HIDE_dataset/test/test-close-ups/a.png": encode(255 - images["a"]),
        "HIDE_dataset/test/test-long-shot/b.png": encode(255 - images["b"]),
        "HIDE_dataset/train/c.png": encode(255 - images["c"]),  # training pair: not part of the test set
    }
    root = tmp_path / "data"
    prepare_twice(capsys, "hide", root, [make_zip(tmp_path / "HIDE_dataset.zip", files)])
    for name in ("a", "b"):
        np.testing.assert_array_equal(read(root / f"HIDE/test/target/{name}.png"), images[name])
        np.testing.assert_array_equal(read(root / f"HIDE/test/input/{name}.png"), 255 - images[name])
    assert names(root / "HIDE/test/target") == ["a.png", "b.png"]
    assert not (root / "HIDE/GT").exists()

    del files["HIDE_dataset/GT/b.png"]
    with pytest.raises(PrepareError, match="b.png: no ground truth"):
        prepare("hide", tmp_path / "other", [make_zip(tmp_path / "broken.zip", files)])


# --- inpainting: Places and CelebA-HQ -----------------------------------------------------------------------


def masks_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*_mask000.png"))}


@pytest.mark.slow
def test_places_subsets_masks_reproducible_and_preset(tmp_path: Path, capsys) -> None:
    train = {
        f"data_large/{c[0]}/{c}/00000001.jpg": encode(photo("rocket", 200, 260, 30 * i, 40 * i), "JPEG")
        for i, c in enumerate(["airfield", "bar", "canyon"])
    }
    val = {
        f"val_large/Places365_val_{i:08d}.jpg": encode(photo("astronaut", 200, 240, 20 * i, 30 * i), "JPEG")
        for i in range(1, 9)
    }
    archives = [make_tar(tmp_path / "train.tar", train), make_tar(tmp_path / "val_large.tar", val)]
    sizes = {"eval_size": 4, "val_size": 2}
    root = tmp_path / "data"
    manifest = prepare_twice(capsys, "places", root, archives, **sizes)
    base = root / "Places365"
    assert names(base / "train") == [
        "a_airfield_00000001.jpg",  # the names repeat across categories: the category stays in the name
        "b_bar_00000001.jpg",
        "c_canyon_00000001.jpg",
    ]
    evaluation = (base / "eval_random_files.txt").read_text().split()
    validation = names(base / "val")
    assert len(evaluation) == 4 and len(validation) == 2 and not set(evaluation) & set(validation)
    for preset in ("thick_256", "thin_256", "medium_256", "thick_512", "thin_512", "medium_512"):
        folder, size = base / f"evaluation/random_{preset}", int(preset[-3:])
        assert manifest["outputs"][f"Places365/evaluation/random_{preset}"] == 8  # 4 images + 4 masks
        for name in evaluation:
            stem = Path(name).stem
            image, mask = (
                read(folder / f"{stem}_crop000.png"),
                np.asarray(Image.open(folder / f"{stem}_crop000_mask000.png")),
            )
            assert image.shape == (size, size, 3) and mask.shape == (size, size)
            assert set(np.unique(mask)) <= {0, 255} and 0 < (mask > 0).mean() <= 0.5
    # the same seed gives the same subsets and masks; another seed other masks
    again = tmp_path / "again"
    prepare("places", again, archives, options=sizes)
    assert (again / "Places365/eval_random_files.txt").read_text() == (
        base / "eval_random_files.txt"
    ).read_text()
    assert masks_of(again / "Places365/evaluation") == masks_of(base / "evaluation")
    with pytest.raises(PrepareError, match="--force"):  # other options need --force
        prepare("places", again, archives, options={**sizes, "seed": 1})
    prepare("places", again, archives, options={**sizes, "seed": 1}, force=True)
    assert masks_of(again / "Places365/evaluation") != masks_of(base / "evaluation")

    batch = first_batch(root, "inpainting", "places", 64, "data.val_center_crop=64")
    assert batch["gt"].shape == (2, 3, 64, 64) and batch["lq"].shape == (2, 4, 64, 64)
    assert batch["mask"].shape == (2, 1, 64, 64)


def test_celebahq_reindex_split_masks_and_preset(tmp_path: Path, capsys) -> None:
    faces = {
        f"data256x256/{i:05d}.jpg": encode(photo("astronaut", 256, 256, 16 * i, 16 * i), "JPEG")
        for i in range(1, 13)
    }
    archive = make_zip(tmp_path / "data256x256.zip", faces)
    sizes = {"val_size": 3, "visual_test_size": 3}
    root = tmp_path / "data"
    prepare_twice(capsys, "celebahq", root, [archive], **sizes)
    base = root / "CelebA-HQ"
    splits = {s: names(base / s) for s in ("train_256", "val_source_256", "visual_test_source_256")}
    assert [len(v) for v in splits.values()] == [6, 3, 3]
    assert sorted(n for v in splits.values() for n in v) == sorted(f"{i}.jpg" for i in range(12))  # 0..11
    assert sorted((base / "val_shuffled.flist").read_text().split()) == splits["val_source_256"]
    # 00001.jpg became 0.jpg: same content
    zero = next(s for s, files in splits.items() if "0.jpg" in files)
    assert (base / zero / "0.jpg").read_bytes() == faces["data256x256/00001.jpg"]
    for preset in ("thick_256", "thin_256"):
        masks = sorted((base / f"evaluation/random_{preset}").glob("*_mask000.png"))
        assert sorted(p.name.split("_")[0] + ".jpg" for p in masks) == splits["val_source_256"]
    again = tmp_path / "again"
    prepare("celebahq", again, [archive], options=sizes)
    assert masks_of(again / "CelebA-HQ/evaluation") == masks_of(base / "evaluation")
    assert names(again / "CelebA-HQ/val_source_256") == splits["val_source_256"]

    batch = first_batch(root, "inpainting", "celebahq", 64)
    assert batch["gt"].shape == (2, 3, 64, 64) and batch["lq"].shape == (2, 4, 64, 64)


# --- inputs that cannot work -----------------------------------------------------------------------------


def test_archive_problems_are_named(tmp_path: Path, capsys) -> None:
    unrelated = make_zip(tmp_path / "unrelated.zip", {"photos/x.png": encode(photo("coffee", 32, 32))})
    with pytest.raises(PrepareError, match="DIV2K_valid_HR.zip: https://data.vision.ee.ethz.ch"):
        prepare("div2k", tmp_path / "a", [unrelated])
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(PrepareError, match="neither a zip nor a tar"):
        prepare("set5", tmp_path / "b", [tmp_path / "notes.txt"])
    # datasets without a direct link name the page, before any download is tried
    assert main(["hide", "--root", str(tmp_path / "c")]) == 1
    assert "https://github.com/joanshen0508/HA_deblur" in capsys.readouterr().err
    with pytest.raises(PrepareError, match="has no option eval_size"):
        prepare("gopro", tmp_path / "d", [unrelated], options={"eval_size": 3})


def test_checksums_are_verified(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"diffir")
    verify_checksum(path, "md5:" + __import__("hashlib").md5(b"diffir").hexdigest())
    with pytest.raises(PrepareError, match="corrupt download"):
        verify_checksum(path, "sha256:" + "0" * 64)


# --- PairedFolderDataset: start-up checks --------------------------------------------------------------------


@pytest.fixture
def pairs(tmp_path: Path) -> tuple[Path, Path]:
    """GT 64 x 96 photos with their x4 MATLAB-bicubic LQ, in gt/ and lq/."""
    for i in range(3):
        gt = photo("coffee", 64, 96, 40 * i, 50 * i)
        for folder, img in (("gt", gt), ("lq", bicubic_downsample(gt, 4))):
            (tmp_path / folder / "sub").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / folder / "sub" / f"im{i}.png")
    return tmp_path / "gt", tmp_path / "lq"


def test_paired_dataset_items_and_step_keys(pairs: tuple[Path, Path]) -> None:
    ds = PairedFolderDataset(*pairs, patch_size=32, scale=4, augment=True)
    item = ds[(1, 7, 16)]  # (index, sample seed, progressive patch size)
    assert item["gt"].shape == (3, 16, 16) and item["lq"].shape == (3, 4, 4) and item["name"] == "sub/im1"
    assert torch.equal(ds[(1, 7, 16)]["gt"], item["gt"])
    val = PairedFolderDataset(*pairs, scale=4)
    assert val[0]["gt"].shape == (3, 64, 96) and val[0]["lq"].shape == (3, 16, 24)


def test_paired_dataset_names_missing_partners_wrong_sizes_and_broken_files(pairs, caplog) -> None:
    gt_root, lq_root = pairs
    (lq_root / "sub/im0.png").unlink()
    Image.fromarray(photo("coffee", 20, 24)).save(lq_root / "sub/im1.png")  # 64 x 96 is not 4 x (20 x 24)
    with pytest.raises(ValueError) as err:
        PairedFolderDataset(gt_root, lq_root, scale=4)
    message = str(err.value)
    assert "gt/sub/im0.png: no LQ image" in message
    assert "gt/sub/im1.png (64x96) vs" in message and "lq/sub/im1.png (20x24)" in message
    with caplog.at_level(logging.WARNING):
        ds = PairedFolderDataset(gt_root, lq_root, scale=4, skip_bad_files=True)
    assert [s.name for s in ds.sources] == ["sub/im2"] and "im0.png" in caplog.text

    data = (lq_root / "sub/im2.png").read_bytes()
    (lq_root / "sub/im2.png").write_bytes(data[: len(data) // 2])  # truncated: found at start-up
    with pytest.raises(OSError, match="lq/sub/im2.png"):
        PairedFolderDataset(gt_root, lq_root, scale=4, skip_bad_files=False)
