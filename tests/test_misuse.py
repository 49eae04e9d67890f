"""What a new user's mistakes and odd files get: the right result or one clear error, never a silently wrong
result (a re-run mixed into an old run, a key nothing reads, a photo restored on its side, a run restoring
its own outputs, an animation left out without a word)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps
from test_eval_infer import eval_cfg, infer_cfg, save_checkpoint
from test_training import overrides

from diffir.checkpoint import read_checkpoint
from diffir.config import compose_config
from diffir.convert import main as convert
from diffir.errors import RunSetupError, UsageError
from diffir.evaluation import samples
from diffir.io import find_images, read_header, read_rgb, upright
from diffir.runs import train as training
from diffir.runs.evaluate import evaluate
from diffir.runs.infer import infer
from diffir.runs.train import train


@pytest.mark.slow
def test_rerunning_a_run_folder_is_refused_or_moves_the_old_run_aside(tmp_path):
    first = train(compose_config(overrides(tmp_path, "sr", 1, 2)))
    with pytest.raises(RunSetupError, match=r"already holds a run.*resume=auto.*name=.*overwrite=true"):
        train(compose_config(overrides(tmp_path, "sr", 1, 3)))
    second = train(compose_config(overrides(tmp_path, "sr", 1, 3, "overwrite=true")))
    assert second["last_checkpoint"] == first["last_checkpoint"]
    assert read_checkpoint(second["last_checkpoint"])["global_step"] == 3, "last.ckpt is the new run's"
    (aside,) = (tmp_path / "test" / "stage1").glob("replaced-*")
    assert read_checkpoint(aside / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert not list((tmp_path / "test" / "stage1" / "checkpoints").glob("*v1.ckpt")), "runs were mixed"


@pytest.mark.parametrize("key", ["+stage1.max_step=3", "+stage2.lr=0.1"])
def test_keys_nothing_reads_are_refused(tmp_path, key):
    cfg = compose_config([*overrides(tmp_path, "sr", 1, 2), key])
    name = key[1:].split("=")[0]
    with pytest.raises(RunSetupError, match=rf"unknown key {name}: nothing reads it.*max_steps"):
        train(cfg)


@pytest.mark.parametrize("patch", [32, 48])
def test_sr_scale_3_names_the_scales(tmp_path, patch):
    cfg = compose_config([*overrides(tmp_path, "sr", 1, 2), "scale=3", f"stage1.patch_size={patch}"])
    with pytest.raises(RunSetupError, match=r"scale=3: DiffIR's SR models upscale by 1, 2, 4"):
        train(cfg)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_images_are_read_upright_as_a_viewer_shows_them(tmp_path, orientation):
    """Every EXIF orientation, in the 8-bit path and in the array transform, against PIL's exif_transpose."""
    photo = skimage.data.chelsea()[:30, :50]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    Image.fromarray(photo).save(path, exif=exif, quality=95)
    with Image.open(path) as img:
        shown = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        stored = np.asarray(img.convert("RGB"))
    assert shown.shape[:2] == ((50, 30) if orientation >= 5 else (30, 50))
    np.testing.assert_array_equal(read_rgb(path), shown)  # the same decoded pixels, moved: exact
    np.testing.assert_array_equal(upright(stored, orientation), shown)
    assert read_header(path) == shown.shape[:2]


def test_an_animated_gif_gives_its_first_frame_with_a_warning(tmp_path, caplog):
    frames = [Image.fromarray(np.full((8, 10, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert [name for _, name in find_images(tmp_path)] == ["anim"]
    with caplog.at_level(logging.WARNING, logger="diffir"):
        first = read_rgb(tmp_path / "anim.gif")
    assert first.shape == (8, 10, 3) and abs(int(first.mean()) - 40) <= 2
    assert "animated (2 frames): using its first frame" in caplog.text


def test_infer_does_not_restore_its_own_output_inside_the_input_folder(tmp_path):
    ckpt = save_checkpoint(tmp_path / "sr.ckpt", "sr", 2, 4)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.coffee()[:20, :24]).save(photos / "cup.png")
    for _ in range(2):
        written = infer(infer_cfg(f"ckpt={ckpt}", f"input={photos}", f"output={photos / 'restored'}"))
        assert [p.relative_to(photos).as_posix() for p in written] == ["restored/cup.png"]


def test_fid_on_too_few_images_is_refused_before_the_run_and_warned_below_the_reliable_size(caplog):
    one = samples.TestSet([], [Path("a.png")], [(64, 64)])
    with pytest.raises(UsageError, match=r"FID needs at least 2 images and dataset 'x' has 1"):
        samples.check_fid_set_sizes({"x": one}, {"metrics": ["psnr", "fid"]})
    samples.check_fid_set_sizes({"x": one}, {"metrics": ["psnr"]})  # no FID: nothing to check
    two = samples.TestSet([], [Path("a.png"), Path("b.png")], [(64, 64)] * 2)
    with caplog.at_level(logging.WARNING, logger="diffir"):
        samples.check_fid_set_sizes({"x": two}, {"metrics": ["fid"]})
    assert "FID on 2 images of 'x' is dominated by its small-sample bias" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_last_ckpt_names_the_newest_intact_checkpoint(tmp_path, damage):
    train(compose_config(overrides(tmp_path, "sr", 1, 4, "stage1.val_every=2")))
    checkpoints = tmp_path / "test" / "stage1" / "checkpoints"
    last = checkpoints / "last.ckpt"
    raw = last.read_bytes()
    last.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"")
    with pytest.raises(
        RunSetupError, match=rf"last\.ckpt is damaged .*{damage}.*\(step 4\).*ckpt_path="
    ) as err:
        train(compose_config(overrides(tmp_path, "sr", 1, 4, "stage1.val_every=2", "resume=auto")))
    named = Path(str(err.value).rsplit("ckpt_path=", 1)[1])
    assert named.parent == checkpoints and read_checkpoint(named)["global_step"] == 4
    assert "pickled" not in str(err.value)


def test_converting_a_diffir_file_says_it_needs_no_conversion(tmp_path):
    ckpt = save_checkpoint(tmp_path / "sr.ckpt", "sr", 2, 4)
    with pytest.raises(
        SystemExit, match=r"already a diffir checkpoint or model file: it needs no conversion"
    ):
        convert(["--task", "sr", "--stage", "2", "--out", str(tmp_path / "x.pt"), str(ckpt)])


def test_the_next_command_continues_this_run_with_its_overrides(monkeypatch):
    """After ``debug=fast data=samples``, stage 2 must get them too (the defaults' DF2K is not there)."""
    given = [
        "task=sr",
        "stage=1",
        "debug=fast",
        "data=samples",
        "stage1.max_steps=3",
        "resume=auto",
        "seed=3",
    ]
    hydra = SimpleNamespace(overrides=SimpleNamespace(task=given))
    monkeypatch.setattr(training.HydraConfig, "get", staticmethod(lambda: hydra))
    cfg = compose_config(given)
    assert training.next_command(cfg, "stage=2") == (
        f"python train.py task=sr debug=fast data=samples seed=3 name={cfg.name} stage=2"
    )
    assert "adversarial=srgan" in training.next_command(cfg, "stage=2", "adversarial=srgan")


@pytest.mark.parametrize("name", ["set5", "set14"])
def test_a_missing_benchmark_says_how_to_get_it(tmp_path, name):
    cfg = eval_cfg("method=bicubic", "task=sr", "scale=4", f"data={name}", f"paths.benchmarks_dir={tmp_path}")
    with pytest.raises(
        UsageError, match=rf"python -m diffir.data.prepare {name} --root .*data\.{name}\.root="
    ):
        evaluate(cfg)
