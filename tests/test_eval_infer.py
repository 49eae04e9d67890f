"""eval.py and infer.py end to end, on tiny checkpoints and crops of scikit-image's photos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from scripts import run_script

from diffir.checkpoint import atomic_save, model_record
from diffir.data import bicubic_downsample, bicubic_upsample, load_image, mod_crop
from diffir.errors import UsageError
from diffir.metrics import psnr
from diffir.model_config import CONF_DIR, model_config, model_preset
from diffir.models import build_model
from diffir.runs.evaluate import evaluate
from diffir.runs.infer import infer

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(path: Path, task: str, stage: int, scale: int) -> Path:
    """A tiny, randomly initialised model saved as a model file (what training and diffir.convert write)."""
    arch = model_preset(task, "tiny")
    config = model_config(task, stage, scale, arch, {"enabled": True})
    torch.manual_seed(stage)
    atomic_save(model_record(config, build_model(task, stage, scale, **arch).state_dict()), path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "sr": save_checkpoint(root / "run_a" / "sr_x4.ckpt", "sr", 2, 4),
        "sr_s1": save_checkpoint(root / "run_b" / "sr_x4.ckpt", "sr", 1, 4),
        "inpainting": save_checkpoint(root / "inpaint.pt", "inpainting", 2, 1),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three small photos of odd sizes: RGB, JPEG, greyscale (the eval folder)."""
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.astronaut()[40:90, 180:246]).save(root / "astronaut.png")
    Image.fromarray(skimage.data.coffee()[120:176, 200:260]).save(root / "coffee.jpg", quality=95)
    Image.fromarray(skimage.data.camera()[60:100, 200:252]).save(root / "camera.png")
    return root


def compose_cfg(config_dir: Path, name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def eval_cfg(*overrides: str) -> DictConfig:
    return compose_cfg(CONF_DIR / "eval", "eval", list(overrides))


def infer_cfg(*overrides: str) -> DictConfig:
    return compose_cfg(CONF_DIR, "infer", list(overrides))


# --- eval -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_folder_end_to_end(ckpts, photos, tmp_path):
    out = tmp_path / "eval"
    results = evaluate(
        eval_cfg(
            f"ckpt=[{ckpts['sr']},{ckpts['sr_s1']}]",
            "method=bicubic",
            "data=folder",
            f"data.root={photos}",
            f"output_dir={out}",
            "grids=2",
            "logger=wandb",
        )
    )
    methods = ["run_a/sr_x4", "run_b/sr_x4 (stage-1 oracle)", "bicubic"]
    assert results["methods"] == methods and (results["task"], results["scale"]) == ("sr", 4)
    saved = json.loads((out / "metrics.json").read_text())
    folder = saved["datasets"]["folder"]
    names = ["astronaut", "camera", "coffee"]
    for method in methods:
        run = folder[method]
        assert [r["name"] for r in run["per_image"]] == names
        # a float64 mean of 3 values, summed in another order than np.mean's: within 3 ε (ε = 2.2e-16)
        mean = np.mean([r["psnr"] for r in run["per_image"]])
        assert run["mean"]["psnr"] == pytest.approx(mean, rel=3 * np.finfo(np.float64).eps)
        assert run["seconds_per_image"] > 0 and run["macs_lq_size"] == [
            12,
            16,
        ]  # astronaut 50x66 -> 48x64 / 4
    assert folder["run_a/sr_x4"]["params"] > 0 and folder["run_a/sr_x4"]["macs"] > 0
    assert folder["bicubic"]["params"] == 0
    # the bicubic row is MATLAB bicubic x4 of the 8-bit bicubic LR, scored on Y with a 4-px border: recomputed here
    for record in folder["bicubic"]["per_image"]:
        gt = (
            (mod_crop(load_image(next(photos.glob(f"{record['name']}.*"))), 4) * 255).round().astype(np.uint8)
        )
        upsampled = bicubic_upsample(bicubic_downsample(gt, 4), 4)
        assert psnr(upsampled, gt, crop_border=4, test_y_channel=True) == pytest.approx(
            record["psnr"], abs=1e-6
        )

    # the saved images are the scored ones: their PSNR against the mod-cropped GT is the per-image value
    for method, folder_name in [("run_a/sr_x4", "run_a_sr_x4"), ("bicubic", "bicubic")]:
        for record in folder[method]["per_image"]:
            restored = np.asarray(
                Image.open(out / "images" / "folder" / folder_name / f"{record['name']}.png")
            )
            source = next(photos.glob(f"{record['name']}.*"))
            gt = (mod_crop(load_image(source), 4) * 255).round().astype(np.uint8)
            assert restored.shape == gt.shape
            assert psnr(restored, gt, crop_border=4, test_y_channel=True) == pytest.approx(
                record["psnr"], abs=1e-6
            )

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == methods
    assert float(rows[2]["psnr"]) == folder["bicubic"]["mean"]["psnr"]  # csv and json write repr: exact
    with open(out / "per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * 3
    table = (out / "metrics.md").read_text()
    assert "| method | folder psnr | folder ssim |" in table and all(f"| {m} |" in table for m in methods)
    grids = sorted(p.name for p in (out / "grids" / "folder").iterdir())
    assert grids == ["astronaut.png", "camera.png"]
    grid = np.asarray(Image.open(out / "grids" / "folder" / "astronaut.png"))
    # rows: labels (18 px), full, zoom; columns: LQ, 3 outputs, GT
    assert grid.shape == (18 + 2 * 48 + 4 * 2, 5 * 64 + 6 * 2, 3)
    assert (grid[2:20].min(axis=-1) < 100).any(axis=0)[2 : 2 + 64].any(), "the column labels are drawn"
    assert list((out / "wandb").glob("offline-run-*")), "logger=wandb must leave an offline run"


@pytest.mark.parametrize("scale,published", [(4, 28.42), (2, 33.66)])
def test_bicubic_on_set5_matches_the_published_baseline(benchmarks_dir, tmp_path, scale, published):
    cfg = eval_cfg(
        "method=bicubic",
        "task=sr",
        f"scale={scale}",
        "data=set5",
        f"paths.benchmarks_dir={benchmarks_dir}",
        f"output_dir={tmp_path}",
        "save_images=false",
        "grids=0",
    )
    results = evaluate(cfg)
    assert results["datasets"]["set5"]["bicubic"]["mean"]["psnr"] == pytest.approx(published, abs=0.02)


@pytest.mark.slow
def test_eval_cli_smoke(benchmarks_dir, tmp_path):
    """The real command line: Hydra's parsing of data=/paths. overrides, the printed table, exit code 0 (a cold
    start, a new interpreter, is tested by test_rough_edges' run of train.py)."""
    proc = run_script(
        "eval.py", "method=bicubic", "task=sr", "scale=4", "data=set5", f"paths.benchmarks_dir={benchmarks_dir}",
        f"output_dir={tmp_path}", "grids=1", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| bicubic | 28.43 | 0.8111 |" in proc.stdout
    assert (tmp_path / "grids" / "set5" / "baby.png").is_file()
    assert len(list((tmp_path / "images" / "set5" / "bicubic").glob("*.png"))) == 5


@pytest.mark.slow
def test_eval_reports_missing_weights_and_data_clearly(ckpts, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    lama = tmp_path / "lama"
    lama.mkdir()
    Image.fromarray(skimage.data.chelsea()[:32, :32]).save(lama / "cat.png")
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 12)).save(lama / "cat_mask000.png")
    base = [
        f"ckpt={ckpts['inpainting']}",
        "data=places_eval",
        f"data.places_eval.images={lama}",
        f"output_dir={tmp_path}",
    ]
    # asked for explicitly, a metric whose weights are missing stops the run, naming the file and the way out
    with pytest.raises(UsageError) as err:
        evaluate(eval_cfg(*base, "metrics=[ssim,lpips]"))
    message = str(err.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "empty_torch_home") in message
    assert "metrics=[ssim]" in message
    # the task's default protocol (SSIM, LPIPS-VGG, FID) runs what it can and records what it skipped, and why
    results = evaluate(eval_cfg(*base))
    assert results["metrics"] == ["ssim"]
    assert set(results["skipped_metrics"]) == {"lpips", "fid"}
    assert "vgg16-397923af.pth" in results["skipped_metrics"]["lpips"]

    # without them: the LaMa layout (image + <name>_mask000.png in one folder) evaluates, holes composited
    results = evaluate(eval_cfg(*base, "metrics=[psnr,ssim]", "method=identity"))
    assert [r["name"] for r in results["datasets"]["places_eval"]["identity"]["per_image"]] == ["cat"]

    with pytest.raises(UsageError, match=r"'urban100'.*Urban100/HR.*does not exist"):
        evaluate(eval_cfg("method=bicubic", "task=sr", "data=urban100", f"paths.data_dir={tmp_path}"))
    with pytest.raises(UsageError, match="data.root="):
        evaluate(eval_cfg("method=bicubic", "task=sr", "data=folder"))
    with pytest.raises(UsageError, match="baseline for deblur/inpainting"):
        evaluate(eval_cfg("method=identity", "task=sr", "data=folder", f"data.root={lama}"))


# --- infer ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder with an RGB PNG, a greyscale JPEG, an RGBA PNG in a sub-folder and a 16-bit PNG."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "sub").mkdir()
    Image.fromarray(skimage.data.astronaut()[:20, :28]).save(root / "rgb.png")
    Image.fromarray(skimage.data.camera()[:18, :22]).save(root / "grey.jpg")
    rgba = np.dstack([skimage.data.chelsea()[:16, :24], np.full((16, 24), 128, np.uint8)])
    Image.fromarray(rgba).save(root / "sub" / "rgba.png")
    cv2.imwrite(str(root / "deep.png"), (skimage.data.coffee()[:16, :16, ::-1].astype(np.uint16) * 257))
    return root


@pytest.mark.slow
def test_infer_folder_and_file(ckpts, inputs, tmp_path):
    written = infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={inputs}", f"output={tmp_path / 'all'}"))
    names = sorted(p.relative_to(tmp_path / "all").as_posix() for p in written)
    assert names == ["deep.png", "grey.png", "rgb.png", "sub/rgba.png"]
    expected = {"rgb.png": (80, 112), "grey.png": (72, 88), "sub/rgba.png": (64, 96), "deep.png": (64, 64)}
    for name, size in expected.items():
        image = cv2.imread(str(tmp_path / "all" / name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (*size, 3), name
        assert image.dtype == (np.uint16 if name == "deep.png" else np.uint8), name

    one = infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={inputs / 'rgb.png'}", f"output={tmp_path / 'one'}"))
    assert one == [tmp_path / "one" / "rgb.png"]
    tiled = infer(
        infer_cfg(
            f"ckpt={ckpts['sr']}",
            f"input={inputs / 'rgb.png'}",
            f"output={tmp_path / 'tiled'}",
            "tile=8",
            "tile_overlap=4",
        )
    )
    assert np.asarray(Image.open(tiled[0])).shape == (80, 112, 3)


def test_infer_is_reproducible_with_a_seed(ckpts, inputs, tmp_path):
    def run(out: str, seed: int) -> bytes:
        infer(
            infer_cfg(
                f"ckpt={ckpts['sr']}",
                f"input={inputs / 'rgb.png'}",
                f"output={tmp_path / out}",
                f"seed={seed}",
            )
        )
        return (tmp_path / out / "rgb.png").read_bytes()

    first = run("a", 0)
    assert run("b", 0) == first
    assert run("c", 1) != first  # another start vector of the prior's diffusion


def test_infer_inpainting_keeps_known_pixels(ckpts, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    photo = skimage.data.astronaut()[100:124, 180:212]
    Image.fromarray(photo).save(images / "face.png")
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[6:14, 10:20] = 255
    Image.fromarray(hole).save(masks / "face_mask000.png")  # LaMa's naming
    [path] = infer(
        infer_cfg(
            f"ckpt={ckpts['inpainting']}", f"input={images}", f"mask={masks}", f"output={tmp_path / 'out'}"
        )
    )
    result = np.asarray(Image.open(path))
    known = hole == 0
    assert np.array_equal(result[known], photo[known])
    assert not np.array_equal(
        result[~known], np.zeros_like(result[~known])
    )  # the hole is filled, not left black

    with pytest.raises(UsageError, match="mask="):
        infer(infer_cfg(f"ckpt={ckpts['inpainting']}", f"input={images}", f"output={tmp_path / 'x'}"))
    Image.fromarray(photo).save(images / "other.png")
    with pytest.raises(UsageError, match="no mask for image 'other'"):
        infer(
            infer_cfg(
                f"ckpt={ckpts['inpainting']}", f"input={images}", f"mask={masks}", f"output={tmp_path / 'x'}"
            )
        )


def test_infer_errors_name_the_problem(ckpts, inputs, tmp_path):
    out = f"output={tmp_path / 'out'}"
    with pytest.raises(UsageError, match="stage-1 checkpoint.*ground truth"):
        infer(infer_cfg(f"ckpt={ckpts['sr_s1']}", f"input={inputs}", out))
    with pytest.raises(UsageError, match=r"checkpoint .*missing\.ckpt.* does not exist"):
        infer(infer_cfg(f"ckpt={tmp_path / 'missing.ckpt'}", f"input={inputs}", out))
    with pytest.raises(UsageError, match=r"input .*nowhere.* does not exist"):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={tmp_path / 'nowhere'}", out))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="contains no images"):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={tmp_path / 'empty'}", out))
    with pytest.raises(UsageError, match="overwrite the input"):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={inputs}", f"output={inputs}"))
    with pytest.raises(UsageError, match="tile_overlap < tile"):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={inputs}", out, "tile=16", "tile_overlap=16"))


# --- bad inputs: one error naming the culprit, before the long run ------------------------------------------
def _save_photo(path: Path, height: int, width: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.astronaut()[100 : 100 + height, 150 : 150 + width]).save(path)
    return path


def test_eval_paired_gt_must_be_exactly_scale_times_the_lq(tmp_path):
    lq, gt = tmp_path / "lq", tmp_path / "gt"
    _save_photo(lq / "a.png", 16, 16)
    _save_photo(gt / "a.png", 66, 67)  # mod-cropped to 64x64 = 4 x 16x16: BasicSR's crop rule, accepted
    base = ["method=bicubic", "task=sr", "scale=4", "data=paired", f"data.lq={lq}", f"data.gt={gt}"]
    results = evaluate(eval_cfg(*base, f"output_dir={tmp_path / 'ok'}"))
    assert [r["name"] for r in results["datasets"]["paired"]["bicubic"]["per_image"]] == ["a"]

    _save_photo(lq / "b.png", 16, 16)
    _save_photo(gt / "b.png", 128, 128)  # 8x: scoring the top-left 64x64 corner would be silently wrong
    wrong = r"1 pair.*not 4x the LQ.*gt/b\.png \(128x128\) vs .*lq/b\.png \(16x16\)"
    with pytest.raises(UsageError, match=wrong):
        evaluate(eval_cfg(*base, f"output_dir={tmp_path / 'bad'}"))
    assert not (tmp_path / "bad" / "metrics.json").exists()


@pytest.mark.slow
def test_eval_names_images_too_small_for_the_border_crop(tmp_path):
    photos = tmp_path / "photos"
    _save_photo(photos / "big.png", 48, 48)
    _save_photo(photos / "tiny.png", 16, 24)  # SR x4: crop 4 leaves 8x16, under SSIM's 11x11 window
    with pytest.raises(UsageError, match=r"1 image.*4-pixel border crop.*19x19.*tiny\.png \(16x24\)"):
        evaluate(eval_cfg("method=bicubic", "task=sr", "data=folder", f"data.root={photos}",
                          f"output_dir={tmp_path / 'out'}"))  # fmt: skip


def test_eval_and_infer_refuse_an_output_path_under_a_file(ckpts, inputs, photos, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    with pytest.raises(
        UsageError, match=r"output_dir=.*results\.txt/eval cannot be a folder: .*\.txt is a file"
    ):
        evaluate(eval_cfg("method=bicubic", "task=sr", "data=folder", f"data.root={photos}",
                          f"output_dir={blocker / 'eval'}"))  # fmt: skip
    with pytest.raises(UsageError, match=r"output=.*results\.txt/sr cannot be a folder"):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={inputs}", f"output={blocker / 'sr'}"))
    # the command line: Hydra would create its run folder there first; one error line instead of a traceback
    proc = run_script("eval.py", "method=bicubic", "task=sr", f"output_dir={blocker / 'eval'}", timeout=120)
    expected = f"error: output_dir={blocker / 'eval'} cannot be a folder: {blocker} is a file; choose another"
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"{expected} output_dir="]


def test_tiles_smaller_than_the_size_multiple_are_refused(ckpts, inputs, tmp_path):
    # the tiny SR model pads to multiples of 8: tile=2 would run the network once per 2x2 LQ pixels
    with pytest.raises(UsageError, match=r"tile=2 is smaller than the size multiple 8 .*tile>=8"):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={inputs}", f"output={tmp_path / 'i'}", "tile=2",
                        "tile_overlap=1"))  # fmt: skip
    with pytest.raises(UsageError, match=r"tile=4 is smaller than the size multiple 8"):
        evaluate(eval_cfg(f"ckpt={ckpts['sr']}", "data=folder", f"data.root={inputs}", "tile=4",
                          "tile_overlap=0", f"output_dir={tmp_path / 'e'}"))  # fmt: skip


def test_infer_restores_every_readable_image_then_reports_the_others(ckpts, tmp_path):
    folder = tmp_path / "in"
    _save_photo(folder / "b_good.png", 12, 12)
    _save_photo(folder / "c_good.png", 12, 16)
    (folder / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # sorted first
    out = tmp_path / "out"
    with pytest.raises(
        UsageError, match=r"(?s)skipped 1 of 3 .*a_broken\.png.*2 restored image\(s\) were written.*skip_bad"
    ):
        infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={folder}", f"output={out}"))
    assert sorted(p.name for p in out.iterdir()) == ["b_good.png", "c_good.png"]

    written = infer(infer_cfg(f"ckpt={ckpts['sr']}", f"input={folder}", f"output={tmp_path / 'o2'}",
                              "skip_bad_files=true"))  # fmt: skip
    assert [p.name for p in written] == ["b_good.png", "c_good.png"]


@pytest.mark.parametrize(
    ("preset", "mask_set", "folder"),
    [
        ("places_eval", None, "Places365/evaluation/random_thick_512"),  # the paper's wide masks
        ("places_eval", "thin_512", "Places365/evaluation/random_thin_512"),  # narrow
        ("celebahq_eval", None, "CelebA-HQ/evaluation/random_thick_256"),
        ("celebahq_eval", "thin_256", "CelebA-HQ/evaluation/random_thin_256"),
    ],
)
def test_inpainting_presets_select_the_paper_mask_sets(preset, mask_set, folder):
    overrides = [f"data={preset}", *([f"data.{preset}.mask_set={mask_set}"] if mask_set else [])]
    spec = eval_cfg(*overrides).data[preset]
    assert spec.images.endswith(folder) and spec.masks == spec.images
