"""``python -m diffir.summary task=<sr|deblur|inpainting> stage=<1|2> [model=<preset>] [scale=<1|2|4>]``

Prints the parameters of each component (DIRformer, CPEN_S1 or CPEN_S2, denoiser) and the MACs of one
forward pass at a stated size (``input_size=<GT side>``, default 256, i.e. LQ 64×64 for SR ×4), counted
with torch's own FLOP counter (MACs = FLOPs / 2), layer by layer as the official code computes them
(what papers report; diffir's composed SR head and attention execute fewer). The last line is a JSON object (``params`` = total).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import compose_config
from .model_config import build_from_config, model_config
from .models import DiffIRS1, DiffIRS2, switches
from .tasks import task_facts

COMPONENT_NAMES = {
    "G": "DIRformer (G)",
    "E": "CPEN_S1 (E)",
    "condition": "CPEN_S2 (condition)",
    "denoise": "denoiser",
}


def example_inputs(
    model: DiffIRS1 | DiffIRS2, task: str, scale: int, gt_size: int
) -> tuple[torch.Tensor, ...]:
    """An (LQ[, GT]) pair of the stated GT size; the LQ is ``gt_size / scale`` (4 channels for inpainting)."""
    lq_size = gt_size // scale
    lq = torch.rand(1, task_facts(task).input_channels, lq_size, lq_size)
    return (lq, torch.rand(1, 3, gt_size, gt_size)) if isinstance(model, DiffIRS1) else (lq,)


def summarize(
    model: DiffIRS1 | DiffIRS2, inputs: tuple[torch.Tensor, ...], layer_by_layer: bool = True
) -> dict[str, Any]:
    """Parameters and MACs per top-level component, and totals.

    ``layer_by_layer`` (default) counts the MACs of the architecture as the official code computes it, the
    number papers report; ``False`` counts what diffir executes (its composed SR head and attention need
    fewer).
    """
    counter = FlopCounterMode(display=False)
    order = switches.layer_by_layer(model) if layer_by_layer else contextlib.nullcontext()
    with order, torch.no_grad(), counter:
        model(*inputs)
    flops = counter.get_flop_counts()
    root = type(model).__name__
    components = {}
    for name, module in model.named_children():
        if name == "diffusion":  # holds no weights; its MLP calls are counted under the denoiser
            continue
        macs = sum(flops.get(f"{root}.{name}", {}).values()) // 2
        components[name] = {"params": sum(p.numel() for p in module.parameters()), "macs": macs}
    return {
        "components": components,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": sum(flops.get("Global", {}).values()) // 2,
    }


def format_table(summary: dict[str, Any], title: str) -> str:
    rows = [(COMPONENT_NAMES.get(k, k), v["params"], v["macs"]) for k, v in summary["components"].items()]
    rows.append(("total", summary["params"], summary["macs"]))
    width = max(len(r[0]) for r in rows)
    lines = [title, f"{'component':<{width}}  {'parameters':>14}  {'MACs':>18}"]
    for i, (name, params, macs) in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("-" * (width + 36))
        lines.append(f"{name:<{width}}  {params:>14,}  {macs:>18,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    overrides = list(sys.argv[1:] if argv is None else argv)
    gt_size = 256
    for item in list(overrides):
        if item.startswith("input_size="):
            gt_size = int(item.split("=", 1)[1])
            overrides.remove(item)
    cfg = compose_config(overrides)
    config = model_config(cfg.task, cfg.stage, cfg.scale, cfg.model, cfg.diffusion)
    model = build_from_config(config).eval()
    inputs = example_inputs(model, cfg.task, cfg.scale, gt_size)
    summary = summarize(model, inputs)
    size = "x".join(str(s) for s in inputs[0].shape[-2:])
    title = (
        f"DiffIR stage {cfg.stage} | task={cfg.task} scale={cfg.scale} model={cfg.model.preset} "
        f"| MACs for one LQ input of {size}"
    )
    print(format_table(summary, title))
    result = {
        "task": cfg.task,
        "stage": int(cfg.stage),
        "scale": int(cfg.scale),
        "model": cfg.model.preset,
        "input_size": list(inputs[0].shape[-2:]),
        **summary,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
