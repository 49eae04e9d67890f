"""The run behind ``python eval.py``: every method on every image of every dataset, timed, scored and saved
(what is evaluated, on which images, with which metrics and into which files: :mod:`diffir.evaluation`)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode
from torchvision.utils import save_image
from tqdm import tqdm

from ..evaluation.grids import cell_width, comparison_grid
from ..evaluation.methods import Method, build_methods
from ..evaluation.protocol import as_list, build_metrics, task_config
from ..evaluation.report import METRIC_FORMATS, write_results
from ..evaluation.samples import Sample, TestSet, build_datasets, check_fid_set_sizes, check_sizes
from ..io import require_writable_dir, save_png
from ..metrics import MetricSuite
from ..models.switches import log_compile_cost
from ..restoration import check_tiling_config, composite
from ..restorer import resolve_device
from .loggers import log_results

log = logging.getLogger("diffir")


def _macs(method: Method, sample: Sample) -> int | None:
    """The MACs torch executes for ``sample`` (None for a method run outside torch: shown as —)."""
    if not method.counts_macs:
        return None
    counter = FlopCounterMode(display=False)
    with counter:
        method.run(sample)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dir_name(name: str) -> str:
    """A method name as one folder name: ``run1/last (stage-1 oracle)`` -> ``run1_last_stage-1_oracle``."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_")


def _grid_labels(methods: list[Method], suites: dict[str, MetricSuite]) -> list[str]:
    """Column labels: LQ, each method with its first metric on the image just scored, GT."""
    labels = []
    for method in methods:
        record = suites[method.name].per_image()[-1]
        metric = next((m for m in METRIC_FORMATS if m in record), None)
        value = f" {metric.upper()} {record[metric]:{METRIC_FORMATS[metric]}}" if metric else ""
        labels.append(f"{method.name}{value}")
    return ["LQ", *labels, "GT"]


@torch.no_grad()
def evaluate_dataset(
    name: str,
    test_set: TestSet,
    methods: list[Method],
    suites: dict[str, MetricSuite],
    cfg: DictConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Run every method on every image of one dataset; returns per-method results."""
    out_dir = Path(cfg.output_dir)
    for suite in suites.values():
        suite.reset()
    seconds = dict.fromkeys(suites, 0.0)
    macs: dict[str, int | None] = {}
    first_size = None
    for index, load in enumerate(tqdm(test_set.loaders, desc=name, unit="img")):
        sample = load()
        outputs = []
        for method in methods:
            if index == 0:
                macs[method.name] = _macs(method, sample)
                first_size = list(sample.lq.shape[-2:])
            _sync(device)
            start = time.perf_counter()
            out = method.run(sample)
            _sync(device)
            seconds[method.name] += time.perf_counter() - start
            if sample.mask is not None:
                out = composite(out, sample.gt, sample.mask)
            out = out.clamp(0, 1)
            suites[method.name].update(out, sample.gt, names=[sample.name])
            if cfg.save_images:
                save_png(out, out_dir / "images" / name / _dir_name(method.name) / f"{sample.name}.png")
            outputs.append(out)
        if index < cfg.grids:
            grid = comparison_grid(
                sample.lq,
                outputs,
                sample.gt,
                cell_width(sample.gt, cfg.grid_max_side),
                labels=_grid_labels(methods, suites),
            )
            path = out_dir / "grids" / name / f"{sample.name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, path)
    count = len(test_set.loaders)
    return {
        m.name: {
            "mean": suites[m.name].compute(),
            "seconds_per_image": seconds[m.name] / count,
            "macs": macs[m.name],
            "macs_lq_size": first_size,
            "params": m.params,
            "per_image": suites[m.name].per_image(),
        }
        for m in methods
    }


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg``'s checkpoints / baselines on its datasets; writes and prints the results.

    Everything that can be checked before the long run is: options, checkpoints, folders, pairs, image sizes
    and the metrics' weights.
    """
    check_tiling_config(cfg)
    out_dir = require_writable_dir(cfg.output_dir, "output_dir=")
    device = resolve_device(cfg.device)
    methods, task, scale = build_methods(cfg, device)
    task_cfg = task_config(task, scale)
    datasets = build_datasets(cfg, task, scale, task_cfg, device)
    metric_args, suites, skipped = build_metrics(cfg, task, task_cfg, [m.name for m in methods], device)
    check_sizes(datasets, metric_args)
    check_fid_set_sizes(datasets, metric_args)
    torch.manual_seed(cfg.seed)  # only models with reverse_noise draw during sampling
    results: dict[str, Any] = {
        "task": task,
        "scale": scale,
        "metrics": metric_args["metrics"],
        "skipped_metrics": skipped,
        "protocol": {k: v for k, v in metric_args.items() if k != "metrics"},
        "device": str(device),
        "methods": [m.name for m in methods],
        "checkpoints": [str(p) for p in as_list(cfg.ckpt)],
        "seed": cfg.seed,
        "tiling": {k: cfg[k] for k in ("tile", "tile_overlap", "prior", "prior_max_side")}
        if cfg.tile
        else None,
        "datasets": {},
    }
    for name, test_set in datasets.items():
        results["datasets"][name] = evaluate_dataset(name, test_set, methods, suites, cfg, device)
    table = write_results(results, out_dir)
    print(table)
    for metric in skipped:
        print(
            f"{metric.upper()} was not computed: its pretrained weights are missing (see the warning above)."
        )
    log.info("results written to %s", out_dir)
    if cfg.get("compile"):
        log_compile_cost()
    if "wandb" in cfg.logger:
        log_results(cfg, results)
    return results
