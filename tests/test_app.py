"""The web page (``python -m diffir.app``): its handlers on tiny models, then the app served and driven by
``gradio_client`` and by a headless Chromium (both slow, sharing one server)."""

from __future__ import annotations

import ast
import math
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from scripts import _run_as_main as run_as_main  # run_script's child: runs a script as python would

from diffir.checkpoint import atomic_save, model_record
from diffir.data import bicubic_downsample
from diffir.errors import UsageError
from diffir.model_config import CONF_DIR, model_config, model_preset
from diffir.models import build_model
from diffir.runs.infer import infer

gr = pytest.importorskip("gradio", reason="the app needs the `app` extra: pip install -e '.[app]'")
from diffir.app import AUTO_WHOLE_PIXELS, RestoreApp, create, drawn_mask, load_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = REPO / "docs" / "app.png"  # rewritten when DIFFIR_UPDATE_SCREENSHOT=1
SERVED = "sr_x4_tiny.ckpt"  # the served app's model, as its ckpt= names it

pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(path: Path, task: str, scale: int, stage: int = 2) -> Path:
    """A tiny, randomly initialised model file (as training and diffir.convert write them)."""
    arch = model_preset(task, "tiny")
    torch.manual_seed(0)
    model = build_model(task, stage, scale, **arch)
    atomic_save(
        model_record(model_config(task, stage, scale, arch, {"enabled": True}), model.state_dict()), path
    )
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    tasks = {"sr": 4, "deblur": 1, "inpainting": 1}
    return {task: save_checkpoint(root / f"{task}.ckpt", task, scale) for task, scale in tasks.items()}


@pytest.fixture(scope="module")
def app(ckpts, tmp_path_factory) -> RestoreApp:
    models = load_models([str(p) for p in ckpts.values()], torch.device("cpu"))
    return RestoreApp(models, max_pixels=AUTO_WHOLE_PIXELS, workdir=tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A 40x52 crop of chelsea (sizes not multiples of the model's 8) as an 8-bit and a 16-bit PNG."""
    root = tmp_path_factory.mktemp("photos")
    crop = skimage.data.chelsea()[100:140, 150:202]
    Image.fromarray(crop).save(root / "cat.png")
    wide = (
        crop.astype(np.uint16) * 256 + np.arange(52, dtype=np.uint16)[:, None]
    )  # values an 8-bit file cannot hold
    cv2.imwrite(str(root / "cat16.png"), wide[..., ::-1])
    Image.fromarray(bicubic_downsample(skimage.data.chelsea(), 4)).save(root / "chelsea.png")  # 75x112
    return {"8": root / "cat.png", "16": root / "cat16.png", "lq": root / "chelsea.png"}


def infer_bytes(tmp_path: Path, *overrides: str) -> bytes:
    """The PNG ``infer.py`` writes for one image."""
    out = tmp_path / "infer"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[*overrides, f"output={out}"])
    (written,) = infer(cfg)
    return written.read_bytes()


def pixels(path: str) -> np.ndarray:
    """An RGB PNG as an H x W x 3 array in its own precision."""
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., ::-1]


class Progress:
    """Stands in for ``gr.Progress``: records what the handler reports."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def __call__(self, value: object, desc: str | None = None, unit: str = "steps") -> None:
        self.calls.append(value)


@pytest.mark.parametrize(
    ("bits", "tiling", "extra"),
    [("8", "automatic", []), ("16", "tiles", ["tile=16", "tile_overlap=4"])],
    ids=["8bit-whole", "16bit-tiles"],
)
def test_sr_x4_is_the_size_and_the_bytes_infer_writes(app, ckpts, photos, tmp_path, bits, tiling, extra):
    progress = Progress()
    (before, after), info, png = app.restore(
        str(ckpts["sr"]), str(photos[bits]), seed=7, tiling=tiling, tile=16, overlap=4, progress=progress
    )
    assert after == png and pixels(before).shape == pixels(after).shape == (160, 208, 3)
    assert "Output 208×160" in info and f"{bits}-bit PNG" in info and "seed=7" in info
    assert Path(png).read_bytes() == infer_bytes(
        tmp_path, f"ckpt={ckpts['sr']}", f"input={photos[bits]}", "seed=7", *extra
    )
    assert pixels(png).dtype == (np.uint16 if bits == "16" else np.uint8)
    if tiling == "tiles":  # 40x52 in tiles of 16 overlapping by 4: 3 x 4 tiles, each reported
        assert " ".join(extra) in info
        assert [c for c in progress.calls if isinstance(c, tuple)] == [(i, 12) for i in range(1, 13)]


def test_deblurring_keeps_the_size_and_the_bytes_of_infer(app, ckpts, photos, tmp_path):
    (before, after), _, png = app.restore(str(ckpts["deblur"]), str(photos["8"]), seed=1, progress=Progress())
    assert pixels(before).shape == pixels(after).shape == (40, 52, 3)
    assert Path(png).read_bytes() == infer_bytes(
        tmp_path, f"ckpt={ckpts['deblur']}", f"input={photos['8']}", "seed=1"
    )


def editor_value(image: np.ndarray, strokes: list[tuple[slice, slice]]) -> dict:
    """What gr.ImageEditor(type="numpy") hands the handler: RGBA layers, opaque where the brush painted."""
    layer = np.zeros((*image.shape[:2], 4), np.uint8)
    for rows, cols in strokes:
        layer[rows, cols] = (255, 0, 255, 255)
    background = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    return {"background": background, "layers": [layer], "composite": background}


def test_inpainting_fills_the_painted_hole_as_infer_does_with_that_mask(app, ckpts, photos, tmp_path):
    image = np.asarray(Image.open(photos["8"]))
    editor = editor_value(image, [(slice(10, 20), slice(5, 30)), (slice(15, 35), slice(25, 32))])
    key = str(ckpts["inpainting"])
    (before, after), info, png = app.restore(
        key, str(photos["8"]), editor=editor, seed=2, progress=Progress()
    )
    hole = editor["layers"][0][..., 3] > 0
    assert (pixels(after)[~hole] == image[~hole]).all(), "known pixels are kept"
    assert (pixels(before)[hole] == 0).all(), "before: the network's view, the hole blanked"
    mask_file = tmp_path / "mask.png"
    Image.fromarray(hole.astype(np.uint8) * 255).save(mask_file)
    expected = infer_bytes(tmp_path, f"ckpt={key}", f"input={photos['8']}", f"mask={mask_file}", "seed=2")
    assert Path(png).read_bytes() == expected
    # the same hole as an uploaded mask file, and nothing painted: the same image
    _, _, from_file = app.restore(key, str(photos["8"]), mask=str(mask_file), seed=2, progress=Progress())
    assert Path(from_file).read_bytes() == expected
    with pytest.raises(gr.Error, match="inpainting needs a hole: paint it over the image"):
        app.restore(key, str(photos["8"]), editor=editor_value(image, []), progress=Progress())


def test_the_editor_shows_the_image_for_inpainting_models_only(app, ckpts, photos):
    about, editor, mask = app.describe(str(ckpts["inpainting"]), str(photos["16"]))
    assert "inpainting ×1" in about and "Input cat16.png: 52×40, 16-bit → output 52×40" in about
    assert editor["visible"] and mask["visible"] and editor["value"]["background"].shape == (40, 52, 3)
    about, editor, mask = app.describe(str(ckpts["sr"]), str(photos["8"]))
    assert "super-resolution ×4" in about and "→ output 208×160" in about
    assert not editor["visible"] and not mask["visible"]
    with pytest.raises(gr.Error, match=r"drawn mask is 52×41 but the image is 52×40"):
        drawn_mask({"layers": [np.full((41, 52, 4), 255, np.uint8)]}, (40, 52))


def test_an_image_over_the_pixel_limit_gets_a_message(app, ckpts, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((520, 520, 3), np.uint8)).save(big)
    with pytest.raises(gr.Error) as err:
        app.restore(str(ckpts["sr"]), str(big), progress=Progress())
    assert err.value.message == (
        "big.png is 520×520 = 270,400 pixels, over this app's limit of 262,144: downscale or crop it, start the "
        "app with a larger max_pixels=, or restore it with infer.py (tile= bounds its memory)"
    )
    about, _, _ = app.describe(str(ckpts["sr"]), str(big))
    assert "⚠ big.png is 520×520" in about


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_an_unreadable_file_gets_a_message(app, ckpts, photos, tmp_path, kind):
    bad = tmp_path / "bad.png"
    data = b"not an image" if kind == "text" else photos["8"].read_bytes()[:300]
    bad.write_bytes(data)
    with pytest.raises(gr.Error, match=r"cannot read bad\.png as an image \(.+\); upload a PNG, JPEG"):
        app.restore(str(ckpts["sr"]), str(bad), progress=Progress())


def test_settings_and_models_are_checked_with_a_message(app, ckpts, photos, tmp_path):
    sr = str(ckpts["sr"])
    with pytest.raises(gr.Error, match="no image: drop, paste or upload one"):
        app.restore(sr, None, progress=Progress())
    with pytest.raises(gr.Error, match=r"tile size and overlap: need tile > 0 and 0 <= tile_overlap < tile"):
        app.restore(sr, str(photos["8"]), tiling="tiles", tile=16, overlap=16, progress=Progress())
    with pytest.raises(gr.Error, match=r"tile=4 is smaller than the size multiple 8"):
        app.restore(sr, str(photos["8"]), tiling="tiles", tile=4, overlap=1, progress=Progress())
    empty = RestoreApp(
        [], AUTO_WHOLE_PIXELS, tmp_path, demo_ckpt="experiments/demo/stage2/checkpoints/last.ckpt"
    )
    with pytest.raises(
        gr.Error, match=r"run `make demo` \(it trains `experiments/demo/stage2/checkpoints/last"
    ):
        empty.restore(None, str(photos["8"]), progress=Progress())


def app_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="app", overrides=list(overrides))


def test_the_config_offers_the_demo_checkpoint_and_refuses_bad_sources(ckpts, tmp_path):
    demo = tmp_path / "experiments" / "demo" / "stage2" / "checkpoints" / "last.ckpt"
    cfg = app_cfg(f"default_ckpt={demo}", "examples=[chelsea]")
    page = create(cfg, tmp_path / "work")  # no checkpoint yet: the page says how to get one
    assert (
        "make demo" in str(page.config) and (tmp_path / "work" / "examples" / "chelsea_lq_x4.png").is_file()
    )
    with pytest.raises(UsageError, match=r"checkpoint .*missing\.ckpt .* does not exist"):
        create(app_cfg(f"ckpt={tmp_path / 'missing.ckpt'}"), tmp_path / "work")
    stage1 = save_checkpoint(tmp_path / "s1.ckpt", "sr", 4, stage=1)
    with pytest.raises(UsageError, match=r"s1\.ckpt is a stage-1 checkpoint"):
        create(app_cfg(f"ckpt=[{ckpts['sr']},{stage1}]"), tmp_path / "work")
    with pytest.raises(UsageError, match=r"examples: no bundled photo 'cat'; choose from astronaut, chelsea"):
        create(app_cfg(f"ckpt={ckpts['sr']}", "examples=[cat]"), tmp_path / "work")


def test_only_the_app_module_imports_gradio():
    """``import diffir`` stays light: no module of the package but diffir/app.py imports gradio, and none
    imports diffir.app (checked in the source: this process has imported gradio already)."""
    offenders = []
    for path in sorted((REPO / "diffir").rglob("*.py")):
        if path.name == "app.py" and path.parent.name == "diffir":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module or ''}.{a.name}" for a in node.names)]
            if any(n.split(".")[0] == "gradio" or n in ("diffir.app", "app", ".app") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders


# --- the app served (slow) ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ckpts, tmp_path_factory) -> Iterator[str]:
    """``python -m diffir.app`` with the tiny SR checkpoint on a free port, shared by the slow tests: a child
    forked from this process (tests/scripts.py), which has imported torch, gradio and diffir already (a new
    interpreter spends ~15 s of CPU on that)."""
    folder, port = tmp_path_factory.mktemp("server"), free_port()
    launcher = folder / "diffir_app.py"
    launcher.write_text("from diffir.app import main\n\nmain()\n")
    (folder / SERVED).symlink_to(ckpts["sr"])  # relative to the app's folder: short in the screenshot
    argv = [str(launcher), f"ckpt={SERVED}", f"port={port}", "examples=[chelsea]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    out, err = folder / "stdout", folder / "stderr"
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: serves until SIGINT, never returns
        run_as_main(argv, folder, env, out, err)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
                    pytest.fail(f"the app did not start:\n{out.read_text()}{err.read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        os.kill(pid, signal.SIGINT)  # Gradio closes the server, the app removes its temporary folder
        for _ in range(100):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.mark.slow
def test_gradio_client_gets_the_restored_image(server, photos):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    (before, after), info, png = client.predict(
        SERVED,
        handle_file(str(photos["8"])),
        None,
        None,
        0,
        "automatic",
        256,
        32,
        api_name="/restore",
    )
    for path in (before, after, png):
        assert Image.open(path).size == (208, 160)
    assert "Output 208×160" in info


def require_chromium() -> None:
    """Skip without Debian's chromium and chromium-driver, except in CI (.ci/run installs them)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver"
        if CI:
            pytest.fail(f"{reason} (.ci/run installs them before make test)")
        pytest.skip(reason)


@pytest.mark.slow
def test_a_browser_uploads_restores_and_sees_the_result(server, photos, tmp_path):
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#input-image input[type=file]"))
        upload.send_keys(str(photos["lq"]))
        wait.until(lambda d: "→ output 448×300" in d.find_element(By.ID, "about").text)
        driver.find_element(By.ID, "restore").click()
        wait.until(lambda d: "Output 448×300" in d.find_element(By.ID, "result-info").text)
        images = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result img") or None)
        sizes = [
            driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", i)
            for i in images
        ]
        assert sizes == [[448, 300], [448, 300]], "before and after, at the output size"
        assert "chelsea.png" in driver.find_element(By.ID, "download").text.replace("\n", "")
        height = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
        driver.execute_cdp_cmd(  # the whole page in one screenshot
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": math.ceil(height), "deviceScaleFactor": 1, "mobile": False},
        )
        shot = SCREENSHOT if os.environ.get("DIFFIR_UPDATE_SCREENSHOT") == "1" else tmp_path / "app.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shot))
        # small enough for the repository: a 256-colour PNG
        Image.open(shot).convert("RGB").quantize(256).save(shot, optimize=True)
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, f"the browser console reported errors: {errors}"
    finally:
        driver.quit()
