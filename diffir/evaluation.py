"""The run behind ``python eval.py``: score checkpoints and baselines on benchmark sets, side by side.

For every dataset and method it records the mean and per-image metrics of the task's protocol
(diffir-reference.md §5), the parameters, the MACs of one image (torch's FLOP counter, MACs = FLOPs / 2)
and the seconds per image, and writes ``metrics.json``, ``metrics.csv`` (one row per dataset and method),
``per_image.csv``, ``metrics.md``, the restored images and comparison grids to ``output_dir``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue
from torch.utils.flop_counter import FlopCounterMode
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from .config import CONF_DIR
from .data import FolderDataset, bicubic_upsample
from .data.datasets import list_images
from .infer import (
    UsageError,
    check_tiling_config,
    composite,
    find_images,
    find_mask,
    inpainting_input,
    load_checkpoint,
    read_image,
    read_mask,
    resolve_device,
    save_png,
)
from .inference import restore, restore_tiled, start_noise
from .metrics import MetricSuite, MissingWeightsError
from .models import DiffIRS1

log = logging.getLogger("diffir")

BASELINES = {"bicubic": ("sr",), "identity": ("deblur", "inpainting")}
METRIC_FORMATS = {"psnr": ".2f", "ssim": ".4f", "lpips": ".4f", "fid": ".2f"}


@dataclass
class Sample:
    """One test image: the network input (1, C, h, w), its ground truth (1, 3, H, W), the inpainting mask."""

    name: str
    lq: torch.Tensor
    gt: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class Method:
    """Something that restores a :class:`Sample`: a checkpoint or a baseline."""

    name: str
    run: Callable[[Sample], torch.Tensor]
    params: int = 0


def protocol(task: str, scale: int) -> dict[str, Any]:
    """The field's metric convention of a task (diffir-reference.md §5) as MetricSuite arguments: SR on the
    Y channel with ``scale`` border pixels cropped, deblurring on RGB, inpainting LaMa's SSIM/LPIPS(vgg)/FID."""
    return {
        "metrics": {"inpainting": ["ssim", "lpips", "fid"], "sr": ["psnr", "ssim", "lpips"]}.get(
            task, ["psnr", "ssim"]
        ),
        "crop_border": scale if task == "sr" else 0,
        "test_y_channel": task == "sr",
        "lpips_net": "vgg" if task == "inpainting" else "alex",
    }


# --- what to evaluate -------------------------------------------------------------------------------------
def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def _unique_names(paths: list[Path]) -> list[str]:
    """File stems, with as many parent folders as it takes to tell the files apart."""
    for depth in range(1, max((len(p.parts) for p in paths), default=1) + 1):
        names = ["/".join(p.with_suffix("").parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _checkpoint_method(model: Any, name: str, cfg: DictConfig, scale: int, device: torch.device) -> Method:
    noise = start_noise(model, 1, cfg.seed, device)
    if isinstance(model, DiffIRS1):
        if cfg.tile:
            raise UsageError(f"{name} is a stage-1 checkpoint: it needs the whole GT, so it cannot be tiled")
        name = f"{name} (stage-1 oracle)"  # sees the GT: an upper bound, not a restoration result

        def run(sample: Sample) -> torch.Tensor:
            return restore(model, sample.lq, gt=sample.gt, scale=scale)

    elif cfg.tile:

        def run(sample: Sample) -> torch.Tensor:
            return restore_tiled(
                model, sample.lq, cfg.tile, cfg.tile_overlap, scale, noise, cfg.prior, cfg.prior_max_side
            )

    else:

        def run(sample: Sample) -> torch.Tensor:
            return restore(model, sample.lq, noise=noise, scale=scale)

    return Method(name, run, sum(p.numel() for p in model.parameters()))


def _bicubic(sample: Sample, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(lq_uint8, scale, 'bicubic')``, uint8 in and out as the published baselines."""
    lq8 = (sample.lq * 255).round().clamp(0, 255).to(torch.uint8)
    return bicubic_upsample(lq8, scale).float() / 255


def _identity(sample: Sample) -> torch.Tensor:
    """The degraded input itself (the masked image for inpainting, composited with the known pixels)."""
    return sample.lq[:, :3]


def build_methods(cfg: DictConfig, device: torch.device) -> tuple[list[Method], str, int]:
    """The checkpoints and baselines of ``cfg``, with the task and scale they share."""
    ckpts = [Path(p).expanduser() for p in _as_list(cfg.ckpt)]
    baselines = _as_list(cfg.method)
    if not ckpts and not baselines:
        raise UsageError(
            "nothing to evaluate: pass ckpt=<file> (or ckpt=[a,b]) and/or method=bicubic|identity"
        )
    loaded = [load_checkpoint(path, device) for path in ckpts]
    tasks = {(c["task"], int(c["scale"])) for _, c in loaded}
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
        scale = int(cfg.scale or (4 if task == "sr" else 1))
    if task != "sr" and scale != 1:
        raise UsageError(f"scale={scale} is only meaningful for task=sr")

    methods = [
        _checkpoint_method(model, name, cfg, scale, device)
        for (model, _), name in zip(loaded, _unique_names(ckpts), strict=True)
    ]
    for baseline in baselines:
        if baseline not in BASELINES:
            raise UsageError(f"unknown method={baseline}; baselines: {sorted(BASELINES)}")
        if task not in BASELINES[baseline]:
            raise UsageError(
                f"method={baseline} is a baseline for {'/'.join(BASELINES[baseline])}, not {task}"
            )
        run = partial(_bicubic, scale=scale) if baseline == "bicubic" else _identity
        methods.append(Method(baseline, run))
    return methods, task, scale


# --- on which data ----------------------------------------------------------------------------------------
def _require_dir(path: str | Path, dataset: str, prepare: str | None) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        hint = f"\n  {prepare}" if prepare else ""
        raise UsageError(f"dataset '{dataset}': directory {path} ({path.absolute()}) does not exist.{hint}")
    return path


def _degradation(cfg: DictConfig, task: str, scale: int) -> Any:
    """``cfg.degradation``, else the task's training degradation (conf/task/<task>.yaml) at ``scale``."""
    spec = cfg.degradation
    if spec is None:
        task_cfg = OmegaConf.load(CONF_DIR / "task" / f"{task}.yaml")
        task_cfg.scale = scale
        spec = task_cfg.degradation
    return instantiate(spec, _convert_="object")


def _hr_samples(
    name: str, root: Path, cfg: DictConfig, task: str, scale: int, device: torch.device
) -> list[Callable[[], Sample]]:
    """Clean images degraded by the task's degradation (SR: mod-crop, MATLAB bicubic, 8-bit), seeded per image."""
    degradation = _degradation(cfg, task, scale)
    try:
        dataset = FolderDataset(root, degradation, scale=scale, deterministic=True, seed=cfg.seed)
    except (FileNotFoundError, OSError) as err:
        raise UsageError(f"dataset '{name}': {err}") from err

    def load(index: int) -> Sample:
        item = dataset[index]
        mask = item["mask"][None].to(device) if "mask" in item else None
        return Sample(item["name"], item["lq"][None].to(device), item["gt"][None].to(device), mask)

    return [partial(load, i) for i in range(len(dataset))]


def _paired_samples(
    lq_dir: Path, gt_dir: Path, scale: int, device: torch.device
) -> list[Callable[[], Sample]]:
    def names(root: Path) -> dict[str, Path]:
        return {f.relative_to(root).with_suffix("").as_posix(): f for f in list_images(root)}

    lq, gt = names(lq_dir), names(gt_dir)
    missing = sorted(set(lq) ^ set(gt))
    if missing or not lq:
        raise UsageError(
            f"{lq_dir} and {gt_dir} must hold images of the same names; unmatched: {missing[:5] or 'no images'}"
        )

    def load(name: str) -> Sample:
        lq_img, gt_img = read_image(lq[name])[0], read_image(gt[name])[0]
        h, w = lq_img.shape[-2] * scale, lq_img.shape[-1] * scale
        if gt_img.shape[-2] < h or gt_img.shape[-1] < w:
            raise UsageError(f"{gt[name]} is smaller than {lq[name]} x{scale}")
        return Sample(name, lq_img.to(device), gt_img[..., :h, :w].to(device))

    return [partial(load, name) for name in sorted(lq)]


def _masked_samples(images_dir: Path, masks_dir: Path, device: torch.device) -> list[Callable[[], Sample]]:
    together = images_dir.resolve() == masks_dir.resolve()
    images = [(p, n) for p, n in find_images(images_dir) if not (together and "_mask" in Path(n).name)]
    pairs = [(path, name, find_mask(masks_dir, name, path)) for path, name in images]

    def load(path: Path, name: str, mask_path: Path) -> Sample:
        image = read_image(path)[0].to(device)
        mask = read_mask(mask_path, image.shape[-2:], path).to(device)
        return Sample(name, inpainting_input(image, mask), image, mask)

    return [partial(load, *pair) for pair in pairs]


def build_datasets(
    cfg: DictConfig, task: str, scale: int, device: torch.device
) -> dict[str, list[Callable[[], Sample]]]:
    """Every dataset of ``cfg.data`` as lazy sample loaders; missing folders fail here, before any model runs."""
    datasets = {}
    for name, spec in cfg.data.items_ex(resolve=False):
        if not isinstance(spec, DictConfig):  # the presets' parameters (data.root, data.lq, ...)
            continue
        try:
            spec = OmegaConf.to_container(spec, resolve=True, throw_on_missing=True)
        except (MissingMandatoryValue, InterpolationToMissingValueError) as err:
            raise UsageError(f"dataset '{name}' is incomplete: {spec.get('prepare', err)}") from err
        prepare = spec.get("prepare")
        if spec["kind"] == "hr":
            root = _require_dir(spec["root"], name, prepare)
            datasets[name] = _hr_samples(name, root, cfg, task, scale, device)
        elif spec["kind"] == "paired":
            if task == "inpainting":
                raise UsageError(f"dataset '{name}' has (LQ, GT) pairs; inpainting needs images and masks")
            lq_dir, gt_dir = (_require_dir(spec[k], name, prepare) for k in ("lq", "gt"))
            datasets[name] = _paired_samples(lq_dir, gt_dir, scale, device)
        elif spec["kind"] == "masked":
            if task != "inpainting":
                raise UsageError(
                    f"dataset '{name}' is an inpainting set (images + masks), not for task={task}"
                )
            images_dir, masks_dir = (_require_dir(spec[k], name, prepare) for k in ("images", "masks"))
            datasets[name] = _masked_samples(images_dir, masks_dir, device)
        else:
            raise UsageError(f"dataset '{name}': unknown kind {spec['kind']!r} (hr, paired or masked)")
    if not datasets:
        raise UsageError("no dataset selected: data=<preset> or data=[<preset>,<preset>]")
    return datasets


def build_metrics(
    cfg: DictConfig, task: str, scale: int, methods: list[Method], device: torch.device
) -> tuple[dict[str, Any], dict[str, MetricSuite], dict[str, str]]:
    """The MetricSuite arguments, one suite per method, and the protocol metrics skipped for want of their
    pretrained weights (name -> the message saying which file to fetch), all settled before the long run.

    Metrics asked for explicitly (``metrics=[...]``) must be computable; the task's default protocol drops a
    perceptual metric whose weights are not installed, says so loudly, and records it in the results.
    """
    args = protocol(task, scale)
    explicit = cfg.metrics is not None
    if explicit:
        args["metrics"] = list(_as_list(cfg.metrics))
    args["lpips_net"] = cfg.lpips_net or args["lpips_net"]
    skipped: dict[str, str] = {}
    while True:
        try:
            return args, {m.name: MetricSuite(**args).to(device) for m in methods}, skipped
        except MissingWeightsError as err:
            missing = next(
                (m for m in ("lpips", "fid") if m in args["metrics"] and m in str(err).lower()), None
            )
            light = [m for m in args["metrics"] if m not in ("lpips", "fid")] or ["psnr", "ssim"]
            if explicit or missing is None or len(args["metrics"]) == 1:
                raise UsageError(f"{err}\nOr evaluate without it: metrics=[{','.join(light)}]") from err
            log.warning("%s is skipped: its pretrained weights are missing.\n%s", missing.upper(), err)
            skipped[missing] = str(err)
            args["metrics"] = [m for m in args["metrics"] if m != missing]
        except ValueError as err:
            raise UsageError(str(err)) from err


# --- comparison grids -------------------------------------------------------------------------------------
def comparison_grid(
    lq: torch.Tensor, outputs: list[torch.Tensor], gt: torch.Tensor, max_side: int
) -> torch.Tensor:
    """Top row: LQ (nearest-upsampled; RGB part), each output, GT. Bottom row: the same ×4 zoom on the
    window where the first output is worst (marked red above)."""
    h, w = gt.shape[-2:]
    lq = F.interpolate(lq[:, :3], size=(h, w), mode="nearest") if lq.shape[-2:] != (h, w) else lq[:, :3]
    cells = [c.clamp(0, 1).float().cpu() for c in (lq, *outputs, gt)]
    ch, cw = max(h // 4, 1), max(w // 4, 1)
    error = (cells[1] - cells[-1]).abs().mean(dim=1, keepdim=True)
    stride = (max(ch // 2, 1), max(cw // 2, 1))
    score = F.avg_pool2d(error, (ch, cw), stride=stride)
    iy, ix = divmod(int(score.flatten().argmax()), score.shape[-1])
    y, x = iy * stride[0], ix * stride[1]
    zooms = [F.interpolate(c[..., y : y + ch, x : x + cw], size=(h, w), mode="nearest") for c in cells]
    factor = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    t = max(1, round(2 / factor))
    for cell in cells:
        box = cell[..., y : y + ch, x : x + cw]
        for edge in (box[..., :t, :], box[..., -t:, :], box[..., :, :t], box[..., :, -t:]):
            edge.copy_(red.expand_as(edge))
    rows = [
        F.interpolate(c, size=size, mode="bilinear", antialias=True) if factor < 1 else c
        for c in cells + zooms
    ]
    return make_grid(torch.cat(rows).clamp(0, 1), nrow=len(cells), padding=2, pad_value=1.0)


# --- the run ----------------------------------------------------------------------------------------------
def _macs(method: Method, sample: Sample) -> int:
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


@torch.no_grad()
def evaluate_dataset(
    name: str,
    samples: list[Callable[[], Sample]],
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
    macs: dict[str, int] = {}
    first_size = None
    for index, load in enumerate(tqdm(samples, desc=name, unit="img")):
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
            grid = comparison_grid(sample.lq, outputs, sample.gt, cfg.grid_max_side)
            path = out_dir / "grids" / name / f"{sample.name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, path)
    return {
        m.name: {
            "mean": suites[m.name].compute(),
            "seconds_per_image": seconds[m.name] / len(samples),
            "macs": macs[m.name],
            "macs_lq_size": first_size,
            "params": m.params,
            "per_image": suites[m.name].per_image(),
        }
        for m in methods
    }


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
        rows.append([method, *means, runs[0]["params"] / 1e6, runs[0]["macs"] / 1e9, seconds / images])
    return columns, rows


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; metric columns use their customary precision (PSNR .2f, SSIM .4f, ...)."""

    def cell(column: str, value: Any) -> str:
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


def log_to_wandb(cfg: DictConfig, results: dict[str, Any]) -> None:
    """Send the table (a ``wandb.Table``) and the means to W&B; offline without an API key."""
    import wandb  # imported only when asked for: it is slow to import

    from .training import configure_wandb

    offline = configure_wandb(cfg)
    run = wandb.init(
        project=cfg.logger.wandb.project,
        name=cfg.logger.wandb.name,
        job_type="eval",
        dir=str(cfg.output_dir),
        config=OmegaConf.to_container(cfg, resolve=True),
        mode="offline" if offline else None,
    )
    columns, rows = results_table(results)
    run.log({"eval/metrics": wandb.Table(columns=columns, data=rows)})
    for dataset, per_method in results["datasets"].items():
        for method, r in per_method.items():
            for metric, value in r["mean"].items():
                run.summary[f"{dataset}/{method}/{metric}"] = value
    run.finish()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg``'s checkpoints / baselines on its datasets; writes and prints the results."""
    check_tiling_config(cfg)
    device = resolve_device(cfg.device)
    methods, task, scale = build_methods(cfg, device)
    datasets = build_datasets(cfg, task, scale, device)
    metric_args, suites, skipped = build_metrics(cfg, task, scale, methods, device)
    torch.manual_seed(cfg.seed)  # only models with reverse_noise draw during sampling
    results: dict[str, Any] = {
        "task": task,
        "scale": scale,
        "metrics": metric_args["metrics"],
        "skipped_metrics": skipped,
        "protocol": {k: v for k, v in metric_args.items() if k != "metrics"},
        "device": str(device),
        "methods": [m.name for m in methods],
        "checkpoints": [str(p) for p in _as_list(cfg.ckpt)],
        "seed": cfg.seed,
        "tiling": {k: cfg[k] for k in ("tile", "tile_overlap", "prior", "prior_max_side")}
        if cfg.tile
        else None,
        "datasets": {},
    }
    for name, samples in datasets.items():
        results["datasets"][name] = evaluate_dataset(name, samples, methods, suites, cfg, device)
    table = write_results(results, Path(cfg.output_dir))
    print(table)
    for metric in skipped:
        print(
            f"{metric.upper()} was not computed: its pretrained weights are missing (see the warning above)."
        )
    log.info("results written to %s", cfg.output_dir)
    if "wandb" in cfg.logger:
        log_to_wandb(cfg, results)
    return results
