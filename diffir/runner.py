"""What the ``eval.py`` and ``infer.py`` runs share: the device, a checkpoint loaded as a ready model with
user-facing errors, the tiling options checked before any image is processed, and the inpainting input; and
the check of the run folder that ``train.py`` and ``eval.py`` make before Hydra writes into it.

Every problem the user can fix is a :class:`~diffir.errors.UsageError` (one ``error:`` line).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .checkpoint import CheckpointError, load_model
from .errors import UsageError
from .io import require_writable_dir
from .models import DiffIRS1, DiffIRS2
from .models.switches import compile_model
from .onnx_runtime import OnnxModel
from .restoration import check_tiling

log = logging.getLogger("diffir")


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


def check_tiling_config(cfg: DictConfig) -> None:
    """Bad ``tile=`` / ``tile_overlap=`` / ``prior=`` values fail before any image is processed."""
    if cfg.tile:
        try:
            check_tiling(cfg.tile, cfg.tile_overlap, cfg.prior)
        except ValueError as err:
            raise UsageError(f"tiling: {err}") from err


def check_tile_size(tile: int | None, model: DiffIRS1 | DiffIRS2 | OnnxModel, path: str | Path) -> None:
    """``tile=`` below the model's size multiple is refused: every tile would be padded up to the multiple,
    so a 1-pixel tile runs the network once per LQ pixel (about a minute for a small image). An ONNX graph
    restores whole images (its prior is estimated inside it, on the whole input): no tiles."""
    if tile and isinstance(model, OnnxModel):
        raise UsageError(
            f"tile={tile}: {path} is an ONNX graph, which restores whole images (the prior of the whole image "
            "is estimated inside it): drop tile=, or use the PyTorch checkpoint for tiled inference"
        )
    if tile and tile < model.size_multiple:
        raise UsageError(
            f"tile={tile} is smaller than the size multiple {model.size_multiple} of {path} (tiles are "
            f"padded to it): use tile>={model.size_multiple}, a few hundred LQ pixels in practice, or no tile="
        )


def load_checkpoint(
    path: str | Path, device: torch.device, compile: bool = False
) -> tuple[DiffIRS1 | DiffIRS2 | OnnxModel, dict]:
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


def require_stage2(model: DiffIRS1 | DiffIRS2, path: str | Path) -> DiffIRS2:
    """Stage-1 models cannot restore an image on their own: explain instead of failing later."""
    if isinstance(model, DiffIRS1):
        raise UsageError(
            f"{path} is a stage-1 checkpoint. Stage 1 (CPEN_S1) extracts the prior from the LQ *and* the ground "
            "truth: it is the oracle teacher for training stage 2 and cannot restore images without their GT. "
            "Use the stage-2 checkpoint of the same experiment (python train.py ... stage=2)."
        )
    return model


class WritableDirCheck(Callback):
    """A Hydra callback: a run folder that cannot be written (a regular file at or above it, a read-only file
    system, no permission) stops the run with one ``error:`` line naming it and the option ``key`` to change,
    before Hydra creates the folder and opens its log file there (which end in tracebacks: ``OSError``, or
    ``ValueError: Unable to configure handler 'file'`` when the folder exists)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _check(self, folder: str, config: DictConfig) -> None:
        try:
            require_writable_dir(folder, f"{self.key}=", OmegaConf.select(config, self.key))
        except UsageError as err:
            sys.exit(f"error: {err}")

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, config)
