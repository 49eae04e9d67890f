"""Official DiffIR state dicts of the tiny parity vectors (``tests/data/official_tiny``), rebuilt from a seed.

The files store no weights: only the official parameter names and shapes in ``named_parameters()`` order
(``s1_params`` / ``s2_params``), a seed (``seed_s1`` / ``seed_s2``), the state-dict keys that repeat another
tensor (``s1_aliases`` / ``s2_aliases``: official duplicates such as ``diffusion.model.*`` = ``denoise.*``)
and the non-parameter tensors (``s1_buffers`` / ``s2_buffers``: the float32 diffusion schedule).
:func:`official_weights` draws every parameter from numpy's PCG64 generator, whose ``standard_normal`` /
``random`` streams are the same on every platform for a given numpy (``torch.randn`` differs in the last bits
between CPUs with and without AVX2; see :func:`check_numpy_stream`), computes in float64 and rounds to
bfloat16, so the values are exact float32 numbers.
The generator of the files imports this module, so both share one definition.

The init is chosen so that every block moves the outputs by well over the 1e-4 parity tolerance while
they stay of order 1 (PyTorch's default init makes the outputs insensitive to many bugs).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

WEIGHT_GAIN = 1.0  # Conv2d / Linear weights: N(0, WEIGHT_GAIN^2 / fan_in)
KERNEL_GAIN = 5.0  # the IPR modulation kernels (``*.kernel.0.weight``, Linear 256 -> 2c)
HEAD_GAIN = 0.5  # extra factor on the last conv of the DIRformer (``HEAD_WEIGHTS``)
HEAD_WEIGHTS = ("G.output.weight", "G.tail.1.weight")
BIAS_STD = 0.1  # Conv2d / Linear biases: N(0, BIAS_STD^2)
LN_STD = 0.2  # LayerNorm weights 1 + LN_STD N(0, 1), biases LN_STD N(0, 1)
TEMPERATURE_RANGE = (0.5, 2.0)  # attention temperatures: uniform
_NORM = re.compile(r"\.norm\d*\.body\.(weight|bias)$")

# sha256 of the bfloat16 bits of default_rng(0).standard_normal(4096) then .random(64) (numpy 2.4.6, as the
# files were made; see check_numpy_stream)
_STREAM_SHA256 = "37de52d57af31f40bad2dbddacc9bb1a9bb5eb25004ae4781fbcf72ebb178b1d"


def _rule(name: str, shape: tuple[int, ...]) -> tuple[str, float, float]:
    """(distribution, offset, scale) of one parameter: ``offset + scale * z`` with z ~ N(0,1) or U[0,1)."""
    if name.endswith(".temperature"):
        lo, hi = TEMPERATURE_RANGE
        return "uniform", lo, hi - lo
    norm = _NORM.search(name)
    if norm:
        return ("normal", 1.0, LN_STD) if norm.group(1) == "weight" else ("normal", 0.0, LN_STD)
    if name.endswith(".bias"):
        return "normal", 0.0, BIAS_STD
    if name.endswith(".weight") and len(shape) >= 2:
        gain = KERNEL_GAIN if name.endswith(".kernel.0.weight") else WEIGHT_GAIN
        if name in HEAD_WEIGHTS:
            gain *= HEAD_GAIN
        return "normal", 0.0, gain / math.sqrt(math.prod(shape[1:]))
    raise ValueError(f"no init rule for parameter {name} {tuple(shape)}")


def _bf16(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(torch.bfloat16).float()


def official_weights(param_shapes: Sequence[tuple[str, Sequence[int]]], seed: int) -> dict[str, torch.Tensor]:
    """Every parameter, in the given order, drawn from ``np.random.default_rng(seed)``; float32 tensors
    holding exact bfloat16 values.

    ``param_shapes`` lists ``(name, shape)`` in the official model's ``named_parameters()`` order. By name:
    attention ``*.temperature`` U(0.5, 2); LayerNorm ``*.norm*.body.weight`` 1 + 0.2 N(0,1) and
    ``.body.bias`` 0.2 N(0,1); other ``*.bias`` 0.1 N(0,1); Conv2d / Linear ``*.weight``
    N(0, gain^2 / fan_in) with fan_in = prod(shape[1:]), gain 1, 5 for the IPR modulation kernels
    (``*.kernel.0.weight``) and 0.5 for the DIRformer's last conv (``G.output`` / ``G.tail.1``).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in param_shapes:
        shape = tuple(int(s) for s in shape)
        if name in out:
            raise ValueError(f"parameter {name} listed twice")
        kind, offset, scale = _rule(name, shape)
        z = rng.random(shape) if kind == "uniform" else rng.standard_normal(shape)
        out[name] = _bf16(offset + scale * np.asarray(z, dtype=np.float64))
    return out


def state_dict(ref: Mapping[str, Any], stage: int) -> dict[str, torch.Tensor]:
    """The official state dict (every key, float32) of stage ``stage`` (1 or 2) of a loaded tiny file:
    the drawn parameters, the stored buffers, and the aliases (sharing the canonical key's tensor, as the
    official duplicates do)."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, not {stage}")
    s = f"s{stage}"
    out = official_weights(ref[f"{s}_params"], int(ref[f"seed_{s}"]))
    for key, value in ref[f"{s}_buffers"].items():
        if key in out:
            raise ValueError(f"buffer {key} is also a parameter")
        out[key] = value.clone()
    for alias, canonical in ref[f"{s}_aliases"].items():
        if alias in out:
            raise ValueError(f"alias {alias} is also a parameter or buffer")
        out[alias] = out[canonical]
    return out


def _stream_digest() -> str:
    rng = np.random.default_rng(0)
    draws = np.concatenate([rng.standard_normal(4096), rng.random(64)])
    return hashlib.sha256(_bf16(draws).to(torch.bfloat16).view(torch.int16).numpy().tobytes()).hexdigest()


def check_numpy_stream() -> None:
    """Raise if this numpy's ``default_rng`` streams, rounded to bfloat16, differ from those the files were
    made with (numpy does not promise stream stability across versions; a change would show as a parity
    failure of every quantity)."""
    digest = _stream_digest()
    if digest != _STREAM_SHA256:
        raise RuntimeError(
            f"numpy {np.__version__}: default_rng stream digest {digest} != {_STREAM_SHA256}; the weights of "
            "tests/data/official_tiny cannot be rebuilt with this numpy"
        )
