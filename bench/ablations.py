"""The DiffIR paper's ablations, measured at CPU scale on the bundled photos, with several seeds.

    python -m bench.ablations [--seeds 0 1 2] [--steps1 N] [--steps2 N] [--variants ...] [--out DIR]
    python -m bench.ablations --tiny      # a smoke run in seconds (the test)

SR ×4 with the ``demo`` experiment's settings (small model, batch 8, GT patch 64, its learning rates, its
step-decay schedule at the same fractions of the run, its EMA unless the run is too short for it). For
each seed, stage 1 trains once; every stage-2 variant starts from that stage 1 with the same seed and
budget: DiffIR as published (joint objective, T = 4, L1 prior loss), no diffusion (CPEN_S2 regresses the
prior), the conventional DM objective (noise prediction at a random step), noise inserted in the reverse
steps, the L2 and KL prior losses, and T = 1, 2, 8. Each is scored with ``diffir.runs.demo.compare`` on the
held-out photos (PSNR / SSIM on Y, 4-pixel border, LPIPS when its weights are cached; bicubic and the
stage-1 oracle as reference rows). The table (Markdown, CSV, JSON) gives mean ± std over seeds, the paired
difference to DiffIR (same seed, same stage 1) and the paper's number where one is known, with the
training budget beside it; ``ablations.png`` plots them. These are minutes-long CPU runs: differences
within the std are noise, and the paper's gaps (1M iterations per stage on DF2K) need not show here.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import save_image

from diffir.config import compose_config
from diffir.errors import RunSetupError
from diffir.evaluation.protocol import available_metrics
from diffir.evaluation.report import METRIC_FORMATS
from diffir.runs.demo import STAGE1, compare
from diffir.runs.train import train

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "DiffIR (joint, T=4, L1 prior)"
VARIANTS: dict[str, tuple[str, ...]] = {
    REFERENCE: (),
    "no diffusion": ("diffusion.enabled=false",),
    "conventional objective": ("diffusion.objective=conventional", "diffusion.parameterization=eps"),
    "reverse noise on": ("diffusion.reverse_noise=true",),
    "prior loss L2": ("stage2.prior_loss.kind=l2",),
    "prior loss KL": ("stage2.prior_loss.kind=kl",),
    "T=1": ("diffusion.timesteps=1",),
    "T=2": ("diffusion.timesteps=2",),
    "T=8": ("diffusion.timesteps=8",),
}
# The paper's numbers for these ablations (docs/method.md §6): only the diffusion gain is known; the
# ablation table itself was not retrieved, so the other rows say so rather than guess.
PAPER = {
    REFERENCE: "the paper's configuration",
    "no diffusion": "full model 0.5 FID better (author, GitHub issue #14)",
}
NOT_RETRIEVED = "ablated, number not retrieved"
BASELINES = {"bicubic": "bicubic (reference)", STAGE1: "stage 1 oracle, prior from GT (reference)"}
SMALL = {"model": "small", "batch": 8, "patch": 64, "steps1": 300, "steps2": 60, "seeds": [0, 1, 2]}
TINY = {"model": "tiny", "batch": 2, "patch": 32, "steps1": 2, "steps2": 2, "seeds": [0, 1], "crop": 32}


@functools.cache
def demo_schedule(stage: int) -> tuple[tuple[float, ...], float]:
    """The demo's lr milestones of ``stage`` as fractions of its ``max_steps``, and its EMA decay."""
    run = compose_config(["experiment=demo", f"stage={stage}"]).run
    return tuple(m / run.max_steps for m in run.scheduler.milestones), float(run.ema_decay)


def run_overrides(setting: dict[str, Any], stage: int, steps: int, seed: int, out: Path) -> list[str]:
    """One training run of the ablation: the demo experiment at this budget, no validation (the photos are
    scored afterwards), CSV logs, the demo's lr milestones at the same fractions of ``steps``, and its EMA
    decay lowered when the run is too short for it: the released EMA weights of a 60-step run at decay
    0.99 would still be 55 % the initial ones (a random CPEN_S2); at most 1 - 5/steps keeps that ≤ e⁻⁵."""
    section = f"stage{stage}"
    fractions, ema_decay = demo_schedule(stage)
    milestones = [max(1, round(f * steps)) for f in fractions]
    return [
        "experiment=demo",
        f"model={setting['model']}",
        f"stage={stage}",
        f"seed={seed}",
        f"paths.experiments_dir={out / 'runs'}",
        "logger=csv",
        "~callbacks.best",
        "++trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "data.num_workers=0",
        f"{section}.max_steps={steps}",
        f"{section}.val_every={steps}",
        f"{section}.batch_size={setting['batch']}",
        f"{section}.patch_size={setting['patch']}",
        f"{section}.scheduler.milestones=[{','.join(map(str, milestones))}]",
        f"{section}.ema_decay={max(0.0, min(ema_decay, 1 - 5 / steps)):.4g}",
    ]


@functools.cache
def reported_metrics() -> tuple[str, ...]:
    """The SR task's metrics (PSNR / SSIM), plus LPIPS when its weights are cached (else a warning, once)."""
    metrics = compose_config(["experiment=demo"]).metrics
    args = {
        "metrics": [*metrics.metrics, "lpips"],
        "crop_border": int(metrics.crop_border),
        "test_y_channel": bool(metrics.test_y_channel),
        "lpips_net": "alex",
    }
    return tuple(available_metrics(args, explicit=False)[0])


def eval_config(setting: dict[str, Any], seed: int) -> DictConfig:
    """The config ``compare`` scores with: the held-out photos (whole, or ``setting["crop"]`` centre crops),
    the task's PSNR / SSIM convention and :func:`reported_metrics`, the seed of the start noise."""
    crop = setting.get("crop") or "null"
    return compose_config(
        [
            "experiment=demo",
            "stage=2",
            f"seed={seed}",
            f"model={setting['model']}",
            f"data.val_center_crop={crop}",
            f"metrics.metrics=[{','.join(reported_metrics())}]",
        ]
    )


def summarise(per_seed: list[dict[str, dict[str, float]]], names: list[str]) -> list[dict[str, Any]]:
    """One row per variant (or reference row) in ``names``: mean and sample std over seeds of each metric,
    and for the variants the mean ± std of the per-seed difference to DiffIR (paired: same seed, same
    stage 1)."""
    rows = []
    for name in names:
        row: dict[str, Any] = {"variant": BASELINES.get(name, name), "seeds": len(per_seed)}
        row["overrides"] = " ".join(VARIANTS.get(name, ()))
        for metric in per_seed[0][name]:
            values = [run[name][metric] for run in per_seed]
            row[f"{metric}_mean"] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            if name in VARIANTS and REFERENCE in per_seed[0] and name != REFERENCE:
                deltas = [run[name][metric] - run[REFERENCE][metric] for run in per_seed]
                row[f"{metric}_delta_mean"] = statistics.fmean(deltas)
                row[f"{metric}_delta_std"] = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
        row["paper"] = PAPER.get(name, NOT_RETRIEVED if name in VARIANTS else "")
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], metrics: list[str], header: str) -> str:
    """The table: metric mean ± std, ΔPSNR to DiffIR (paired by seed), the paper's number."""

    def pm(row: dict[str, Any], key: str, fmt: str) -> str:
        if f"{key}_mean" not in row:
            return ""
        return f"{row[f'{key}_mean']:{fmt}} ± {row[f'{key}_std']:{fmt.lstrip('+')}}"

    columns = ["variant", *(m.upper() for m in metrics), "ΔPSNR vs DiffIR (paired)", "paper (full scale)"]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row["variant"], *(pm(row, m, METRIC_FORMATS[m]) for m in metrics)]
        cells += [pm(row, "psnr_delta", "+.2f"), row["paper"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def axis_range(means: list[float], stds: list[float]) -> tuple[float, float]:
    """A plot axis covering every mean ± std except far outliers (a broken variant, bicubic), which would
    squeeze the rest into a few pixels: those are drawn at the edge with their value."""
    centre = statistics.median(means)
    spread = max(8 * statistics.median(abs(m - centre) for m in means), 2 * max(stds), 1e-3)
    inside = [(m, s) for m, s in zip(means, stds, strict=True) if abs(m - centre) <= spread]
    lo, hi = min(m - s for m, s in inside), max(m + s for m, s in inside)
    pad = max((hi - lo) * 0.08, 1e-3)
    return lo - pad, hi + pad


def plot(rows: list[dict[str, Any]], keys: list[str], path: Path, title: list[str]) -> None:
    """One panel per key (``psnr``, ``ssim``, ``psnr_delta``: the paired difference to DiffIR, which the
    seed-to-seed spread of stage 1 does not blur): each row's mean as a dot with ±std whiskers, DiffIR (or
    zero) as a dashed line, off-scale means as a triangle at the edge with their value. Drawn with PIL:
    matplotlib is not a dependency."""
    label_w, panel_w, line_h, top, gap = 300, 330, 24, 26 + 16 * len(title), 16
    width = label_w + len(keys) * (panel_w + gap)
    height = top + 30 + len(rows) * line_h + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    for i, line in enumerate(title):
        draw.text((10, 8 + 16 * i), line, fill="black", font=font)
    y0 = top + 30
    for i, row in enumerate(rows):
        draw.text((10, y0 + i * line_h + 5), row["variant"][:44], fill="black", font=font)
    for k, key in enumerate(keys):
        x0 = label_w + k * (panel_w + gap)
        shown = [(i, r[f"{key}_mean"], r[f"{key}_std"]) for i, r in enumerate(rows) if f"{key}_mean" in r]
        lo, hi = axis_range([m for _, m, _ in shown], [s for _, _, s in shown])

        def x_of(v: float, x0: int = x0, lo: float = lo, hi: float = hi) -> float:
            return x0 + (min(max(v, lo), hi) - lo) / (hi - lo) * panel_w

        metric, paired = key.removesuffix("_delta"), key.endswith("_delta")
        better = "lower" if metric == "lpips" else "higher"
        heading = f"{metric.upper()} ({better} is better), " + (
            "minus DiffIR's, paired by seed" if paired else "mean ± std over seeds"
        )
        draw.text((x0, top + 8), heading, fill="black", font=font)
        draw.rectangle([x0, y0 - 4, x0 + panel_w, y0 + len(rows) * line_h], outline="grey")
        ref = next((r for r in rows if r["variant"] == REFERENCE), None)
        if ref is not None and lo <= (at := 0.0 if paired else ref[f"{metric}_mean"]) <= hi:
            for y in range(y0 - 4, y0 + len(rows) * line_h, 8):
                draw.line([x_of(at), y, x_of(at), y + 4], fill="#d62728")
        fmt = METRIC_FORMATS[metric]
        for i, mean, std in shown:
            y = y0 + i * line_h + line_h / 2
            colour = "grey" if rows[i]["variant"] in BASELINES.values() else "#1f77b4"
            if not lo <= mean <= hi:
                x, side = (x0 + 2, 1) if mean < lo else (x0 + panel_w - 2, -1)
                draw.polygon([(x, y), (x + 9 * side, y - 5), (x + 9 * side, y + 5)], fill=colour)
                text = f"{mean:{fmt}}"
                tx = x + 12 if side == 1 else x - 12 - draw.textlength(text, font=font)
                draw.text((tx, y - 7), text, fill=colour, font=font)
                continue
            draw.line([x_of(mean - std), y, x_of(mean + std), y], fill=colour, width=2)
            for edge in (mean - std, mean + std):
                draw.line([x_of(edge), y - 4, x_of(edge), y + 4], fill=colour, width=2)
            draw.ellipse([x_of(mean) - 4, y - 4, x_of(mean) + 4, y + 4], fill=colour)
        bottom = y0 + len(rows) * line_h + 4
        draw.text((x0, bottom), f"{lo:{fmt}}", fill="grey", font=font)
        hi_text = f"{hi:{fmt}}"
        draw.text(
            (x0 + panel_w - draw.textlength(hi_text, font=font), bottom), hi_text, fill="grey", font=font
        )
    image.save(path)


def train_or_exit(overrides: list[str]) -> Path:
    """Train one run; its last checkpoint. A setup problem stops the benchmark with its one-line message."""
    try:
        return Path(train(compose_config(overrides))["last_checkpoint"])
    except RunSetupError as err:
        sys.exit(f"error: {err}")


def describe(setting: dict[str, Any], seeds: list[int], threads: int) -> str:
    """The training budget, as printed beside the numbers."""
    return (
        f"stage 1: {setting['steps1']} steps, stage 2: {setting['steps2']} steps per variant "
        "(one stage 1 per seed, shared by its variants); "
        f"batch {setting['batch']}, GT patch {setting['patch']}, "
        f"model preset {setting['model']!r}, seeds {seeds}, {threads} CPU thread{'s' if threads > 1 else ''}"
    )


class Progress:
    """``[ 40%] seed 1: stage 2, T=2, 60 steps (6.1 min, ~9.2 min left)`` lines; the estimate assumes
    every remaining step takes as long as the average one so far."""

    def __init__(self, total_steps: int) -> None:
        self.total, self.done, self.start = total_steps, 0, time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60

    def step(self, what: str, steps: int) -> None:
        elapsed = self.minutes()
        left = f", ~{elapsed / self.done * (self.total - self.done):.1f} min left" if self.done else ""
        print(f"[{self.done / self.total:4.0%}] {what}, {steps} steps ({elapsed:.1f} min{left})", flush=True)
        self.done += steps


def run_seed(
    seed: int, setting: dict[str, Any], variants: list[str], out: Path, progress: Progress
) -> tuple[dict[str, dict[str, float]], torch.Tensor, DictConfig]:
    """Stage 1 once, every variant's stage 2 from it, then all scored on the held-out photos: the table
    (bicubic, stage-1 oracle, variants), the comparison grid and the scoring config."""
    progress.step(f"seed {seed}: stage 1", setting["steps1"])
    stage1 = train_or_exit([*run_overrides(setting, 1, setting["steps1"], seed, out), f"name=seed{seed}"])
    checkpoints = {STAGE1: stage1}
    for index, variant in enumerate(variants):
        progress.step(f"seed {seed}: stage 2, {variant}", setting["steps2"])
        overrides = run_overrides(setting, 2, setting["steps2"], seed, out)
        checkpoints[variant] = train_or_exit(
            [*overrides, f"name=seed{seed}-v{index}", f"stage1_ckpt={stage1}", *VARIANTS[variant]]
        )
    cfg = eval_config(setting, seed)
    torch.manual_seed(seed)  # the reverse-noise variant draws its noise from the global generator
    table, grid = compare(cfg, checkpoints)
    print(f"seed {seed} scored: " + ", ".join(f"{k} {v['psnr']:.2f} dB" for k, v in table.items()))
    return table, grid, cfg


def write_outputs(
    rows: list[dict[str, Any]],
    references: list[dict[str, Any]],
    metrics: list[str],
    text: str,
    title: list[str],
    out: Path,
) -> None:
    """ablations.md (the printed table), .csv (a row per variant, then the reference rows), .json (with the
    budget) and .png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablations.md").write_text(text)
    (out / "ablations.json").write_text(
        json.dumps({"budget": title[1], "metrics": metrics, "rows": rows, "references": references}, indent=2)
    )
    with (out / "ablations.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows([*rows, *references])
    paired = ["psnr_delta"] if any("psnr_delta_mean" in r for r in rows) else []
    plot([*rows, *references], [*metrics, *paired], out / "ablations.png", title)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", help=f"default {SMALL['seeds']} ({TINY['seeds']} with --tiny)"
    )
    parser.add_argument(
        "--steps1", type=int, help=f"stage-1 steps, once per seed (default {SMALL['steps1']})"
    )
    parser.add_argument(
        "--steps2", type=int, help=f"stage-2 steps of every variant (default {SMALL['steps2']})"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "ablations")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (with other jobs on the 2 cores, 2 threads stepped 5x slower than 1)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="smoke run: tiny model, 2 steps, 2 seeds, 32-px crops"
    )
    args = parser.parse_args(argv)
    setting = dict(TINY if args.tiny else SMALL)
    for key in ("seeds", "steps1", "steps2"):
        setting[key] = setting[key] if getattr(args, key) is None else getattr(args, key)
    if min(setting["steps1"], setting["steps2"]) < 1:
        parser.error(
            f"--steps1 and --steps2 must be positive, got {setting['steps1']} and {setting['steps2']}"
        )
    seeds, variants = list(dict.fromkeys(setting["seeds"])), list(dict.fromkeys(args.variants))
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # our progress lines say what runs
    shutil.rmtree(args.out / "runs", ignore_errors=True)  # a stale last.ckpt would pass for a new one
    budget = describe(setting, seeds, args.threads)
    print(f"DiffIR ablations, SR ×4 on the bundled photos. Training budget: {budget}", flush=True)

    progress = Progress(len(seeds) * (setting["steps1"] + len(variants) * setting["steps2"]))
    per_seed, grids = [], []
    for seed in seeds:
        table, grid, cfg = run_seed(seed, setting, variants, args.out, progress)
        per_seed.append(table)
        grids.append(grid)
    metrics = list(cfg.metrics.metrics)
    rows, references = summarise(per_seed, variants), summarise(per_seed, list(BASELINES))
    crop = cfg.data.val_center_crop
    header = (
        f"DiffIR ablations at CPU scale: SR ×4, mean ± std (sample std) over {len(seeds)} seeds on the "
        f"held-out bundled photos ({f'centre crops of {crop} px' if crop else 'whole images'}; PSNR/SSIM on "
        f"Y, {cfg.metrics.crop_border}-pixel border).\n\n"
        f"**Training budget: {budget}; {progress.minutes():.1f} min in all.** The paper trains each stage 1M "
        "iterations, batch 64, GT patch 256 on DF2K with the full model: differences within the std here "
        "are noise, and the paper's gaps need not show at this scale. Paper column: its numbers at full "
        "scale where known (docs/method.md §6)."
    )
    text = markdown([*rows, *references], metrics, header)
    print("\n" + text)
    write_outputs(
        rows, references, metrics, text, [f"DiffIR ablations, SR x4, {len(seeds)} seeds", budget], args.out
    )
    save_image(grids[0], args.out / f"grid_seed{seeds[0]}.png")
    print(f"wrote {args.out}/ablations.md|csv|json, ablations.png and grid_seed{seeds[0]}.png")
    return rows


if __name__ == "__main__":
    main()
