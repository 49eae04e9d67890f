"""A DiffIR model as one ONNX graph: ``python -m diffir.export <model> --format onnx --out model.onnx``.

``<model>`` is any source :func:`diffir.load` takes (a training checkpoint, a model file or folder, an official
DiffIR file, a Hub id). The graph restores whole images of any size, as ``infer.py`` does:

- inputs ``lq`` (N×3×H×W float32 in [0, 1]), ``noise`` (N×D, the start of the reverse diffusion; D = 256 for
  the paper models; absent for the no-diffusion ablation) and, for inpainting, ``mask`` (N×1×H×W, 1 = hole);
  output ``restored`` (N×3×sH×sW); batch, height and width are dynamic;
- inside: the reflect padding to the model's size multiple (one gather per axis, sizes computed from the
  input's shape), CPEN_S2, the T reverse diffusion steps unrolled (deterministic: the noise is an input,
  there is no random op), the DIRformer, the crop back; for inpainting the masked input and the composite
  with the known pixels;
- metadata: the model's config (``diffir.config``, JSON: what :func:`diffir.build_model` takes) and the facts
  a runtime needs (scale, size multiple, noise length, parameter count).

Exporter: the TorchScript exporter (``torch.onnx.export(dynamo=False)``), opset 17. The torch.export-based
exporter (``dynamo=True``, torch's default) also exports this graph, equal to PyTorch to ~1e-7, but its
symbolic shapes (the in-graph padding makes every size an expression) make it slow: 112 s against 9 s for a
prototype of this graph of the tiny SR ×4 model on this shared 2-core CPU (torch 2.14, onnxscript 0.7; its
time goes to symbolic-shape bookkeeping, ~0.1 s per node), and the paper models have ~4× as many nodes. A trace can freeze a size into the graph; here any ``TracerWarning`` (what
tracing says when it does) fails the export, and the tests run every task's graph at sizes and batches other
than the trace's. Opset 17 is the first with ``LayerNormalization`` (one node instead of ~8); nothing here
needs a later one, and an older opset is read by more runtimes. The graph keeps diffir's composed SR head
and attention projection (fewer MACs, the same functions), the head's kernel composed once at export
(:meth:`diffir.models.SRHead.freeze`).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .convert import add_official_options, official_options
from .errors import UsageError
from .io import write_atomic
from .models import DiffIRS1, DiffIRS2, SRHead, set_channels_last, set_composed
from .onnx_runtime import META_CONFIG, META_VERSION, OUTPUT, example_inputs, graph_inputs
from .pretrained import model_config_of
from .restoration import composite, inpainting_input, restore_unchecked

OPSET = 17


class OnnxGraph(nn.Module):
    """What the exported graph computes: :func:`diffir.restoration.restore_image` of a whole image, with the
    start vector given, on a float32 NCHW copy of ``model`` with diffir's composed SR head and attention (the
    same functions in fewer MACs; onnxruntime runs the SR ×4 paper model ~15 % faster with them), the head's
    kernel composed once (:meth:`~diffir.models.SRHead.freeze`)."""

    def __init__(self, model: DiffIRS1 | DiffIRS2) -> None:
        super().__init__()
        check_exportable(model)
        self.model = set_composed(set_channels_last(copy.deepcopy(model).float().cpu().eval(), False))
        for head in self.model.modules():
            if isinstance(head, SRHead):
                head.freeze()
        self.input_names = graph_inputs(model)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs, strict=True))
        image, mask = named["lq"], named.get("mask")
        lq = image if mask is None else inpainting_input(image, mask)
        out = restore_unchecked(self.model, lq, noise=named.get("noise"))
        return out if mask is None else composite(out, image, mask)


def check_exportable(model: Any) -> None:
    """Raise ``ValueError`` for models the graph cannot express, naming why and what to use instead."""
    if isinstance(model, DiffIRS1):
        raise ValueError(
            "a stage-1 model needs the ground truth to extract its prior (it is stage 2's teacher), so it has "
            "no standalone graph: export the stage-2 model of the same experiment"
        )
    if not isinstance(model, DiffIRS2):
        raise ValueError(
            f"ONNX export covers DiffIR stage-2 models, not {type(model).__name__} (the pixel-diffusion "
            "baselines sample for tens to hundreds of steps: run them with eval.py / infer.py)"
        )
    if model.diffusion is not None and model.diffusion.reverse_noise:
        raise ValueError(
            "this model adds fresh noise in every reverse step (diffusion reverse_noise=true): the graph has no "
            "random op, so export a model trained with the deterministic sampler (reverse_noise=false)"
        )


def _dynamic_axes(names: list[str]) -> dict[str, dict[int, str]]:
    image = {0: "batch", 2: "height", 3: "width"}
    axes = {"lq": image, "noise": {0: "batch"}, "mask": image}
    return {**{name: axes[name] for name in names}, OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"}}


def _metadata(model: DiffIRS2, config: dict[str, Any]) -> dict[str, str]:
    facts = {
        "scale": model.scale,
        "size_multiple": model.size_multiple,
        "in_channels": model.in_channels,
        "noise_dim": model.noise_dim or 0,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    meta = {f"diffir.{k}": str(v) for k, v in facts.items()}
    return meta | {META_VERSION: __version__, META_CONFIG: json.dumps(config, sort_keys=True)}


def export_onnx(model: DiffIRS2, path: str | Path, config: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` as one ONNX graph (see the module docstring); returns the path.

    ``config`` is the model's ``build_model`` arguments, stored as metadata so that ``infer.py`` / ``eval.py``
    know the task (default: ``model.config``, which :func:`diffir.build_model` and :func:`diffir.load` set; a
    model without one is refused).
    The file is written atomically, after ``onnx.checker`` has passed.
    """
    import onnx  # the export extra: pip install 'diffir[export]'

    graph = OnnxGraph(model)
    config = config if config is not None else model_config_of(model)
    inputs = example_inputs(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.trace")
    try:
        with warnings.catch_warnings():
            # a TracerWarning means a size was frozen into the graph: fail rather than write a wrong graph
            warnings.simplefilter("error", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
            torch.onnx.export(
                graph,
                tuple(inputs),
                scratch,
                dynamo=False,
                opset_version=OPSET,
                input_names=graph.input_names,
                output_names=[OUTPUT],
                dynamic_axes=_dynamic_axes(graph.input_names),
            )
        proto = onnx.load(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    proto.doc_string = f"diffir {__version__} DiffIR stage-2 restoration graph (inputs {graph.input_names})"
    for key, value in _metadata(model, config).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    write_atomic(path, proto.SerializeToString())
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m diffir.export <model> --format onnx --out model.onnx`` (console script ``diffir-export``)."""
    parser = argparse.ArgumentParser(
        prog="python -m diffir.export",
        description="Export a DiffIR stage-2 model (any source diffir.load takes) as one ONNX graph: any image "
        "size, batch, the prior's diffusion inside, inputs lq / noise / mask, output restored.",
    )
    parser.add_argument("source", help="a diffir checkpoint, model file or folder, official .pth, or Hub id")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="the output format (onnx)")
    parser.add_argument("--out", required=True, type=Path, help="the file to write, e.g. model.onnx")
    add_official_options(parser, stages=(2,))
    parser.add_argument("--filename", help="a Hub repository's file to export (default: its model folder)")
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip running the graph with onnxruntime against PyTorch on a test input",
    )
    args = parser.parse_args(argv)
    from .api import load
    from .checkpoint import CheckpointError

    try:
        if args.out.suffix != ".onnx":
            raise UsageError(
                f"--out {args.out}: give the file an .onnx suffix (infer.py / eval.py choose by it)"
            )
        official = official_options(args)
        model = load(args.source, filename=args.filename, **official)
        start = time.perf_counter()
        export_onnx(model, args.out)
    except (CheckpointError, ValueError, UsageError) as err:
        sys.exit(f"error: {err}")
    seconds, size = time.perf_counter() - start, args.out.stat().st_size
    config, scale = model.config, model.scale
    shapes = {"lq": "(N, 3, H, W)", "noise": f"(N, {model.noise_dim})", "mask": "(N, 1, H, W)"}
    inputs = ", ".join(f"{name} {shapes[name]}" for name in graph_inputs(model))
    out = "(N, 3, H, W)" if scale == 1 else f"(N, 3, {scale}H, {scale}W)"
    print(
        f"wrote {args.out} ({size / 2**20:.1f} MiB, {seconds:.0f} s): DiffIR stage 2, {config['task']}"
        f"{f' x{scale}' if config['task'] == 'sr' else ''}, {sum(p.numel() for p in model.parameters()):,} "
        f"parameters; inputs {inputs}; output restored {out}"
    )
    if args.verify:
        from .onnx_runtime import OnnxModel, compare_with_pytorch

        onnx_model = OnnxModel(args.out)
        for batch, (h, w), difference in compare_with_pytorch(onnx_model, model):
            print(f"onnxruntime vs PyTorch, {batch}x3x{h}x{w}: max |difference| = {difference:.2g}")


if __name__ == "__main__":
    main()
