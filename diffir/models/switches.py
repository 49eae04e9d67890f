"""Every run-time switch of the DiffIR models, and how it is set. None changes the function computed (to float
rounding); they trade speed and memory. Each setter works on any model or part and returns it.

===================  =======================================  ========  =====================================
switch               what it does                             default   set by
===================  =======================================  ========  =====================================
channels-last        DIRformer and CPEN feature maps (and     on        :func:`set_channels_last`
                     weights) in channels-last memory
composed             SR head as one 5×5 conv; DMTA's output   on        :func:`set_composed`,
                     projection on the attention map                    :func:`layer_by_layer` (temporarily)
checkpointing        activation checkpointing of every        off       :func:`set_checkpointing`
                     transformer stage                                  (``checkpointing=true``, train.py)
compile              ``torch.compile`` of the DIRformer and   off       :func:`compile_model`
                     the CPENs, kernels cached on disk                  (``compile=true``, every CLI)
===================  =======================================  ========  =====================================

The switches are class attributes (``DIRformer.channels_last``, ``CPEN.channels_last``, ``SRHead.composed``,
``DMTA.composed``, ``TransformerStage.checkpointing``) overridden per module by the setters, so a model's
forward reads them instead of passing them along. The official computation order, all fast kernels off, is
a different model: :func:`diffir.models.reference.reference_model`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from .blocks import DMTA, TransformerStage
from .cpen import CPEN
from .dirformer import DIRformer, SRHead

log = logging.getLogger("diffir")

DEFAULT_CACHE_DIR = Path("~/.cache/diffir/inductor")


def set_channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run every DIRformer and CPEN in ``model`` on channels-last (the default) or NCHW feature maps, weights
    included. The function computed is the same to float rounding; channels-last is faster on CPU."""
    for module in model.modules():
        if isinstance(module, DIRformer | CPEN):
            module.channels_last = enabled
    return model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)


def set_composed(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run the SR heads and the attentions' output projections in ``model`` composed (the default: the same
    linear maps in far fewer MACs, see :class:`SRHead` and :class:`DMTA`) or layer by layer, as the official
    code does. Only these two change; the other fast kernels stay (the official order throughout:
    :func:`diffir.models.reference.reference_model`)."""
    for module in model.modules():
        if isinstance(module, SRHead | DMTA):
            module.composed = enabled
    return model


@contextlib.contextmanager
def layer_by_layer(model: nn.Module) -> Iterator[nn.Module]:
    """``with layer_by_layer(model):`` the SR heads and attentions that were composed run layer by layer
    (what ``diffir.summary`` counts: the MACs the official code executes), composed again afterwards."""
    switched = [m for m in model.modules() if isinstance(m, SRHead | DMTA) and m.composed]
    try:
        for module in switched:
            module.composed = False
        yield model
    finally:
        for module in switched:
            module.composed = True


def set_checkpointing(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch activation checkpointing of every transformer stage inside ``model`` (each block's activations
    recomputed in backward instead of stored: less memory, ~1/3 more time per training step)."""
    for module in model.modules():
        if isinstance(module, TransformerStage):
            module.checkpointing = enabled
    return model


def compile_model(model: nn.Module, cache_dir: str | Path | None = None) -> nn.Module:
    """Compile every DIRformer and CPEN inside ``model`` in place (state-dict keys and ``isinstance`` checks
    are unchanged) and return ``model``.

    ``cache_dir`` (default: ``$TORCHINDUCTOR_CACHE_DIR``, else ``~/.cache/diffir/inductor``) keeps inductor's
    compiled kernels between runs, so a second run skips most of the compile cost.
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
