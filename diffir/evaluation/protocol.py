"""What is measured and on what inputs: the task's training config (composed, so presets and overrides
apply as in ``train.py``) gives the default scale, the synthetic degradation and the PSNR/SSIM convention;
``protocol`` in ``conf/eval/eval.yaml`` gives the metrics each task reports (docs/method.md §5)."""

from __future__ import annotations

import logging
from typing import Any

from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from ..config import compose_config
from ..errors import UsageError
from ..metrics import MetricSuite, MissingWeightsError

log = logging.getLogger("diffir")

PERCEPTUAL = ("lpips", "fid")  # the metrics that need pretrained weights


def as_list(value: Any) -> list:
    """``None`` -> [], a scalar -> [it], a list -> itself (for ``key=a`` and ``key=[a,b]`` alike)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def task_config(task: str, scale: int | None = None) -> DictConfig:
    """The training config of ``task=<task> [scale=<scale>]``, composed as ``train.py`` composes it: the
    one source of the task's default scale, degradation and PSNR/SSIM convention (conf/task/<task>.yaml)."""
    try:
        return compose_config([f"task={task}", *([f"scale={scale}"] if scale is not None else [])])
    except HydraException as err:
        raise UsageError(f"task={task}: {err}") from err


def degradation(cfg: DictConfig, task_cfg: DictConfig) -> Any:
    """``cfg.degradation`` (a ``_target_`` spec), else the task's training degradation at the run's scale."""
    return instantiate(cfg.degradation or task_cfg.degradation, _convert_="object")


def protocol(cfg: DictConfig, task: str, task_cfg: DictConfig) -> dict[str, Any]:
    """MetricSuite arguments: the reported metrics and LPIPS backbone of ``cfg.protocol[task]`` (or
    ``metrics=`` / ``lpips_net=``), with the crop and channel of the task's training metrics (SR: Y channel,
    ``scale`` border pixels; deblurring and inpainting: RGB, no crop)."""
    reported = cfg.protocol[task]
    return {
        "metrics": as_list(cfg.metrics) or list(reported.metrics),
        "crop_border": int(task_cfg.metrics.crop_border),
        "test_y_channel": bool(task_cfg.metrics.test_y_channel),
        "lpips_net": cfg.lpips_net or reported.lpips_net,
    }


def available_metrics(args: dict[str, Any], explicit: bool) -> tuple[list[str], dict[str, str]]:
    """The metrics of ``args`` that can run here, and the skipped ones (name -> which file to fetch).

    Each perceptual metric is built once on its own to find out: one asked for explicitly (``metrics=[...]``)
    must be computable; the default protocol drops one whose weights are not installed, loudly.
    """
    kept, skipped = [], {}
    for metric in args["metrics"]:
        if metric in PERCEPTUAL:
            try:
                MetricSuite(**{**args, "metrics": [metric]})
            except MissingWeightsError as err:
                light = [m for m in args["metrics"] if m not in PERCEPTUAL] or ["psnr", "ssim"]
                if explicit:
                    raise UsageError(f"{err}\nOr evaluate without it: metrics=[{','.join(light)}]") from err
                log.warning("%s is skipped: its pretrained weights are missing.\n%s", metric.upper(), err)
                skipped[metric] = str(err)
                continue
        kept.append(metric)
    if not kept:
        raise UsageError(f"none of the metrics {args['metrics']} can run here: {' '.join(skipped.values())}")
    return kept, skipped


def build_metrics(
    cfg: DictConfig, task: str, task_cfg: DictConfig, methods: list[str], device: Any
) -> tuple[dict[str, Any], dict[str, MetricSuite], dict[str, str]]:
    """The MetricSuite arguments, one suite per method, and the protocol metrics skipped for want of their
    pretrained weights (name -> the message saying which file to fetch), all settled before the long run."""
    args = protocol(cfg, task, task_cfg)
    try:
        args["metrics"], skipped = available_metrics(args, explicit=cfg.metrics is not None)
        return args, {name: MetricSuite(**args).to(device) for name in methods}, skipped
    except ValueError as err:  # an unknown metric name or LPIPS backbone
        raise UsageError(str(err)) from err
