"""Which restorer for this checkpoint: the one factory that ``infer.py``, ``eval.py``, the demo, the app and the
benchmarks use to turn a checkpoint into something that restores images.

:func:`load_restorer` reads a checkpoint (:func:`load_checkpoint` chooses the backend: onnxruntime for an
``.onnx`` graph, PyTorch for everything else) and returns a :class:`Restorer`, which restores an image the
same way whatever the model is: DiffIR stage 2 (whole or tiled), a stage-1 oracle (with the GT), an ONNX
graph, or an SR3 / cDDPM baseline with its own sampler. Its options are the restoration keys of
``conf/restore/default.yaml`` (device, seed, compile, tiling, sampler), shared by ``infer.py`` and ``eval.py``.

Every problem the user can fix is a :class:`~diffir.errors.UsageError` (one ``error:`` line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .baselines import DDPMPrior, PixelDiffusion
from .checkpoint import CheckpointError, load_model
from .errors import UsageError
from .models import DiffIRS1, DiffIRS2
from .models.switches import compile_model
from .onnx_runtime import OnnxModel
from .restoration import TileProgress, check_tile_size, restore_one, start_noise

log = logging.getLogger("diffir")

Model = DiffIRS1 | DiffIRS2 | OnnxModel | PixelDiffusion
SAMPLER_KEYS = ("sampler", "steps", "eta")  # the sampling options of the pixel-diffusion baselines


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:<i>``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={name} was requested but CUDA is not available here; use device=cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"unknown device={name!r}: use auto, cpu, cuda or cuda:<index>") from err


def load_checkpoint(path: str | Path, device: torch.device, compile: bool = False) -> tuple[Model, dict]:
    """The model of ``path`` and its config, the one place that chooses the backend: an ``.onnx`` graph
    (``python -m diffir.export``) runs with onnxruntime (:class:`~diffir.onnx_runtime.OnnxModel`), anything
    else is :func:`diffir.checkpoint.load_model`'s (a checkpoint file or a model folder) in PyTorch, compiled
    with ``compile=True`` (:func:`diffir.models.switches.compile_model`). Errors are :class:`UsageError`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"checkpoint {path} ({path.absolute()}) does not exist")
    if path.suffix == ".onnx":
        if compile:
            raise UsageError(f"compile=true compiles PyTorch models; {path} runs with onnxruntime: drop it")
        try:
            graph = OnnxModel(path, device)
        except ValueError as err:
            raise UsageError(str(err)) from err
        log.info("%s: backend=%s on %s", path, graph.backend, device)
        return graph, graph.config
    try:
        model, config = load_model(path)
    except CheckpointError as err:
        raise UsageError(str(err)) from err
    log.info("%s: backend=pytorch on %s", path, device)
    model = model.to(device)
    return (compile_model(model) if compile else model), config


def require_stage2(model: Model, path: str | Path) -> Model:
    """Stage-1 models cannot restore an image on their own: explain instead of failing later."""
    if isinstance(model, DiffIRS1):
        raise UsageError(
            f"{path} is a stage-1 checkpoint. Stage 1 (CPEN_S1) extracts the prior from the LQ *and* the ground "
            "truth: it is the oracle teacher for training stage 2 and cannot restore images without their GT. "
            "Use the stage-2 checkpoint of the same experiment (python train.py ... stage=2)."
        )
    return model


def sampler_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``sampler`` / ``steps`` / ``eta`` of the restoration options, those that are set."""
    return {k: options.get(k) for k in SAMPLER_KEYS if options.get(k) is not None}


def check_pixel_model(model: Any, path: str | Path, options: Mapping[str, Any]) -> None:
    """A prior alone cannot restore, and the baselines restore whole images only."""
    if isinstance(model, DDPMPrior):
        raise UsageError(
            f"{path} is GDP's unconditional DDPM prior: it restores through GDP's guidance, with "
            f"method=gdp prior_ckpt={path} task=<sr|deblur|inpainting>"
        )
    if options.get("tile"):
        raise UsageError(
            f"{path} is a pixel-space diffusion baseline: it restores whole images only, drop tile="
        )


def pixel_runner(model: PixelDiffusion, options: Mapping[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``run(lq) -> restored`` of an SR3 / cDDPM checkpoint, with the options' sampler settings and seed."""
    chosen = sampler_options(options)
    try:
        model.sampler(**chosen)
    except ValueError as err:
        raise UsageError(f"{model.method}: {err}") from err

    def run(lq: torch.Tensor) -> torch.Tensor:
        return model.restore(lq, torch.Generator().manual_seed(options.get("seed", 0)), **chosen)

    return run


@dataclass
class Restorer:
    """A checkpoint ready to restore: ``restorer(image, mask=None, gt=None)`` takes an RGB batch (N, 3, H, W)
    and, for inpainting, its hole mask (N, 1, H, W), 1 = hole (the output is composited with the known
    pixels, LaMa's ``inpainted``); a stage-1 oracle also takes the GT. Made by :func:`load_restorer`."""

    model: Model
    config: dict[str, Any]
    path: Path
    device: torch.device
    seed: int = 0
    tile: int | None = None
    tile_overlap: int = 32
    prior: str = "global"
    prior_max_side: int | None = None
    pixel: Callable[[torch.Tensor], torch.Tensor] | None = None  # the sampler of an SR3 / cDDPM checkpoint

    def __post_init__(self) -> None:
        self.noise = start_noise(self.model, 1, self.seed, self.device)  # one start vector for every image

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def oracle(self) -> bool:
        """A stage-1 model: its prior sees the GT (an upper bound, not a restoration result)."""
        return isinstance(self.model, DiffIRS1)

    @property
    def backend(self) -> str:
        return self.model.backend if isinstance(self.model, OnnxModel) else "pytorch"

    @property
    def parameters(self) -> int:
        if isinstance(self.model, OnnxModel):
            return self.model.parameters
        return sum(p.numel() for p in self.model.parameters())

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        gt: torch.Tensor | None = None,
        *,
        seed: int | None = None,
        progress: TileProgress | None = None,
    ) -> torch.Tensor:
        """The restoration of ``image``, moved to the restorer's device; ``seed`` draws another start vector
        for this call (default: the restorer's); ``progress`` hears of each finished tile."""
        noise = self.noise if seed is None else start_noise(self.model, 1, seed, self.device)
        return restore_one(
            self.model,
            image,
            mask,
            noise,
            self.device,
            gt=gt,
            tile=self.tile,
            tile_overlap=self.tile_overlap,
            prior=self.prior,
            prior_max_side=self.prior_max_side,
            pixel=self.pixel,
            progress=progress,
        )


def load_restorer(
    path: str | Path,
    options: Mapping[str, Any] | None = None,
    *,
    device: torch.device | None = None,
    oracle: bool = False,
) -> Restorer:
    """The :class:`Restorer` of the checkpoint ``path`` with the restoration ``options`` (the keys of
    ``conf/restore/default.yaml``: device, seed, compile, tile, tile_overlap, prior, prior_max_side, sampler,
    steps, eta; missing ones take their defaults). ``device`` overrides ``options.device`` (a device already
    resolved); ``oracle=True`` accepts a stage-1 checkpoint (it restores with the GT, untiled), else it is
    refused with what to use instead. Every problem is a :class:`UsageError` raised before any image is
    restored."""
    options = dict(options or {})
    device = device if device is not None else resolve_device(options.get("device", "auto"))
    model, config = load_checkpoint(path, device, compile=bool(options.get("compile", False)))
    if not oracle:
        require_stage2(model, path)
    tile = options.get("tile")
    pixel = None
    if isinstance(model, PixelDiffusion):  # SR3 / cDDPM: their own sampler (sampler=, steps=, eta=)
        check_pixel_model(model, path, options)
        pixel = pixel_runner(model, options)
    elif isinstance(model, DiffIRS1):
        if tile:
            raise UsageError(f"{path} is a stage-1 checkpoint: it needs the whole GT, so it cannot be tiled")
    else:
        check_tile_size(tile, model, path)
    return Restorer(
        model,
        config,
        Path(path).expanduser(),
        device,
        seed=int(options.get("seed", 0)),
        tile=tile,
        tile_overlap=int(options.get("tile_overlap", 32)),
        prior=options.get("prior", "global"),
        prior_max_side=options.get("prior_max_side"),
        pixel=pixel,
    )
