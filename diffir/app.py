"""The web page to restore images: ``python -m diffir.app`` (installed: ``diffir-app``), a Gradio Blocks app.

Upload, paste or pick an example image, choose a model, press Restore: the page shows the bicubic-upscaled
input against the restoration on a slider, the output's size and the time taken, and offers the PNG that
``infer.py`` writes for the same model, image, seed and tiling (the same code: :func:`restore_one`,
:func:`save_png`). Gradio is imported here only, so ``import diffir`` stays light.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import hydra
import numpy as np
import skimage
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig

from .data import bicubic_downsample
from .data.datasets import SKIMAGE_PHOTOS
from .errors import UsageError
from .io import read_header, read_image, read_mask, read_rgb, save_png
from .model_config import CONF_DIR
from .models import DiffIRS2
from .restoration import check_tile_size, check_tiling, inpainting_input, restore_one, seeded_noise
from .restorer import load_checkpoint, require_stage2, resolve_device

log = logging.getLogger("diffir")

TASK_NAMES = {"sr": "super-resolution", "deblur": "motion deblurring", "inpainting": "inpainting"}
TILINGS = ("automatic", "whole image", "tiles")
# "automatic": images up to this many LQ pixels are restored whole (fastest); larger ones in tiles of
# AUTO_TILE pixels overlapping by AUTO_OVERLAP, under the prior of the whole image, so memory stays bounded.
AUTO_WHOLE_PIXELS = 512 * 512
AUTO_TILE, AUTO_OVERLAP = 256, 32
NO_MODEL = (
    "No model to restore with: run `make demo` (it trains `{demo}`, about 8 minutes on a CPU) and start the "
    "app again, or give a stage-2 checkpoint: `python -m diffir.app ckpt=<file>`."
)


@dataclass(frozen=True)
class ModelEntry:
    """A loaded stage-2 model and what the chooser says of it."""

    source: str
    model: DiffIRS2
    task: str
    scale: int

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def summary(self) -> str:
        """Task, scale and size, e.g. ``super-resolution ×4, 1.23 M parameters``."""
        return (
            f"{TASK_NAMES.get(self.task, self.task)} ×{self.scale}, {self.parameters / 1e6:.2f} M parameters"
        )

    @property
    def label(self) -> str:
        return f"{self.source} ({self.summary})"


def load_models(sources: Sequence[str], device: torch.device) -> list[ModelEntry]:
    """Load each source with ``infer.py``'s loader; a source that cannot restore images is a UsageError."""
    entries = []
    for source in dict.fromkeys(str(s) for s in sources):  # a source given twice is listed once
        model, config = load_checkpoint(source, device)
        model = require_stage2(model, source)
        if not isinstance(model, DiffIRS2):  # a pixel-diffusion baseline or a graph of another backend
            what = f"a {config['method']} baseline" if "method" in config else f"a {type(model).__name__}"
            raise UsageError(
                f"ckpt={source} is {what}; the app restores with PyTorch DiffIR stage-2 models: restore it with "
                "infer.py, or give the app the checkpoint or model folder it came from"
            )
        entries.append(ModelEntry(source, model.eval(), config["task"], int(config["scale"])))
    return entries


def model_sources(ckpt: str | Sequence[str] | None, default: str | Path) -> list[str]:
    """``ckpt=`` as a list of sources; none given: ``default`` (the ``make demo`` checkpoint) if it exists."""
    if ckpt is None:
        return [str(default)] if Path(default).is_file() else []
    return [str(ckpt)] if isinstance(ckpt, str) else [str(c) for c in ckpt]


def write_examples(names: Sequence[str], scale: int, folder: Path) -> list[Path]:
    """scikit-image's bundled photos ``names``, bicubic-downscaled by ``scale`` (the demo's SR ×4 LQ), as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        if name not in SKIMAGE_PHOTOS:
            raise UsageError(
                f"examples: no bundled photo {name!r}; choose from {', '.join(sorted(SKIMAGE_PHOTOS))}"
            )
        photo = read_rgb(Path(skimage.__file__).parent / "data" / SKIMAGE_PHOTOS[name])
        path = folder / (f"{name}_lq_x{scale}.png" if scale > 1 else f"{name}.png")
        lq = bicubic_downsample(photo, scale) if scale > 1 else photo
        cv2.imwrite(str(path), np.ascontiguousarray(lq[..., ::-1]))
        paths.append(path)
    return paths


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A (1, 3, H, W) [0, 1] tensor as an 8-bit H×W×3 array (the page's previews)."""
    return (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def drawn_mask(editor: dict[str, Any] | None, size: tuple[int, int]) -> torch.Tensor | None:
    """The hole painted in the image editor as a (1, 1, H, W) mask, 1 = hole: every pixel any brush stroke
    covers (a layer's alpha > 0); None when nothing is drawn."""
    layers = [layer for layer in (editor or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    alpha = np.zeros(layers[0].shape[:2], bool)
    for layer in layers:
        if layer.shape[:2] != alpha.shape:
            raise gr.Error(f"the editor's layers differ in size ({layer.shape[:2]} and {alpha.shape})")
        alpha |= layer[..., 3] > 0  # the editor's layers are RGBA: transparent where nothing is painted
    if not alpha.any():
        return None
    if alpha.shape != tuple(size):
        raise gr.Error(
            f"the drawn mask is {alpha.shape[1]}×{alpha.shape[0]} but the image is {size[1]}×{size[0]}: "
            "upload the image again and draw the hole on it"
        )
    return torch.from_numpy(alpha.astype(np.float32))[None, None]


def image_file(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` handing its handlers the uploaded file itself: the app reads it as ``infer.py`` does
    (16-bit, EXIF orientation) and reports a file that is not an image in the page (``gr.Image`` would open it
    with PIL first and fail before the handler can say so). Set on the instance: a subclass of a Gradio
    component makes Gradio write a ``.pyi`` file beside this module."""
    image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], **kwargs)
    default = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None or payload.path is None:
            return default(payload)  # a data: URL
        return str(payload.path)

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


class RestoreApp:
    """The handlers of the page, plain functions of their inputs (the tests call them without a server)."""

    def __init__(self, models: list[ModelEntry], max_pixels: int, workdir: Path, demo_ckpt: str = "") -> None:
        self.models = {entry.source: entry for entry in models}
        self.max_pixels = int(max_pixels)
        self.workdir = Path(workdir)
        self.no_model = NO_MODEL.format(demo=demo_ckpt)

    def entry(self, key: str | None) -> ModelEntry:
        if not self.models:
            raise gr.Error(self.no_model)
        if key not in self.models:
            raise gr.Error(f"unknown model {key!r}: choose one of the list")
        return self.models[key]

    def check_size(self, path: Path) -> tuple[int, int]:
        """(H, W) of an upload from its header; an unreadable file or one over ``max_pixels`` is a gr.Error."""
        try:
            h, w = read_header(path)
        except Exception as err:  # noqa: BLE001 - PIL raises many types for files that are not images
            reason = str(err).replace(f"'{path}'", "").strip() or type(err).__name__
            raise gr.Error(
                f"cannot read {path.name} as an image ({reason}); upload a PNG, JPEG, WebP, BMP, TIFF or GIF file"
            ) from err
        if h * w > self.max_pixels:
            raise gr.Error(
                f"{path.name} is {w}×{h} = {h * w:,} pixels, over this app's limit of {self.max_pixels:,}: "
                "downscale or crop it, start the app with a larger max_pixels=, or restore it with infer.py "
                "(tile= bounds its memory)"
            )
        return h, w

    def read(self, path: Path) -> tuple[torch.Tensor, int]:
        """The image as infer.py reads it, after the checks of :meth:`check_size`."""
        self.check_size(path)
        try:
            return read_image(path)
        except UsageError as err:
            raise gr.Error(f"{err}; upload another file") from err

    def describe(self, key: str | None, image: str | None) -> tuple[str, Any, Any]:
        """What the page shows when the model or image changes: the model's summary with the input's and
        output's sizes, and the mask inputs (shown for inpainting, the editor holding the image)."""
        if not self.models:
            return self.no_model, gr.update(visible=False, value=None), gr.update(visible=False)
        entry = self.entry(key)
        inpainting = entry.task == "inpainting"
        lines = [f"**{entry.summary}**"]
        background = None
        if image:
            path = Path(image)
            try:
                picture, bits = self.read(path)
            except gr.Error as err:
                lines.append(f"⚠ {err.message}")
            else:
                h, w = picture.shape[-2:]
                lines.append(
                    f"Input {path.name}: {w}×{h}, {bits}-bit → output {w * entry.scale}×{h * entry.scale}"
                )
                background = to_uint8(picture) if inpainting else None
        editor = (
            {"background": background, "layers": [], "composite": None} if background is not None else None
        )
        return "  \n".join(lines), gr.update(visible=inpainting, value=editor), gr.update(visible=inpainting)

    def tiling(
        self, entry: ModelEntry, size: tuple[int, int], mode: str, tile: Any, overlap: Any
    ) -> tuple[int | None, int]:
        """(tile, tile_overlap) as infer.py takes them: None = the whole image at once."""
        if mode == "automatic":
            whole = size[0] * size[1] <= AUTO_WHOLE_PIXELS
            return (None, AUTO_OVERLAP) if whole else (AUTO_TILE, AUTO_OVERLAP)
        if mode == "whole image":
            return None, AUTO_OVERLAP
        if mode != "tiles":
            raise gr.Error(f"tiling must be one of {', '.join(TILINGS)}, got {mode!r}")
        try:
            tile, overlap = int(tile), int(overlap)
            check_tiling(tile, overlap)
            check_tile_size(tile, entry.model, entry.source)
        except (TypeError, ValueError, UsageError) as err:
            raise gr.Error(f"tile size and overlap: {err}") from err
        return tile, overlap

    def restore(
        self,
        key: str | None,
        image: str | None,
        editor: dict[str, Any] | None = None,
        mask: str | None = None,
        seed: Any = 0,
        tiling: str = "automatic",
        tile: Any = AUTO_TILE,
        overlap: Any = AUTO_OVERLAP,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress bar
    ) -> tuple[tuple[str, str], str, str]:
        """Restore the uploaded ``image`` with model ``key``; returns the slider's (before, after) PNGs, a
        summary and the restored PNG, the same bytes infer.py writes with ``seed=``, ``tile=`` /
        ``tile_overlap=`` (``tiling``) and, for inpainting, ``mask=`` (painted and / or uploaded). The slider
        shows that file itself: browsers show 16-bit PNGs too."""
        entry = self.entry(key)
        if not image:
            raise gr.Error("no image: drop, paste or upload one (or pick an example) first")
        path = Path(image)
        picture, bits = self.read(path)
        size = tuple(picture.shape[-2:])
        hole = self.hole(editor, mask, size, path) if entry.task == "inpainting" else None
        try:
            seed = int(seed)
        except (TypeError, ValueError) as err:
            raise gr.Error(f"seed must be a whole number, got {seed!r}") from err
        tile, overlap = self.tiling(entry, size, tiling, tile, overlap)

        def tiles_done(done: int, total: int) -> None:
            progress((done, total), desc="restoring tiles", unit="tiles")

        progress(0, desc="restoring the whole image" if tile is None else "the prior of the whole image")
        start = time.perf_counter()
        try:
            device = next(entry.model.parameters()).device
            noise = seeded_noise(entry.model, seed, device)
            out = restore_one(
                entry.model,
                picture,
                hole,
                noise,
                device,
                tile=tile,
                tile_overlap=overlap,
                progress=tiles_done,
            )
        except (RuntimeError, MemoryError) as err:  # out of memory, mostly
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise gr.Error(
                f"the restoration failed ({reason}): choose tiles with a smaller tile size"
            ) from err
        seconds = time.perf_counter() - start
        progress(1.0, desc="writing the PNG")
        folder = Path(tempfile.mkdtemp(dir=self.workdir))
        png = folder / f"{path.stem}.png"
        save_png(out, png, bits)  # infer.py's writer: 16-bit inputs give 16-bit PNGs

        # before: the input (for inpainting as the network sees it, the hole blanked) at the output size; a
        # preview, so torch's bicubic (MATLAB's imresize takes seconds for megapixels), written fast
        lq = picture if hole is None else inpainting_input(picture, hole)[:, :3]
        h, w = out.shape[-2:]
        before = (
            F.interpolate(lq, size=(h, w), mode="bicubic", align_corners=False) if entry.scale > 1 else lq
        )
        preview = folder / "preview" / "before.png"
        preview.parent.mkdir()
        cv2.imwrite(str(preview), to_uint8(before)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        settings = f"seed={seed}" + ("" if tile is None else f" tile={tile} tile_overlap={overlap}")
        info = (
            f"**Output {w}×{h}**, {bits}-bit PNG, restored in **{seconds:.2f} s** "
            f"({'the whole image at once' if tile is None else f'tiles of {tile} px, overlap {overlap}'}).  \n"
            f"Same file: `python infer.py ckpt={entry.source} input={path.name}"
            f"{' mask=<the mask>' if hole is not None else ''} output=<folder> {settings}`"
        )
        return (str(preview), str(png)), info, str(png)

    def hole(
        self,
        editor: dict[str, Any] | None,
        mask: str | None,
        size: tuple[int, int],
        image: Path,
    ) -> torch.Tensor:
        """The inpainting mask: what is painted in the editor and / or the uploaded mask file (as infer.py
        reads ``mask=``), united."""
        hole = drawn_mask(editor, size)
        if mask:
            try:
                uploaded = read_mask(Path(mask), size, image.name)
            except UsageError as err:
                raise gr.Error(f"{err}; upload a mask of the image's size") from err
            hole = uploaded if hole is None else torch.maximum(hole, uploaded)
        if hole is None:
            raise gr.Error(
                "inpainting needs a hole: paint it over the image with the brush, or upload a mask"
            )
        return hole


def build_page(app: RestoreApp, examples: Sequence[Path] = ()) -> gr.Blocks:
    """The Blocks page around ``app``'s handlers; ids (``elem_id``) for the browser test."""
    choices = [(entry.label, key) for key, entry in app.models.items()]
    first = choices[0][1] if choices else None
    with gr.Blocks(title="DiffIR: restore an image", analytics_enabled=False) as page:
        gr.Markdown(
            "## DiffIR: restore an image\nDrop, paste or upload an image (or pick an example), choose a model, "
            "press **Restore**. The slider compares the input (bicubic-upscaled to the output size) with the "
            "restoration; the PNG below is what `infer.py` writes for the same settings."
        )
        with gr.Row():
            with gr.Column():
                image = image_file(label="Image", elem_id="input-image")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples (scikit-image)")
                model = gr.Dropdown(
                    choices, value=first, label="Model", elem_id="model", interactive=bool(choices)
                )
                about = gr.Markdown("" if app.models else app.no_model, elem_id="about")
                editor = gr.ImageEditor(
                    label="Inpainting: paint the hole",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    sources=[],
                    transforms=[],
                    layers=False,
                    visible=False,
                    elem_id="mask-editor",
                    brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                )
                mask = image_file(
                    label="or upload a mask (white = hole)", visible=False, height=160, elem_id="mask-file"
                )
                button = gr.Button("Restore", variant="primary", elem_id="restore", interactive=bool(choices))
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        seed = gr.Number(
                            0, precision=0, label="Seed (same seed, same output)", elem_id="seed"
                        )
                        tiling = gr.Radio(
                            list(TILINGS),
                            value="automatic",
                            label="Tiling (tiles share the whole image's prior)",
                            info=f"automatic: whole up to {AUTO_WHOLE_PIXELS:,} pixels, else tiles of {AUTO_TILE}",
                            scale=2,
                        )
                    with gr.Row():
                        tile = gr.Number(AUTO_TILE, precision=0, label="Tile size (input pixels)")
                        overlap = gr.Number(AUTO_OVERLAP, precision=0, label="Tile overlap (input pixels)")
            with gr.Column():
                slider = gr.ImageSlider(
                    label="Before (the input, bicubic-upscaled) | after (restored)",
                    type="filepath",
                    format="png",
                    interactive=False,
                    elem_id="result",
                )
                info = gr.Markdown(elem_id="result-info")
                download = gr.File(label="Download the restored PNG", interactive=False, elem_id="download")
        for event in (model.change, image.change, page.load):  # not an API endpoint: only the page uses it
            event(app.describe, [model, image], [about, editor, mask], api_visibility="private")
        button.click(
            app.restore,
            [model, image, editor, mask, seed, tiling, tile, overlap],
            [slider, info, download],
            api_name="restore",
        )
    return page


def create(cfg: DictConfig, workdir: Path) -> gr.Blocks:
    """Load the models of ``cfg`` and build the page (files it writes go under ``workdir``)."""
    ckpt = list(cfg.ckpt) if isinstance(cfg.ckpt, ListConfig) else cfg.ckpt
    models = load_models(model_sources(ckpt, cfg.default_ckpt), resolve_device(cfg.device))
    if not models:
        log.warning(NO_MODEL.format(demo=cfg.default_ckpt))
    examples = write_examples(list(cfg.examples), int(cfg.example_scale), workdir / "examples")
    app = RestoreApp(models, cfg.max_pixels, workdir, str(cfg.default_ckpt))
    return build_page(app, examples)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="app")
def main(cfg: DictConfig) -> None:
    """``python -m diffir.app [ckpt=<file>|[<file>,...]] [host=] [port=] [share=] [max_pixels=]``."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as Ctrl+C does: files removed
    with tempfile.TemporaryDirectory(prefix="diffir-app-") as workdir:
        try:
            page = create(cfg, Path(workdir))
        except UsageError as err:
            sys.exit(f"error: {err}")
        page.queue(default_concurrency_limit=1)  # one restoration at a time: a CPU has no room for two
        try:
            page.launch(
                server_name=cfg.host,
                server_port=cfg.port,
                share=cfg.share,
                allowed_paths=[workdir],
                show_error=True,
            )
        except OSError as err:  # Gradio's message goes on to name its own options: its first sentence
            reason = str(err).split(". ")[0]
            sys.exit(
                f"error: cannot serve on host={cfg.host} port={cfg.port} ({reason}); choose another port=<N>"
            )


if __name__ == "__main__":
    main()
