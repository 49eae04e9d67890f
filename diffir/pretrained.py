"""Model folders for use outside diffir: ``save_pretrained`` and ``from_pretrained`` (the Hugging Face layout).

``save_pretrained(model, folder)`` writes ``config.json`` (the model-file record without its weights: task,
stage, scale, architecture and diffusion settings) and ``model.safetensors`` (the weights). ``from_pretrained``
loads any model source: such a folder, a diffir training checkpoint (its EMA weights when EMA was on) or model
file, an official DiffIR BasicSR ``.pth`` / LaMa ``.ckpt`` (options read from its tensors, or given), or a
Hugging Face Hub repository id. ``diffir.load`` is the same function.

    >>> import tempfile, torch, diffir
    >>> model = diffir.build_model("sr", stage=2, scale=2, **diffir.model_preset("sr", "tiny"))
    >>> folder = model.save_pretrained(tempfile.mkdtemp())
    >>> sorted(p.name for p in folder.iterdir())
    ['config.json', 'model.safetensors']
    >>> same = diffir.from_pretrained(folder)
    >>> lq = torch.rand(1, 3, 12, 20)
    >>> torch.equal(diffir.restore(same, lq), diffir.restore(model.eval(), lq))
    True
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    find_model_record,
    is_model_record,
    load_record,
    model_record,
    read_checkpoint,
    read_model_folder,
    write_model_folder,
)
from .compat import load_official
from .models import DiffIRS1, DiffIRS2

if TYPE_CHECKING:  # the baselines' module is not imported by the front door (it is light: no Lightning)
    from .baselines import PixelDiffusion
# a Hub repository id: owner/name (letters, digits, -, _, .); anything else is a local path
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")


def model_config_of(model: DiffIRS1 | DiffIRS2 | PixelDiffusion) -> dict[str, Any]:
    """The arguments that rebuild ``model``: ``build_model``'s (DiffIR) or the baseline's ``config()``."""
    config = getattr(model, "config", None)
    config = config() if callable(config) else config
    if not isinstance(config, dict):
        raise ValueError(
            f"this {type(model).__name__} does not know its configuration: build it with diffir.build_model "
            "or load it with diffir.load, then save it"
        )
    return dict(config)


def save_pretrained(model: DiffIRS1 | DiffIRS2 | PixelDiffusion, folder: str | os.PathLike) -> Path:
    """Write ``model`` into ``folder`` as ``config.json`` + ``model.safetensors``; returns the folder.

    The weights are the model's own (a training checkpoint's EMA weights when it is loaded with
    :func:`from_pretrained` first). Each file is written atomically; an existing model folder is replaced.
    """
    return write_model_folder(model_record(model_config_of(model), model.state_dict()), folder)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache that applies now (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
    ``~/.cache/huggingface/hub``), read from the environment at each call: huggingface_hub reads it once,
    when imported, so a later change would otherwise be ignored."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def download(
    repo_id: str,
    *,
    filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The local copy of a Hub model folder (``config.json`` and ``model.safetensors``) or of one ``filename``
    of the repository, from the cache or downloaded into it (``HF_HUB_OFFLINE=1``: from the cache only)."""
    cache = Path(cache_dir).expanduser() if cache_dir else hub_cache_dir()
    offline = _env_flag("HF_HUB_OFFLINE")
    try:
        import huggingface_hub
    except ImportError as err:
        raise CheckpointError(
            f"{repo_id} is not a local file or folder; loading it from the Hugging Face Hub needs "
            "huggingface_hub: pip install 'diffir[export]'"
        ) from err
    options = {"revision": revision, "cache_dir": cache, "local_files_only": offline}
    try:
        if filename is not None:
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, **options))
        return Path(
            huggingface_hub.snapshot_download(repo_id, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE], **options)
        )
    except Exception as err:  # noqa: BLE001 - network, cache and Hub errors alike: one line with what to do
        why = "HF_HUB_OFFLINE=1 forbids downloading it" if offline else f"downloading it failed: {err}"
        raise CheckpointError(
            f"cannot load {repo_id}: it is no local file or folder and not in the Hugging Face cache {cache} "
            f"({why}); connect and retry, or put a snapshot there (hf download {repo_id}), or "
            "pass a local folder"
        ) from err


def _resolve(
    source: str | os.PathLike, filename: str | None, revision: str | None, cache_dir: str | os.PathLike | None
) -> Path:
    """A local file or folder for ``source``: itself when it exists, else its Hub download."""
    path = Path(source).expanduser()
    if path.exists():
        return path if filename is None else path / filename
    text = str(source)
    if REPO_ID.match(text) and not text.endswith(MODEL_SUFFIXES):
        return download(text, filename=filename, revision=revision, cache_dir=cache_dir)
    raise CheckpointError(f"checkpoint {path} ({path.absolute()}) does not exist")


def from_pretrained(
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    task: str | None = None,
    stage: int | None = None,
    filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    **official_options: Any,
) -> DiffIRS1 | DiffIRS2 | PixelDiffusion:
    """A ready model (eval mode, on ``device``) from any model source.

    ``source``: a model folder (``config.json`` + ``model.safetensors``), a diffir training checkpoint or model
    file, an official DiffIR file (BasicSR ``params_ema`` / ``params``, a LaMa ``.ckpt``, a bare state dict;
    task, stage, scale and every option are read from its tensors, or give ``task``, ``stage`` and the official
    ``network_g`` options as keywords, as ``python -m diffir.convert --set`` does), or a Hugging Face Hub
    repository id ``owner/name`` holding a model folder (``filename=`` picks one file of it instead,
    ``revision=`` a branch, tag or commit; the cache is ``cache_dir`` or the Hub's, and ``HF_HUB_OFFLINE=1``
    keeps to it). Raises :class:`diffir.checkpoint.CheckpointError` (a ``ValueError``) naming the source.
    """
    path = _resolve(source, filename, revision, cache_dir)
    if path.is_dir():
        record = read_model_folder(path)
    else:
        ckpt = read_checkpoint(path)
        if not is_model_record(ckpt):
            try:
                return load_official(ckpt, task, stage, **official_options).to(device)
            except CheckpointError as err:
                raise CheckpointError(f"{path}: {err}") from err
        record = find_model_record(ckpt, path)
    config = record["config"]
    given = {k: v for k, v in {"task": task, "stage": stage, **official_options}.items() if v is not None}
    differ = {k: v for k, v in given.items() if config.get(k) != v}
    if differ:
        raise CheckpointError(
            f"{path} holds a model with {', '.join(f'{k}={config.get(k)!r}' for k in differ)}, not "
            f"{', '.join(f'{k}={v!r}' for k, v in differ.items())}: a diffir model says its own configuration "
            "(task, stage and options are for official files)"
        )
    return load_record(record, path).to(device)
