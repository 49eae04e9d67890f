"""Optional speed and memory switches shared by ``train.py``, ``eval.py`` and ``infer.py``.

- ``compile=true``: the DIRformer and the CPENs go through ``torch.compile`` (in place, so state-dict keys
  and ``isinstance`` checks are unchanged). Inductor's compiled kernels are cached on disk in
  ``$TORCHINDUCTOR_CACHE_DIR`` (default ``~/.cache/diffir/inductor``), so a second run skips most of the
  compile cost; the cost paid is logged at the end of the run.
- ``checkpointing=true`` (training): activation checkpointing of the DIRformer's transformer blocks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from torch import nn

from .models import CPEN, DIRformer

log = logging.getLogger("diffir")

DEFAULT_CACHE_DIR = Path("~/.cache/diffir/inductor")


def compile_model(model: nn.Module, cache_dir: str | Path | None = None) -> nn.Module:
    """Compile every DIRformer and CPEN inside ``model`` in place and return ``model``.

    ``cache_dir`` (default: ``$TORCHINDUCTOR_CACHE_DIR``, else ``~/.cache/diffir/inductor``) keeps the compiled
    kernels between runs.
    """
    directory = Path(cache_dir or os.environ.get("TORCHINDUCTOR_CACHE_DIR") or DEFAULT_CACHE_DIR).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    parts = [m for m in model.modules() if isinstance(m, DIRformer | CPEN)]
    for part in parts:
        part.compile()
    log.info("torch.compile: %d modules compile at their first call (kernel cache %s)", len(parts), directory)
    return model


def compile_seconds() -> float:
    """Seconds spent so far in this process compiling with torch.compile (dynamo + inductor)."""
    from torch._dynamo.utils import compile_times

    names, times = compile_times(repr="csv", aggregate=True)
    return float(dict(zip(names, times, strict=True)).get("_compile.compile_inner") or 0.0)  # the outer timer


def log_compile_cost() -> None:
    """Log what torch.compile cost this run (after the compiled model has run)."""
    log.info("torch.compile: %.1f s spent compiling in this run", compile_seconds())


def set_checkpointing(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch activation checkpointing of the transformer blocks of every DIRformer inside ``model``."""
    for module in model.modules():
        if isinstance(module, DIRformer):
            module.checkpointing = enabled
    return model
