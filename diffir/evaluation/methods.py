"""What is evaluated: checkpoints (stage 2, or a stage-1 oracle) and baselines (bicubic, identity), with the
task and scale they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..baselines.evaluation import gdp_runner
from ..baselines.gdp import GDP_SCALES
from ..data import bicubic_upsample
from ..errors import UsageError
from ..restorer import Restorer, load_restorer
from .protocol import as_list, task_config
from .samples import Sample

BASELINES = {"bicubic": ("sr",), "identity": ("deblur", "inpainting"), "gdp": tuple(GDP_SCALES)}


@dataclass
class Method:
    """Something that restores a :class:`Sample`: a checkpoint or a baseline."""

    name: str
    run: Callable[[Sample], torch.Tensor]
    params: int = 0
    counts_macs: bool = True  # False: it runs outside torch (onnxruntime), where no MACs can be counted


def _unique_names(paths: list[Path]) -> list[str]:
    """File stems (or names, for a model and its graph: ``sr.ckpt``, ``sr.onnx``), with as many parent folders
    as it takes to tell the files apart."""
    for depth in range(1, max((len(p.parts) for p in paths), default=1) + 1):
        for stem in (True, False):
            names = ["/".join((p.with_suffix("") if stem else p).parts[-depth:]) for p in paths]
            if len(set(names)) == len(names):
                return names
    return [str(p) for p in paths]


def _checkpoint_method(restorer: Restorer, name: str) -> Method:
    """A checkpoint's :class:`~diffir.restorer.Restorer` on eval samples (whose LQ is the network input: for
    inpainting the masked image and the mask, which give the restorer the same input, masks being binary)."""
    if restorer.oracle:
        name = f"{name} (stage-1 oracle)"  # sees the GT: an upper bound, not a restoration result
    elif restorer.backend != "pytorch":
        name = f"{name} ({restorer.backend})"

    def run(sample: Sample) -> torch.Tensor:
        return restorer(sample.lq[:, :3], sample.mask, sample.gt if restorer.oracle else None)

    return Method(name, run, restorer.parameters, counts_macs=restorer.backend == "pytorch")


def bicubic(sample: Sample, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(lq_uint8, scale, 'bicubic')``, uint8 in and out as the published baselines."""
    lq8 = (sample.lq * 255).round().clamp(0, 255).to(torch.uint8)
    return bicubic_upsample(lq8, scale).float() / 255


def identity(sample: Sample) -> torch.Tensor:
    """The degraded input itself (the masked image for inpainting, composited with the known pixels)."""
    return sample.lq[:, :3]


def build_methods(cfg: DictConfig, device: torch.device) -> tuple[list[Method], str, int]:
    """The checkpoints and baselines of ``cfg``, with the task and scale they share."""
    ckpts = [Path(p).expanduser() for p in as_list(cfg.ckpt)]
    baselines = as_list(cfg.method)
    if not ckpts and not baselines:
        raise UsageError(
            "nothing to evaluate: pass ckpt=<file> (or ckpt=[a,b]) and/or method=bicubic|identity"
        )
    restorers = [load_restorer(path, cfg, device=device, oracle=True) for path in ckpts]
    tasks = {(r.task, int(r.config["scale"])) for r in restorers}
    if len(tasks) > 1:
        raise UsageError(
            f"the checkpoints are for different tasks / scales {sorted(tasks)}: evaluate them separately"
        )
    if tasks:
        task, scale = tasks.pop()
        if (cfg.task or task) != task or (cfg.scale or scale) != scale:
            raise UsageError(
                f"task={cfg.task} scale={cfg.scale} contradict the checkpoints (task={task}, scale={scale})"
            )
    elif cfg.task is None:
        raise UsageError(
            f"baselines need the task: add task=<sr|deblur|inpainting> (and scale= for sr), e.g. "
            f"method={baselines[0]} task={BASELINES.get(baselines[0], ('sr',))[0]}"
        )
    else:
        task = cfg.task
        scale = int(cfg.scale or task_config(task).scale)
    if task != "sr" and scale != 1:
        raise UsageError(f"scale={scale} is only meaningful for task=sr")

    methods = [
        _checkpoint_method(restorer, name)
        for restorer, name in zip(restorers, _unique_names(ckpts), strict=True)
    ]
    for baseline in baselines:
        if baseline not in BASELINES:
            raise UsageError(f"unknown method={baseline}; baselines: {sorted(BASELINES)}")
        if task not in BASELINES[baseline]:
            raise UsageError(
                f"method={baseline} is a baseline for {'/'.join(BASELINES[baseline])}, not {task}"
            )
        if baseline == "gdp":
            gdp, run = gdp_runner(cfg, task, scale, device)
            methods.append(Method(f"GDP-{gdp.mode}", run, sum(p.numel() for p in gdp.prior.parameters())))
            continue
        run = partial(bicubic, scale=scale) if baseline == "bicubic" else identity
        methods.append(Method(baseline, run))
    return methods, task, scale
