"""DiffIR against the pixel-space diffusion baselines (SR3, the image-conditioned DDPM, GDP) side by side.

    python -m bench.compare_methods [--task sr] [--budget 600] [--crop 128] [--out experiments/compare]
    python -m bench.compare_methods --tiny          # a smoke run in about a minute (tests)

Every method trains on the bundled photos (``data=samples``) with the project's training loop for the same
CPU budget (``--budget`` seconds of wall clock each, or ``--steps`` steps each; DiffIR splits its budget
60/40 between its two stages, GDP spends it on its unconditional prior), is evaluated on centre crops of
the held-out photos, and goes into one table (Markdown, CSV, JSON): parameters, network evaluations (NFE)
per image, MACs per image at a stated output size (``--macs-size``, default 256², i.e. LQ 64² for SR ×4;
torch's FLOP counter, as ``diffir.summary``), measured seconds per image on this machine, PSNR / SSIM
(LPIPS when its weights are installed), and each cost as a ratio to DiffIR. Rows for the published
configurations (the DiffIR paper model, SR3 at paper size, GDP with the ImageNet ADM-256 prior) come from
FLOP counts alone. It also draws quality against MACs per image on a log axis and a grid of every method's
output on the same held-out crop.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import save_image

from diffir.checkpoint import load_model
from diffir.config import compose_config
from diffir.data import SamplesDataset
from diffir.diffusion import GDP, BicubicDown, Blur, Mask, PixelDiffusion, task_operator
from diffir.evaluation.grids import comparison_grid
from diffir.metrics import MetricSuite, MissingWeightsError
from diffir.model_config import model_preset
from diffir.models import build_model
from diffir.models.adm import ADMUNet
from diffir.models.unet import UNet, unet_preset
from diffir.restoration import restore, start_noise
from diffir.runs.train import train
from diffir.summary import example_inputs, summarize
from diffir.tasks import task_facts

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "data=samples",
    "logger=csv",
    "trainer=cpu",
    "~callbacks.progress",
    "trainer.enable_progress_bar=false",
    "data.num_workers=0",
]


def settings(tiny: bool) -> dict[str, Any]:
    """Model sizes, batches and sampler steps of the real comparison and of the smoke (``--tiny``) run."""
    if tiny:
        return dict(
            diffir_model="tiny", unet="xs", batch=2, patch=32, sr3_steps=4, ddim_steps=4, gdp_steps=4,
            val_every=2,
        )  # fmt: skip
    return dict(
        diffir_model="small", unet="s", batch=8, patch=64, sr3_steps=100, ddim_steps=50, gdp_steps=None,
        val_every=1_000_000,
    )  # fmt: skip


def budget_overrides(section: str, seconds: float | None, steps: int | None, s: dict) -> list[str]:
    """The same budget for every run: ``steps`` steps, or ``seconds`` of wall clock (Lightning's max_time)."""
    limit = [f"{section}.max_steps={steps}"] if steps else [f"{section}.max_steps=1000000"]
    if not steps:
        minutes, secs = divmod(max(1, int(seconds)), 60)
        hours, minutes = divmod(minutes, 60)
        limit.append(f"+trainer.max_time=00:{hours:02d}:{minutes:02d}:{secs:02d}")  # Lightning's DD:HH:MM:SS
    return [
        *limit,
        f"{section}.val_every={min(s['val_every'], steps or s['val_every'])}",
        f"{section}.batch_size={s['batch']}",
        f"{section}.patch_size={s['patch']}",
    ]


def train_all(args: argparse.Namespace, s: dict) -> dict[str, Path]:
    """Train DiffIR (both stages) and each baseline; returns the last checkpoint of each."""
    root = [
        *COMMON,
        f"paths.experiments_dir={args.out / 'runs'}",
        f"task={args.task}",
        "data.val_center_crop=32",
    ]
    ckpts: dict[str, Path] = {}
    for stage, share in ((1, 0.6), (2, 0.4)):
        cfg = compose_config(
            [
                *root, "experiment=demo", "data=samples", f"model={s['diffir_model']}", f"stage={stage}",
                "name=diffir", *budget_overrides(f"stage{stage}", args.budget * share, args.steps, s),
            ]
        )  # fmt: skip
        ckpts["DiffIR"] = Path(train(cfg)["last_checkpoint"])
    for label, method in (("SR3", "sr3"), ("cDDPM", "cddpm"), ("GDP prior", "ddpm_prior")):
        cfg = compose_config(
            [
                *root, f"method={method}", f"method.net.unet.preset={s['unet']}", "baseline.val_steps=2",
                f"name={method}", *budget_overrides("baseline", args.budget, args.steps, s),
            ]
        )  # fmt: skip
        ckpts[label] = Path(train(cfg)["last_checkpoint"])
    return ckpts


def held_out(task: str, scale: int, crop: int) -> list[dict[str, Any]]:
    """Centre crops of the held-out photos, degraded by the task's degradation with a seed per image (the
    blur kernel and the mask are kept: GDP needs them as its known operator)."""
    cfg = compose_config([f"task={task}", f"scale={scale}"])
    degradation = instantiate(cfg.degradation, _convert_="object")
    photos = SamplesDataset("val", degradation, scale=scale, center_crop=crop)
    samples = []
    for index in range(len(photos)):
        item = photos[index]
        gt = item["gt"]
        out = degradation(gt.permute(1, 2, 0).numpy(), np.random.default_rng(1000 + index))
        lq = torch.from_numpy(np.ascontiguousarray(out["lq"].transpose(2, 0, 1)))[None]
        samples.append(
            {
                "name": item["name"],
                "gt": gt[None],
                "lq": lq,
                "kernel": out.get("kernel"),
                "mask": out.get("mask"),
            }
        )
    return samples


def runners(
    ckpts: dict[str, Path], task: str, scale: int, s: dict
) -> dict[str, tuple[Callable[[dict], torch.Tensor], Any, int]]:
    """``name -> (restore(sample), model, NFE)`` for every trained method."""
    diffir = load_model(ckpts["DiffIR"])[0]
    sr3, cddpm = load_model(ckpts["SR3"])[0], load_model(ckpts["cDDPM"])[0]
    prior = load_model(ckpts["GDP prior"])[0]
    gdp = GDP(prior, task=task, steps=s["gdp_steps"])

    def gen(index: int) -> torch.Generator:
        return torch.Generator().manual_seed(index)

    def run_gdp(sample: dict) -> torch.Tensor:
        mask = None if sample["mask"] is None else torch.from_numpy(sample["mask"])[None]
        operator, y = task_operator(task, sample["lq"], scale, mask, sample["kernel"])
        return gdp.restore(y, operator, tuple(sample["gt"].shape[-2:]), gen(sample["index"]))[0]

    return {
        "DiffIR": (
            lambda x: restore(diffir, x["lq"], noise=start_noise(diffir, 1, x["index"])),
            diffir,
            1,
        ),
        "SR3": (lambda x: sr3.restore(x["lq"], gen(x["index"]), steps=s["sr3_steps"]), sr3, s["sr3_steps"]),
        "cDDPM (DDIM)": (
            lambda x: cddpm.restore(x["lq"], gen(x["index"]), sampler="ddim", steps=s["ddim_steps"]),
            cddpm,
            s["ddim_steps"],
        ),
        "GDP-x0": (run_gdp, gdp, gdp.sampler()[0].steps),
    }


# --- costs ------------------------------------------------------------------------------------------------
def diffir_macs(model: Any, task: str, scale: int, size: int) -> int:
    return summarize(model, example_inputs(model, task, scale, size))["macs"]


def guidance_macs(task: str, scale: int, size: int) -> int:
    """D and Dᵀ of one GDP step (the guidance gradient) at ``size``² output, with the FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, size, size, requires_grad=True)
    operator = {
        "sr": BicubicDown(scale),
        "deblur": Blur(torch.full((31, 31), 1 / 961)),
        "inpainting": Mask(torch.zeros(1, 1, size, size)),
    }[task]
    counter = FlopCounterMode(display=False)
    with counter:
        loss = (operator(x) ** 2).mean()
        loss.backward()
    return counter.get_total_flops() // 2


def cost_rows(
    run: dict[str, tuple[Callable, Any, int]], task: str, scale: int, size: int
) -> dict[str, dict[str, Any]]:
    """Parameters, NFE and MACs per image at ``size``² output of every trained method."""
    rows = {}
    for name, (_, model, nfe) in run.items():
        if isinstance(model, GDP):
            per_nfe = unet_macs_of(model.prior, size) + guidance_macs(task, scale, size)
            params = sum(p.numel() for p in model.prior.parameters())
        elif isinstance(model, PixelDiffusion):
            per_nfe, params = unet_macs_of(model, size), sum(p.numel() for p in model.parameters())
        else:
            per_nfe, params = (
                diffir_macs(model, task, scale, size),
                sum(p.numel() for p in model.parameters()),
            )
        rows[name] = {"params": params, "nfe": nfe, "macs_per_nfe": per_nfe, "macs": per_nfe * nfe}
    return rows


def unet_macs_of(model: PixelDiffusion, size: int) -> int:
    with torch.device("meta"):
        net = UNet(**model.unet_args)
        return summarize(net, (torch.zeros(1, net.in_channels, size, size), torch.zeros(1)))["macs"]


def published_rows(task: str, scale: int, size: int) -> dict[str, dict[str, Any]]:
    """The published configurations, from FLOP counts alone (no training, no weights)."""
    paper = build_model(task, 2, scale, **model_preset(task, "paper")).eval()
    rows = {
        "DiffIR (paper model)": {
            "params": sum(p.numel() for p in paper.parameters()),
            "nfe": 1,
            "macs_per_nfe": diffir_macs(paper, task, scale, size),
        }
    }
    with torch.device("meta"):
        sr3 = UNet(**unet_preset("sr3_paper_64_256"))
        adm = ADMUNet()
        sr3_macs = summarize(sr3, (torch.zeros(1, 6, size, size), torch.zeros(1)))["macs"]
        adm_macs = summarize(adm, (torch.zeros(1, 3, size, size), torch.zeros(1)))["macs"]
    sr3_params = sum(p.numel() for p in sr3.parameters())
    rows["SR3 64->256 (565M, JSR3 blocks), 100 steps"] = {
        "params": sr3_params,
        "nfe": 100,
        "macs_per_nfe": sr3_macs,
    }
    rows["SR3 64->256, JSR3 2000 steps"] = {"params": sr3_params, "nfe": 2000, "macs_per_nfe": sr3_macs}
    rows["GDP + ImageNet ADM-256, 1000 steps"] = {
        "params": sum(p.numel() for p in adm.parameters()),
        "nfe": 1000,
        "macs_per_nfe": adm_macs,
    }
    for row in rows.values():
        row["macs"] = row["macs_per_nfe"] * row["nfe"]
    return rows


# --- quality ----------------------------------------------------------------------------------------------
def metric_suite(task: str, scale: int) -> MetricSuite:
    """The task's PSNR/SSIM convention, plus LPIPS when its weights are installed."""
    cfg = compose_config([f"task={task}", f"scale={scale}"])
    args = dict(crop_border=int(cfg.metrics.crop_border), test_y_channel=bool(cfg.metrics.test_y_channel))
    try:
        return MetricSuite(["psnr", "ssim", "lpips"], **args)
    except MissingWeightsError as err:
        if not _warned:
            print(f"LPIPS skipped: {str(err).splitlines()[0]}")
            _warned.append(True)
        return MetricSuite(["psnr", "ssim"], **args)


_warned: list[bool] = []  # the missing-LPIPS message is printed once


@torch.no_grad()
def evaluate(run: dict, samples: list[dict], task: str, scale: int) -> tuple[dict, dict]:
    """Quality and seconds per image of every method; returns (table, outputs of the first sample)."""
    table, first = {}, {}
    for name, (restore_fn, _, _) in run.items():
        suite, seconds = metric_suite(task, scale), 0.0
        for index, sample in enumerate(samples):
            sample["index"] = index
            start = time.perf_counter()
            out = restore_fn(sample).clamp(0, 1)
            seconds += time.perf_counter() - start
            if sample["mask"] is not None:  # LaMa's `inpainted`: the known pixels are the input's
                mask = torch.from_numpy(sample["mask"])[None]
                out = out * mask + sample["gt"] * (1 - mask)
            suite.update(out, sample["gt"], names=[sample["name"]])
            if index == 0:
                first[name] = out
        table[name] = {**suite.compute(), "seconds": seconds / len(samples)}
        print(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in table[name].items()))
    return table, first


# --- report -----------------------------------------------------------------------------------------------
def build_table(measured: dict, costs: dict, published: dict, budget: str) -> list[dict[str, Any]]:
    """One row per method (measured, then published), each cost also as a ratio to DiffIR."""
    base, paper = costs["DiffIR"], published["DiffIR (paper model)"]
    rows = []
    for name, cost in costs.items():
        quality = measured[name]
        rows.append(
            {
                "method": name,
                "kind": f"trained here ({budget})",
                **cost,
                "seconds_per_image": quality["seconds"],
                **{k: v for k, v in quality.items() if k != "seconds"},
                "params_vs_diffir": cost["params"] / base["params"],
                "macs_vs_diffir": cost["macs"] / base["macs"],
                "macs_vs_diffir_paper": cost["macs"] / paper["macs"],
                "seconds_vs_diffir": quality["seconds"] / measured["DiffIR"]["seconds"],
            }
        )
    for name, cost in published.items():
        rows.append(
            {
                "method": name,
                "kind": "published configuration (FLOP count only)",
                **cost,
                "params_vs_diffir": cost["params"] / paper["params"],
                "macs_vs_diffir_paper": cost["macs"] / paper["macs"],
                "macs_vs_diffir": cost["macs"] / base["macs"],
            }
        )
    return rows


def human(value: float) -> str:
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g}"


COLUMNS = [
    ("method", "method", str),
    ("params", "params", lambda v: f"{v:,}"),
    ("nfe", "NFE", str),
    ("macs", "MACs/image", human),
    ("macs_vs_diffir", "÷ DiffIR (here)", lambda v: f"{v:,.3g}×"),
    ("macs_vs_diffir_paper", "÷ DiffIR paper", lambda v: f"{v:,.3g}×"),
    ("seconds_per_image", "s/image", lambda v: f"{v:.3g}"),
    ("seconds_vs_diffir", "s ÷ DiffIR", lambda v: f"{v:,.3g}×"),
    ("psnr", "PSNR", lambda v: f"{v:.2f}"),
    ("ssim", "SSIM", lambda v: f"{v:.4f}"),
    ("lpips", "LPIPS", lambda v: f"{v:.4f}"),
]


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    columns = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = [header, "", "| " + " | ".join(c[1] for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [fmt(row[key]) if key in row else "–" for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_quality_vs_macs(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """A scatter of ``metric`` against MACs per image on a log axis, one labelled point per trained method,
    published configurations as ticks on the MAC axis (drawn with PIL: no plotting dependency)."""
    width, height, left, right, top, bottom = 900, 520, 80, 40, 40, 110
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    measured = [r for r in rows if metric in r]
    macs = [r["macs"] for r in rows]
    lo, hi = math.floor(math.log10(min(macs))), math.ceil(math.log10(max(macs)))
    values = [r[metric] for r in measured]
    vlo, vhi = min(values), max(values)
    pad = max((vhi - vlo) * 0.15, 0.05)
    vlo, vhi = vlo - pad, vhi + pad

    def x_of(m: float) -> float:
        return left + (math.log10(m) - lo) / max(hi - lo, 1) * (width - left - right)

    def y_of(v: float) -> float:
        return top + (vhi - v) / (vhi - vlo) * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for exponent in range(lo, hi + 1):
        x = x_of(10**exponent)
        draw.line([x, height - bottom, x, height - bottom + 5], fill="black")
        draw.text((x - 12, height - bottom + 8), f"1e{exponent}", fill="black", font=font)
    for k in range(5):
        v = vlo + (vhi - vlo) * k / 4
        draw.text((8, y_of(v) - 7), f"{v:.3g}", fill="black", font=font)
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, row in enumerate(measured):
        x, y = x_of(row["macs"]), y_of(row[metric])
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colours[i % len(colours)])
        draw.text((x + 8, y - 8), row["method"], fill=colours[i % len(colours)], font=font)
    for i, row in enumerate(r for r in rows if metric not in r):
        x = x_of(row["macs"])
        draw.polygon(
            [(x, height - bottom - 8), (x - 5, height - bottom), (x + 5, height - bottom)], fill="grey"
        )
        draw.text(
            (left, height - bottom + 28 + 16 * i),
            f"^ {row['method']}: {human(row['macs'])}MAC",
            fill="grey",
            font=font,
        )
    draw.text((left, 10), f"{metric.upper()} vs MACs per image (log axis)", fill="black", font=font)
    image.save(path)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sr", choices=["sr", "deblur", "inpainting"])
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per method")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per method (instead of --budget)"
    )
    parser.add_argument("--crop", type=int, default=128, help="GT side of the held-out centre crops")
    parser.add_argument("--macs-size", type=int, default=256, help="output side at which MACs are stated")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "compare")
    parser.add_argument("--sr3-steps", type=int, default=None, help="SR3 reverse steps (default 100)")
    parser.add_argument("--ddim-steps", type=int, default=None, help="cDDPM DDIM steps (default 50)")
    parser.add_argument(
        "--gdp-steps",
        type=int,
        default=None,
        help="GDP steps (default: all 1000 ancestral; N: the fast DDIM variant)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny models, 2 steps, 32-px crops")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.crop = args.steps or 2, min(args.crop, 32)
    torch.set_num_threads(args.threads)
    scale = task_facts(args.task).output_scale(4)
    s = settings(args.tiny)
    for key in ("sr3_steps", "ddim_steps", "gdp_steps"):
        s[key] = getattr(args, key) or s[key]
    args.out.mkdir(parents=True, exist_ok=True)
    budget = f"{args.steps} steps each" if args.steps else f"{args.budget:.0f} s of training each"

    ckpts = train_all(args, s)
    run = runners(ckpts, args.task, scale, s)
    samples = held_out(args.task, scale, args.crop)
    measured, first = evaluate(run, samples, args.task, scale)
    rows = build_table(
        measured,
        cost_rows(run, args.task, scale, args.macs_size),
        published_rows(args.task, scale, args.macs_size),
        budget,
    )
    header = (
        f"Task {args.task}{f' ×{scale}' if scale > 1 else ''} on {len(samples)} held-out photo crops of "
        f"{args.crop}² (GT); training budget: {budget}, batch {s['batch']}, patch {s['patch']}, "
        f"{torch.get_num_threads()} CPU threads. MACs per image at {args.macs_size}² output."
    )
    text = markdown(rows, header)
    print("\n" + text)
    (args.out / "compare.md").write_text(text)
    (args.out / "compare.json").write_text(json.dumps({"setup": header, "rows": rows}, indent=2))
    with (args.out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    plot_quality_vs_macs(rows, "psnr", args.out / "quality_vs_macs.png")
    sample = samples[0]
    grid = comparison_grid(
        sample["lq"],
        list(first.values()),
        sample["gt"],
        width=max(128, args.crop),
        labels=["LQ", *first, "GT"],
    )
    save_image(grid, args.out / "grid.png")
    print(f"wrote {args.out}/compare.md|csv|json, quality_vs_macs.png, grid.png")
    return rows


if __name__ == "__main__":
    main()
