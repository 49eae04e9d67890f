"""The README's main job: train both DiffIR stages on the bundled photos, then compare with bicubic.

``python -m diffir.demo [key=value ...]`` runs ``train.py experiment=demo stage=1``, then ``stage=2``, then
scores bicubic upsampling, stage 1 (an oracle: its prior sees the GT) and stage 2 (the real method) on the
held-out photos, prints the table and saves it with a comparison grid under ``experiments/demo/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torchvision.utils import save_image

from .checkpoint import load_model
from .config import compose_config
from .data import bicubic_upsample
from .inference import restore, start_noise
from .lit.images import panel, stack_rows
from .models import DiffIRS1
from .training import RunSetupError, train


@torch.no_grad()
def compare(
    cfg: DictConfig, checkpoints: dict[str, Path]
) -> tuple[dict[str, dict[str, float]], torch.Tensor]:  # noqa: E501
    """Score bicubic and each checkpoint on the validation photos; returns the table and a comparison grid."""
    dataset = instantiate(cfg.data.module.val, _convert_="object")
    models = {name: load_model(path)[0] for name, path in checkpoints.items()}
    suites = {name: instantiate(cfg.metrics, _convert_="object") for name in ["bicubic", *models]}
    rows = []
    for index, batch in enumerate(DataLoader(dataset, batch_size=1)):
        lq, gt = batch["lq"], batch["gt"]
        outputs = {"bicubic": bicubic_upsample(lq, cfg.scale).clamp(0, 1)}
        for name, model in models.items():
            noise = start_noise(model, 1, cfg.seed + index)
            out = restore(
                model, lq, gt=gt if isinstance(model, DiffIRS1) else None, noise=noise, scale=cfg.scale
            )
            outputs[name] = out.clamp(0, 1)
        for name, out in outputs.items():
            suites[name].update(out, gt, names=list(batch["name"]))
        rows.append(panel(lq, list(outputs.values()), gt))
    table = {name: suite.compute() for name, suite in suites.items()}
    return table, stack_rows(rows)


def format_table(table: dict[str, dict[str, float]]) -> str:
    metrics = list(next(iter(table.values())))
    lines = ["| method | " + " | ".join(m.upper() for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, values in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    overrides = ["experiment=demo", *(sys.argv[1:] if argv is None else argv)]
    summaries = {}
    try:
        for stage in (1, 2):
            cfg = compose_config([*overrides, f"stage={stage}"])
            summaries[stage] = train(cfg)
    except RunSetupError as err:
        sys.exit(f"error: {err}")
    checkpoints = {
        "DiffIR stage 1 (oracle: prior from GT)": Path(summaries[1]["last_checkpoint"]),
        "DiffIR stage 2": Path(summaries[2]["last_checkpoint"]),
    }
    table, grid = compare(cfg, checkpoints)
    out_dir = Path(cfg.paths.experiments_dir) / cfg.name
    text = format_table(table)
    print(
        f"\nHeld-out sample photos, SR x{cfg.scale} ({'Y channel, ' if cfg.metrics.test_y_channel else ''}"
        f"{cfg.metrics.crop_border}-pixel border cropped):\n{text}"
    )
    (out_dir / "results.md").write_text(text + "\n")
    (out_dir / "results.json").write_text(json.dumps(table, indent=2))
    save_image(grid, out_dir / "comparison.png")
    print(
        f"saved {out_dir / 'results.md'} and {out_dir / 'comparison.png'} (LQ | bicubic | stage 1 | stage 2 | GT)"
    )
    return table


if __name__ == "__main__":
    main()
