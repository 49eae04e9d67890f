"""Model files: atomic writes, and loading any checkpoint this project accepts as a ready model.

A *model file* is ``{"format": "diffir-model", "version": 1, "config": <build_model kwargs>,
"state_dict": <weights>}``. Lightning checkpoints written by training carry the same under
``"diffir_model"`` (the EMA weights when EMA is on), so evaluation, inference and stage 2 accept either.
A *model folder* holds the same record as two files, for use outside diffir (the Hugging Face layout):
``config.json`` (everything but the weights) and ``model.safetensors`` (the weights, which load without
running any code); :func:`load_model` takes it like a file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .io import atomic_writer, write_atomic
from .model_config import build_from_config
from .models import DiffIRS1, DiffIRS2

FORMAT = "diffir-model"
VERSION = 1
CONFIG_FILE = "config.json"  # a model folder: the record without its weights
WEIGHTS_FILE = "model.safetensors"  # ... and its weights


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file cut short (empty or truncated): not a refusal of its content, a broken copy."""


TMP_PATTERN = ".*.tmp"  # atomic_save's temporary files: ``.<name>.<random>.tmp``


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename: a crash never leaves half a file."""
    with atomic_writer(path) as f:  # .<name>.<random>.tmp beside it: what remove_partial_saves looks for
        torch.save(obj, f)


def remove_partial_saves(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed ``atomic_save`` left in ``directory``; returns them.

    Only safe while no other process saves there: training calls it while holding the run folder's lock.
    """
    stale = [p for p in Path(directory).glob(TMP_PATTERN) if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_error_summary(err: RuntimeError, width: int = 160) -> str:
    """``load_state_dict``'s error in one line: its header, the first difference, and the counts.

    torch lists every differing tensor (~100 lines when a model preset differs); the first one and the totals
    are enough to see which setting differs.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) <= 2:
        return " ".join(lines)
    first = lines[1] if len(lines[1]) <= width else lines[1][: width - 1] + "…"
    sizes = sum(line.startswith("size mismatch") for line in lines)
    keys = {
        kind: sum(line.count('"') // 2 for line in lines if line.startswith(kind))
        for kind in ("Missing", "Unexpected")
    }
    total = f"{sizes} size mismatches, {keys['Missing']} missing and {keys['Unexpected']} unexpected tensors"
    return f"{lines[0]} {first} (in all: {total})"


def _load_failure_reason(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line, without torch's advice to load unsafely.

    torch's refusal is a page whose wording changes between versions; only its reason is kept: the pickled
    class it met (``GLOBAL <name>``), or else its last line that does not mention ``weights_only``.
    """
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds pickled Python objects ({found.group(1)}), which could run code when loaded"
    lines = [line.strip() for line in text.split("error:")[-1].splitlines() if line.strip()]
    reasons = [line for line in lines if not re.search(r"weights.only|documentation", line, re.IGNORECASE)]
    return reasons[0] if reasons else type(err).__name__


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
    except (EOFError, RuntimeError) as err:
        if isinstance(err, EOFError) or "zip archive" in str(err):  # cut short: a copy or save that stopped
            raise DamagedCheckpointError(
                f"checkpoint {path} is damaged ({path.stat().st_size:,} bytes, "
                f"{'empty' if isinstance(err, EOFError) else 'truncated: no zip directory at its end'})"
            ) from err
        raise _unreadable(path, err) from err
    except Exception as err:  # noqa: BLE001 - re-raised with the file name and the likely cause
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint {path} ({_load_failure_reason(err)}): it must be a PyTorch file of tensors "
        "and plain containers (this project's .ckpt or model file, or an official DiffIR .pth); files that "
        "need arbitrary code to load are refused on purpose"
    )


def is_model_record(ckpt: Any) -> bool:
    """True for a model file or a training checkpoint (which carries one under ``diffir_model``)."""
    record = ckpt.get("diffir_model", ckpt) if isinstance(ckpt, dict) else None
    return isinstance(record, dict) and record.get("format") == FORMAT


def _check_version(record: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{path} has no valid model-file version ({version!r}); expected 1 to {VERSION}"
        )
    if version > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer diffir (model-file version {version}; this one reads up to "
            f"{VERSION}): upgrade diffir (pip install -U diffir)"
        )
    if not isinstance(record.get("config"), dict):
        raise CheckpointError(f"{path} has no model config (a 'config' mapping of build_model arguments)")
    return record


def find_model_record(ckpt: dict[str, Any], path: str | os.PathLike = "<checkpoint>") -> dict[str, Any]:
    """The model record inside a model file or a training checkpoint."""
    if not is_model_record(ckpt):
        raise CheckpointError(
            f"{path} is not a diffir checkpoint (no 'diffir_model' record). For an official DiffIR .pth run "
            f"`python -m diffir.convert {path} --task <sr|deblur|inpainting> --stage <1|2> --out <file>` first, "
            "or load it with diffir.from_pretrained(path) (the task and stage are read from its tensors)"
        )
    return _check_version(ckpt.get("diffir_model", ckpt), path)


def _safetensors() -> Any:
    """``safetensors.torch``, which model folders need (the ``export`` extra, not the base install)."""
    try:
        import safetensors.torch
    except ImportError as err:
        raise CheckpointError(
            "model folders (config.json + model.safetensors) need the safetensors package: "
            "pip install 'diffir[export]'"
        ) from err
    return safetensors.torch


def write_model_folder(record: dict[str, Any], folder: str | os.PathLike) -> Path:
    """A model record as ``folder/config.json`` and ``folder/model.safetensors`` (each written atomically,
    the weights first: a folder whose config.json is there is complete). Returns the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file: a model folder is written there; choose another path")
    tensors = {k: v.detach().cpu().contiguous() for k, v in record["state_dict"].items()}
    write_atomic(folder / WEIGHTS_FILE, _safetensors().save(tensors, metadata={"format": "pt"}))
    header = {k: v for k, v in record.items() if k != "state_dict"}
    write_atomic(folder / CONFIG_FILE, (json.dumps(header, indent=2) + "\n").encode())
    return folder


def read_model_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """The model record of a folder written by :func:`write_model_folder` (config.json + model.safetensors)."""
    folder = Path(folder)
    config_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} has no {CONFIG_FILE}, so it is not a diffir model folder: diffir.save_pretrained and "
            f"`python -m diffir.convert ... --format safetensors` write {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        header = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON ({err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(
            f"{config_path} is not a diffir config (format {found!r}, expected {FORMAT!r}): the folder holds "
            "another library's model"
        )
    _check_version(header, config_path)
    if not weights.is_file():
        raise CheckpointError(f"{folder} has {CONFIG_FILE} but no {WEIGHTS_FILE}: copy the whole folder")
    try:
        state = _safetensors().load_file(weights)
    except Exception as err:  # noqa: BLE001 - safetensors' own error types; re-raised naming the file
        raise DamagedCheckpointError(
            f"{weights} is damaged or not a safetensors file ({err}, {weights.stat().st_size:,} bytes)"
        ) from err
    return {**header, "state_dict": state}


def read_model_record(path: str | os.PathLike) -> dict[str, Any]:
    """The model record of a model folder, a model file or a training checkpoint."""
    return read_model_folder(path) if Path(path).is_dir() else find_model_record(read_checkpoint(path), path)


def load_strictly(
    module: torch.nn.Module, state: Mapping[str, Any], what: str, error: type[Exception]
) -> None:
    """``module.load_state_dict(state, strict=True)`` whose failure is one ``error`` line: ``what``, then
    :func:`load_error_summary` (torch's own message lists every differing tensor)."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise error(f"{what}: {load_error_summary(err)}") from err


def _names(keys: list[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def load_record(record: dict[str, Any], path: str | os.PathLike) -> DiffIRS1 | DiffIRS2:
    """The model a record describes, with its weights loaded strictly (in eval mode); errors name ``path``
    and the tensors that are missing or left over."""
    model = build_from_config(record["config"])
    state = record["state_dict"]
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        parts = [f"{len(missing)} missing ({_names(missing)})"] if missing else []
        parts += [f"{len(unexpected)} unexpected ({_names(unexpected)})"] if unexpected else []
        raise CheckpointError(
            f"{path}: weights do not match the model its config describes: {'; '.join(parts)} tensors"
        )
    load_strictly(
        model, state, f"{path}: weights do not match the model its config describes", CheckpointError
    )
    return model.eval()


def load_model(path: str | os.PathLike) -> tuple[DiffIRS1 | DiffIRS2, dict[str, Any]]:
    """Build the model a checkpoint (a model file, a training checkpoint or a model folder) describes and
    load its weights strictly; returns ``(model, config)``."""
    record = read_model_record(path)
    return load_record(record, path), dict(record["config"])


def find_checkpoint(
    given: str | os.PathLike | None, key: str, default: str | os.PathLike, missing: str
) -> Path:
    """Checkpoint discovery: the file the option ``<key>=<given>`` names, else ``default`` (a run's
    ``checkpoints/last.ckpt``, e.g. the same experiment's earlier stage); a :class:`CheckpointError` naming
    the option when the given file does not exist, with the text ``missing`` when the default does not."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise CheckpointError(f"{key}={path} does not exist")
        return path
    if not Path(default).is_file():
        raise CheckpointError(missing)
    return Path(default)


def intact_alternative(damaged: Path) -> str:
    """What to resume from instead of a damaged checkpoint: the newest other one of its folder that reads."""
    others = sorted(
        (p for p in damaged.parent.glob("*.ckpt") if p != damaged),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for candidate in others:
        try:
            step = read_checkpoint(candidate).get("global_step")
        except CheckpointError:
            continue
        return f"the newest intact checkpoint of the run is {candidate} (step {step}): resume from it with ckpt_path={candidate}"
    return "no other checkpoint of the run can be read: start again with overwrite=true"
