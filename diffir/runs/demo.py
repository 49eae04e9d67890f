"""The README's main job: train both DiffIR stages on the bundled photos, then compare with bicubic.

``python -m diffir.runs.demo [key=value ...]`` (``make demo``) runs ``train.py experiment=demo stage=1``, then
``stage=2``, then scores bicubic upsampling, stage 1 (an oracle: its prior sees the GT) and stage 2 (the real method) on the
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

from ..config import compose_config
from ..data import bicubic_upsample
from ..errors import RunSetupError, UsageError
from ..evaluation.grids import comparison_grid, stack
from ..evaluation.report import markdown_table
from ..restorer import load_restorer
from .train import train

STAGE1, STAGE2 = "DiffIR stage 1 (oracle: prior from GT)", "DiffIR stage 2"
COLUMNS = {"bicubic": "bicubic", STAGE1: "stage 1 (oracle)", STAGE2: "stage 2"}
CELL_WIDTH = 240  # every photo's cells are this wide, so the rows of the comparison align


@torch.no_grad()
def compare(
    cfg: DictConfig, checkpoints: dict[str, Path]
) -> tuple[dict[str, dict[str, float]], torch.Tensor]:
    """Score bicubic and each checkpoint on the validation photos; returns the table and a comparison grid:
    one row per photo, columns LQ | bicubic | stage 1 | stage 2 | GT labelled with each image's PSNR."""
    dataset = instantiate(cfg.data.module.val, _convert_="object")
    restorers = {
        name: load_restorer(path, device=torch.device("cpu"), oracle=True)
        for name, path in checkpoints.items()
    }
    suites = {name: instantiate(cfg.metrics, _convert_="object") for name in ["bicubic", *restorers]}
    rows = []
    for index, batch in enumerate(DataLoader(dataset, batch_size=1)):
        lq, gt = batch["lq"], batch["gt"]
        outputs = {"bicubic": bicubic_upsample(lq, cfg.scale).clamp(0, 1)}
        for name, restorer in restorers.items():
            out = restorer(lq, gt=gt if restorer.oracle else None, seed=cfg.seed + index)
            outputs[name] = out.clamp(0, 1)
        labels = ["LQ"]
        for name, out in outputs.items():
            suites[name].update(out, gt, names=list(batch["name"]))
            labels.append(f"{COLUMNS.get(name, name)} {suites[name].per_image()[-1]['psnr']:.2f} dB")
        rows.append(comparison_grid(lq, list(outputs.values()), gt, CELL_WIDTH, [*labels, "GT"], zoom=False))
    table = {name: suite.compute() for name, suite in suites.items()}
    return table, stack(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    overrides = ["experiment=demo", *(sys.argv[1:] if argv is None else argv)]
    summaries = {}
    try:
        for stage in (1, 2):
            cfg = compose_config([*overrides, f"stage={stage}"])
            summaries[stage] = train(cfg, suggest_next=False)  # the demo runs stage 2 itself
    except (RunSetupError, UsageError) as err:  # UsageError: a folder or checkpoint that cannot be written
        sys.exit(f"error: {err}")
    checkpoints = {
        STAGE1: Path(summaries[1]["last_checkpoint"]),
        STAGE2: Path(summaries[2]["last_checkpoint"]),
    }
    table, grid = compare(cfg, checkpoints)
    out_dir = Path(cfg.paths.experiments_dir) / cfg.name
    metrics = list(next(iter(table.values())))
    text = markdown_table(["method", *metrics], [[name, *values.values()] for name, values in table.items()])
    print(
        f"\nHeld-out sample photos, SR x{cfg.scale} ({'Y channel, ' if cfg.metrics.test_y_channel else ''}"
        f"{cfg.metrics.crop_border}-pixel border cropped):\n{text}"
    )
    (out_dir / "results.md").write_text(text + "\n")
    (out_dir / "results.json").write_text(json.dumps(table, indent=2))
    save_image(grid, out_dir / "comparison.png")
    columns = "LQ | bicubic | stage 1 | stage 2 | GT, with PSNR"
    print(f"saved {out_dir / 'results.md'} and {out_dir / 'comparison.png'} ({columns})")
    return table


if __name__ == "__main__":
    main()
