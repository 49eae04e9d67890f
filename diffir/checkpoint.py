"""Model files: atomic writes, and loading any checkpoint this project accepts as a ready model.

A *model file* is ``{"format": "diffir-model", "version": 1, "config": <build_model kwargs>,
"state_dict": <weights>}``. Lightning checkpoints written by training carry the same under
``"diffir_model"`` (the EMA weights when EMA is on), so evaluation, inference and stage 2 accept either.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import build_from_config
from .models import DiffIRS1, DiffIRS2

FORMAT = "diffir-model"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_record(config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The self-describing record of a model: its ``build_model`` arguments and weights (on the CPU)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: a checkpoint from the internet must not be able to run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name and the likely cause
        detail = str(err)
        if "WeightsUnpickler error:" in detail:  # torch's message is a page of advice; keep its reason
            detail = detail.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        raise CheckpointError(
            f"cannot read checkpoint {path} ({detail or type(err).__name__}): it must be a PyTorch file of tensors "
            "and plain containers (this project's .ckpt or model file, or an official DiffIR .pth); files that "
            "need arbitrary code to load are refused on purpose"
        ) from err


def find_model_record(ckpt: dict[str, Any], path: str | os.PathLike = "<checkpoint>") -> dict[str, Any]:
    """The model record inside a model file or a training checkpoint."""
    record = ckpt.get("diffir_model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a diffir checkpoint (no 'diffir_model' record). For an official DiffIR .pth run "
            f"`python -m diffir.convert {path} --task <sr|deblur|inpainting> --stage <1|2> --out <file>` first"
        )
    if record.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer diffir (model-file version {record['version']})"
        )
    return record


def load_model(path: str | os.PathLike) -> tuple[DiffIRS1 | DiffIRS2, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights strictly; returns ``(model, config)``."""
    record = find_model_record(read_checkpoint(path), path)
    model = build_from_config(record["config"])
    try:
        model.load_state_dict(record["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model its config describes: {err}") from err
    return model.eval(), dict(record["config"])
