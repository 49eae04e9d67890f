"""The results of an evaluation as files: metrics.json, metrics.csv (one row per dataset and method),
per_image.csv and metrics.md (the markdown table, also printed); :func:`results_table` is also what
:func:`diffir.runs.loggers.log_results` sends to W&B."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

METRIC_FORMATS = {"psnr": ".2f", "ssim": ".4f", "lpips": ".4f", "fid": ".2f"}


def results_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One row per method: the datasets' metric means side by side, then the parameters (M), the GMACs of
    the first image of the first dataset and the seconds per image over all datasets."""
    datasets, metrics = results["datasets"], results["metrics"]
    columns = ["method", *(f"{d} {m}" for d in datasets for m in metrics), "params (M)", "GMACs", "s/img"]
    rows = []
    for method in results["methods"]:
        runs = [datasets[d][method] for d in datasets]
        seconds = sum(r["seconds_per_image"] * len(r["per_image"]) for r in runs)
        images = sum(len(r["per_image"]) for r in runs)
        means = [r["mean"][m] for r in runs for m in metrics]
        macs = runs[0]["macs"]  # None: not counted (a graph run by onnxruntime)
        rows.append([method, *means, runs[0]["params"] / 1e6, macs and macs / 1e9, seconds / images])
    return columns, rows


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; metric columns use their customary precision (PSNR .2f, SSIM .4f, ...)."""

    def cell(column: str, value: Any) -> str:
        if value is None:
            return "—"
        return (
            value if isinstance(value, str) else format(value, METRIC_FORMATS.get(column.split()[-1], ".3f"))
        )

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(columns, row, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_results(results: dict[str, Any], out_dir: Path) -> str:
    """metrics.json, metrics.csv (one row per dataset and method), per_image.csv and metrics.md (the table,
    returned)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    summary, per_image = [], []
    for dataset, per_method in results["datasets"].items():
        for method, r in per_method.items():
            summary.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "images": len(r["per_image"]),
                    **r["mean"],
                    "params": r["params"],
                    "macs": r["macs"],
                    "macs_lq_size": "x".join(map(str, r["macs_lq_size"])),
                    "seconds_per_image": r["seconds_per_image"],
                }
            )
            per_image += [{"dataset": dataset, "method": method, **record} for record in r["per_image"]]
    _write_csv(out_dir / "metrics.csv", summary)
    _write_csv(out_dir / "per_image.csv", per_image)
    protocol = results["protocol"]
    channel = "Y" if protocol["test_y_channel"] else "RGB"
    title = (
        f"task={results['task']} scale={results['scale']} | PSNR/SSIM on {channel}, crop {protocol['crop_border']}"
        f"{', LPIPS ' + protocol['lpips_net'] if 'lpips' in results['metrics'] else ''} | GMACs of the first image "
        f"of {summary[0]['dataset']} (LQ {summary[0]['macs_lq_size']}) | s/img on {results['device']}"
    )
    table = f"{title}\n\n{markdown_table(*results_table(results))}\n"
    (out_dir / "metrics.md").write_text(table)
    return table
