"""The pixel-diffusion baselines through the project's commands: train.py method=..., exact resume,
eval.py / infer.py on odd-sized images, GDP with a trained prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from hydra import compose, initialize_config_dir
from numerics import assert_float32_close
from PIL import Image

from diffir.baselines import SR3, Blur, ConditionalDDPM, DDPMPrior, task_operator
from diffir.checkpoint import atomic_save, load_model, model_record, read_checkpoint
from diffir.config import compose_config
from diffir.errors import RunSetupError, UsageError
from diffir.model_config import CONF_DIR
from diffir.runs.evaluate import evaluate
from diffir.runs.infer import infer
from diffir.runs.train import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

METHODS = {"sr3": ("sr", SR3), "cddpm": ("deblur", ConditionalDDPM), "ddpm_prior": ("sr", DDPMPrior)}


def overrides(tmp_path: Path, method: str, task: str, steps: int, *extra: str) -> list[str]:
    """The xs U-Net, 32-px patches, batch 2, CSV logger, 2 validation reverse steps on 32-px crops."""
    return [
        f"method={method}",
        f"task={task}",
        "data=samples",
        "method.net.unet.preset=xs",
        "logger=csv",
        "trainer=cpu",
        "~callbacks.progress",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"paths.experiments_dir={tmp_path}",
        f"baseline.max_steps={steps}",
        "baseline.val_every=2",
        "baseline.batch_size=2",
        "baseline.patch_size=32",
        "baseline.val_steps=2",
        "data.num_workers=0",
        "data.val_center_crop=32",
        *extra,
    ]


def run(tmp_path: Path, method: str, steps: int, *extra: str) -> dict:
    return train(compose_config(overrides(tmp_path, method, METHODS[method][0], steps, *extra)))


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_resumes_exactly_and_rebuilds_from_its_checkpoint(tmp_path, method):
    full = run(tmp_path / "full", method, 4)
    assert run(tmp_path / "half", method, 2)["steps"] == 2
    resumed = run(tmp_path / "half", method, 4, "resume=auto")
    assert full["steps"] == resumed["steps"] == 4
    a = read_checkpoint(Path(full["last_checkpoint"]))["state_dict"]
    b = read_checkpoint(Path(resumed["last_checkpoint"]))["state_dict"]
    assert a.keys() == b.keys()
    for key in a:  # the same steps on the same batches: equal up to the rounding of another thread split
        assert_float32_close(b[key], a[key], terms=64, msg=key)
    model, config = load_model(full["last_checkpoint"])
    assert isinstance(model, METHODS[method][1]) and config["method"] == method
    assert model.unet.channels == 16  # the xs preset
    assert "val/psnr" in full["val"]


def test_bad_method_settings_are_one_line_errors(tmp_path):
    with pytest.raises(RunSetupError, match="method=sr3: unknown U-Net preset 'huge'"):
        train(compose_config(overrides(tmp_path, "sr3", "sr", 2, "method.net.unet.preset=huge")))
    with pytest.raises(
        RunSetupError, match="method=sr3 task=realsr: the pixel-space baselines train on paired"
    ):
        train(compose_config(overrides(tmp_path, "sr3", "realsr", 2)))


# --- eval.py / infer.py -----------------------------------------------------------------------------------
def save_baseline(path: Path, model: torch.nn.Module) -> Path:
    """A randomly initialised baseline saved as a model file (what training writes in its checkpoints)."""
    atomic_save(model_record(model.config(), model.state_dict()), path)
    return path


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("baselines")
    torch.manual_seed(0)
    return {
        "sr3": save_baseline(root / "sr3.ckpt", SR3(unet={"preset": "xs"}, steps=3)),
        "cddpm_deblur": save_baseline(
            root / "cddpm.ckpt", ConditionalDDPM(task="deblur", unet={"preset": "xs"}, steps=3)
        ),
        "cddpm_inpainting": save_baseline(
            root / "cddpm_inp.ckpt", ConditionalDDPM(task="inpainting", unet={"preset": "xs"}, steps=3)
        ),
        "prior": save_baseline(root / "prior.ckpt", DDPMPrior(unet={"preset": "xs"})),
    }


@pytest.fixture(scope="module")
def odd_photo(tmp_path_factory) -> Path:
    """One 37 x 29 crop of a photo (odd sides; SR: the GT is mod-cropped to 36 x 28, the LQ is 9 x 7)."""
    root = tmp_path_factory.mktemp("odd")
    Image.fromarray(skimage.data.coffee()[100:137, 200:229]).save(root / "coffee.png")
    return root


def eval_run(tmp_path: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR / "eval"), version_base="1.3"):
        cfg = compose(
            "eval", overrides=[f"output_dir={tmp_path}", "metrics=[psnr,ssim]", "grids=1", *overrides]
        )
    return evaluate(cfg)


def infer_run(*overrides: str) -> list[Path]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return infer(compose("infer", overrides=list(overrides)))


def test_eval_scores_sr3_and_gdp_on_an_odd_sized_image(tmp_path, baselines, odd_photo):
    results = eval_run(
        tmp_path,
        f"ckpt={baselines['sr3']}",
        "method=gdp",
        f"prior_ckpt={baselines['prior']}",
        "steps=3",
        "data=folder",
        f"data.root={odd_photo}",
    )
    rows = results["datasets"]["folder"]
    assert set(rows) == {"sr3", "GDP-x0"}
    for row in rows.values():
        assert row["mean"]["psnr"] > 0 and row["macs"] > 0 and row["params"] > 0
    saved = Image.open(tmp_path / "images" / "folder" / "sr3" / "coffee.png")
    assert saved.size == (28, 36)  # the mod-cropped GT size, from a 9 x 7 LQ


def test_infer_restores_odd_sized_images_with_baseline_checkpoints(tmp_path, baselines, odd_photo):
    out = infer_run(
        f"ckpt={baselines['cddpm_deblur']}", f"input={odd_photo}", f"output={tmp_path / 'a'}", "steps=2"
    )
    assert Image.open(out[0]).size == (29, 37)
    mask = np.zeros((37, 29), np.uint8)
    mask[10:20, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = infer_run(
        f"ckpt={baselines['cddpm_inpainting']}",
        f"input={odd_photo}",
        f"output={tmp_path / 'b'}",
        f"mask={tmp_path / 'mask.png'}",
        "sampler=ddpm",
        "steps=2",
    )
    restored = np.asarray(Image.open(out[0]))
    original = np.asarray(Image.open(odd_photo / "coffee.png"))
    assert restored.shape == (37, 29, 3) and np.array_equal(restored[mask == 0], original[mask == 0])
    sr = infer_run(f"ckpt={baselines['sr3']}", f"input={odd_photo}", f"output={tmp_path / 'c'}", "steps=2")
    assert Image.open(sr[0]).size == (29 * 4, 37 * 4)


def test_baseline_misuse_is_a_one_line_error(tmp_path, baselines, odd_photo):
    with pytest.raises(UsageError, match="unconditional DDPM prior.*method=gdp prior_ckpt="):
        infer_run(f"ckpt={baselines['prior']}", f"input={odd_photo}", f"output={tmp_path}")
    with pytest.raises(UsageError, match="method=gdp needs prior_ckpt="):
        eval_run(tmp_path, "method=gdp", "task=sr", "data=folder", f"data.root={odd_photo}")
    with pytest.raises(UsageError, match="sampler must be one of"):
        infer_run(
            f"ckpt={baselines['cddpm_deblur']}", f"input={odd_photo}", f"output={tmp_path}", "sampler=euler"
        )


def test_gdp_deblurs_with_the_known_kernel_of_the_synthetic_blur(tmp_path, baselines, odd_photo, monkeypatch):
    import diffir.baselines.evaluation as pixel

    operators = []

    def recording(*args, **kwargs):
        operator, y = task_operator(*args, **kwargs)
        operators.append(operator)
        return operator, y

    monkeypatch.setattr(pixel, "task_operator", recording)
    results = eval_run(
        tmp_path, "method=gdp", "task=deblur", f"prior_ckpt={baselines['prior']}", "steps=2", "data=folder",
        f"data.root={odd_photo}",
    )  # fmt: skip
    assert results["datasets"]["folder"]["GDP-x0"]["mean"]["psnr"] > 0
    assert operators and all(isinstance(op, Blur) and op.kernel.shape[-1] == 31 for op in operators)
