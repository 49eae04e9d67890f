"""DiffIR against the pixel-space diffusion baselines (SR3, the image-conditioned DDPM, GDP) side by side.

    python -m bench.compare_methods [--task sr] [--budget 600] [--crop 128] [--out experiments/compare]
    python -m bench.compare_methods --tiny          # a smoke run in about a minute (tests)

Every method trains on the bundled photos (``data=samples``) with the project's training loop for the same
CPU budget (``--budget`` seconds of wall clock each, or ``--steps`` steps each; DiffIR splits its budget
60/40 between its two stages, GDP spends it on its unconditional prior), then is scored by the project's
evaluation, the code behind ``eval.py`` (:func:`diffir.evaluation.evaluate`: one run per method, whose
``python eval.py ...`` command is printed and saved), on centre crops of the held-out photos: the same
degradation, seed, metric protocol of the task (PSNR / SSIM, LPIPS when its weights are installed) and
timing as ``eval.py``. One table (Markdown, CSV, JSON) then holds parameters, network evaluations (NFE) per
image, MACs per image at a stated output size (``--macs-size``, default 256², i.e. LQ 64² for SR ×4; torch's
FLOP counter, as ``diffir.summary``), the measured seconds per image on this machine, the quality, and each
cost as a ratio to DiffIR. Rows for the published configurations (the DiffIR paper model, SR3 at paper size,
GDP with the ImageNet ADM-256 prior) come from FLOP counts alone. It also draws quality against MACs per
image on a log axis and a grid of every method's output on the same held-out crop.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import save_image

from diffir.baselines import GDP, UNet, task_operator, unet_preset
from diffir.baselines.adm import ADMUNet
from diffir.checkpoint import atomic_save, load_record, read_model_record
from diffir.config import compose_config
from diffir.data import SamplesDataset
from diffir.evaluation import comparison_grid, markdown_table
from diffir.evaluation.protocol import task_config
from diffir.evaluation.samples import build_datasets
from diffir.io import read_image, save_png
from diffir.model_config import CONF_DIR, build_from_config, model_config, model_preset
from diffir.runs.evaluate import evaluate
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


def held_out(task: str, scale: int, crop: int, folder: Path) -> Path:
    """Centre crops of the held-out photos, written as the clean images that ``eval.py data=folder`` degrades
    (with the task's degradation, seeded per image, as for any folder)."""
    degradation = instantiate(task_config(task, scale).degradation, _convert_="object")
    photos = SamplesDataset("val", degradation, scale=scale, center_crop=crop)
    for index in range(len(photos)):
        item = photos[index]
        save_png(item["gt"], folder / f"{item['name']}.png")
    return folder


@dataclass
class Trained:
    """A trained method: the network its costs are counted on, its NFE and the ``eval.py`` overrides that
    score it."""

    config: dict[str, Any]  # the model record's config (GDP: its prior's)
    nfe: int
    guided: bool  # GDP: each step also applies the operator and its transpose
    eval_overrides: list[str]


def slug(name: str) -> str:
    """A method name as a file or folder name: ``cDDPM (DDIM)`` -> ``cDDPM_DDIM``."""
    return re.sub(r"\W+", "_", name).strip("_")


def trained_methods(
    ckpts: dict[str, Path], task: str, scale: int, s: dict, folder: Path
) -> dict[str, Trained]:
    """Every trained method with the sampler settings of ``s``, as ``eval.py`` runs it: each run's model record
    (its EMA weights, what eval.py reads from the checkpoint) is written to ``folder`` as a model file, so the
    evaluations do not unpickle the training state again."""
    files, records = {}, {}
    folder.mkdir(parents=True, exist_ok=True)
    for label, ckpt in ckpts.items():
        records[label] = read_model_record(ckpt)
        files[label] = folder / f"{slug(label)}.pt"
        atomic_save(records[label], files[label])
    sr3, cddpm, prior = (load_record(records[label], ckpts[label]) for label in ("SR3", "cDDPM", "GDP prior"))
    gdp = GDP(prior, task=task, steps=s["gdp_steps"])
    gdp_steps = [f"steps={s['gdp_steps']}"] if s["gdp_steps"] else []
    return {
        "DiffIR": Trained(records["DiffIR"]["config"], 1, False, [f"ckpt={files['DiffIR']}"]),
        "SR3": Trained(
            records["SR3"]["config"], sr3.sampler(steps=s["sr3_steps"])[0].steps, False,
            [f"ckpt={files['SR3']}", f"steps={s['sr3_steps']}"],
        ),
        "cDDPM (DDIM)": Trained(
            records["cDDPM"]["config"], cddpm.sampler(sampler="ddim", steps=s["ddim_steps"])[0].steps, False,
            [f"ckpt={files['cDDPM']}", "sampler=ddim", f"steps={s['ddim_steps']}"],
        ),
        "GDP-x0": Trained(
            records["GDP prior"]["config"], gdp.sampler()[0].steps, True,
            ["method=gdp", f"prior_ckpt={files['GDP prior']}", f"task={task}", f"scale={scale}", *gdp_steps],
        ),
    }  # fmt: skip


# --- costs ------------------------------------------------------------------------------------------------
def network_cost(config: dict[str, Any], task: str, scale: int, size: int) -> tuple[int, int]:
    """Parameters and MACs of one call of the network ``config`` describes at ``size``² output, counted on the
    meta device (no weights, no arithmetic): DiffIR's whole model, or a baseline's U-Net on cat[condition, x_t]
    and the noise level."""
    with torch.device("meta"):
        if "method" in config:  # a pixel-diffusion baseline's record
            net = UNet(**config["unet"])
            inputs = (torch.zeros(1, net.in_channels, size, size), torch.zeros(1))
        else:
            net = build_from_config(config).eval()
            inputs = example_inputs(net, task, scale, size)
        return sum(p.numel() for p in net.parameters()), summarize(net, inputs)["macs"]


def guidance_macs(task: str, scale: int, size: int) -> int:
    """D and Dᵀ of one GDP step (the guidance gradient) at ``size``² output, with the FLOP counter: the task's
    operator of :func:`task_operator` (deblurring: a 31×31 kernel, as the synthetic blur's)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, size, size, requires_grad=True)
    lq = torch.rand(1, task_facts(task).input_channels, size // scale, size // scale)
    mask, kernel = torch.zeros(1, 1, size, size), torch.full((31, 31), 1 / 961)
    operator, y = task_operator(task, lq, scale, mask, kernel)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = ((operator(x) - y) ** 2).mean()
        loss.backward()
    return counter.get_total_flops() // 2


def cost_rows(trained: dict[str, Trained], task: str, scale: int, size: int) -> dict[str, dict[str, Any]]:
    """Parameters, NFE and MACs per image at ``size``² output of every trained method."""
    rows = {}
    for name, method in trained.items():
        params, per_nfe = network_cost(method.config, task, scale, size)
        if method.guided:
            per_nfe += guidance_macs(task, scale, size)
        rows[name] = {
            "params": params,
            "nfe": method.nfe,
            "macs_per_nfe": per_nfe,
            "macs": per_nfe * method.nfe,
        }
    return rows


def published_rows(task: str, scale: int, size: int) -> dict[str, dict[str, Any]]:
    """The published configurations, from FLOP counts alone (no training, no weights)."""
    paper_params, paper_macs = network_cost(
        model_config(task, 2, scale, model_preset(task, "paper")), task, scale, size
    )
    rows = {"DiffIR (paper model)": {"params": paper_params, "nfe": 1, "macs_per_nfe": paper_macs}}
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


# --- quality: eval.py's evaluation ------------------------------------------------------------------------
def eval_config(overrides: list[str]) -> DictConfig:
    """The ``eval.py`` config of these overrides (conf/eval/eval.yaml), composed as ``eval.py`` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR / "eval"), version_base="1.3"):
        return compose("eval", overrides=overrides)


def evaluate_all(trained: dict[str, Trained], crops: Path, out: Path) -> tuple[dict[str, Any], list[str]]:
    """Each method scored by one ``eval.py`` run (:func:`diffir.evaluation.evaluate`) on the held-out crops,
    on the CPU; returns ``name -> its eval.py results`` (with the command) and the metrics reported."""
    measured, metrics = {}, []
    for name, method in trained.items():
        overrides = [*method.eval_overrides, "data=folder", f"data.root={crops}", "device=cpu", "grids=0"]
        output_dir = out / "eval" / slug(name)
        command = "python eval.py " + " ".join([*overrides, f"output_dir={output_dir}"])
        print(f"{name}: {command}")
        results = evaluate(eval_config([*overrides, f"output_dir={output_dir}"]))
        (row,) = results["datasets"]["folder"].values()
        measured[name] = {**row, "eval": command, "output_dir": output_dir}
        metrics = results["metrics"]
    return measured, metrics


def grid_of_first_crop(
    measured: dict[str, Any], cfg: DictConfig, task: str, scale: int, width: int
) -> torch.Tensor:
    """LQ | every method | GT on the first held-out crop: the input as ``eval.py`` built it, the outputs as it
    saved them."""
    (test_set,) = build_datasets(cfg, task, scale, task_config(task, scale), torch.device("cpu")).values()
    sample = test_set.loaders[0]()
    outputs = [
        read_image(next((row["output_dir"] / "images" / "folder").glob(f"*/{sample.name}.png")))[0]
        for row in measured.values()
    ]
    return comparison_grid(sample.lq, outputs, sample.gt, width=width, labels=["LQ", *measured, "GT"])


# --- report -----------------------------------------------------------------------------------------------
def build_table(
    measured: dict, metrics: list[str], costs: dict, published: dict, budget: str
) -> list[dict[str, Any]]:
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
                "seconds_per_image": quality["seconds_per_image"],
                **{m: quality["mean"][m] for m in metrics},
                "params_vs_diffir": cost["params"] / base["params"],
                "macs_vs_diffir": cost["macs"] / base["macs"],
                "macs_vs_diffir_paper": cost["macs"] / paper["macs"],
                "seconds_vs_diffir": quality["seconds_per_image"] / measured["DiffIR"]["seconds_per_image"],
                "eval": quality["eval"],  # the eval.py command that scored it, and where it wrote its results
                "eval_output_dir": str(quality["output_dir"]),
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


COST_COLUMNS = [  # (key, column, format); the metric columns follow, formatted as eval.py's table
    ("params", "params", lambda v: f"{v:,}"),
    ("nfe", "NFE", str),
    ("macs", "MACs/image", human),
    ("macs_vs_diffir", "÷ DiffIR (here)", lambda v: f"{v:,.3g}×"),
    ("macs_vs_diffir_paper", "÷ DiffIR paper", lambda v: f"{v:,.3g}×"),
    ("seconds_per_image", "s/image", lambda v: f"{v:.3g}"),
    ("seconds_vs_diffir", "s ÷ DiffIR", lambda v: f"{v:,.3g}×"),
]


def markdown(rows: list[dict[str, Any]], metrics: list[str], header: str) -> str:
    """``header`` and the table, by eval.py's markdown writer (:func:`diffir.evaluation.markdown_table`)."""
    columns = ["method", *(title for _, title, _ in COST_COLUMNS), *metrics]
    cells = [
        [
            row["method"],
            *(fmt(row[key]) if key in row else None for key, _, fmt in COST_COLUMNS),
            *(row.get(metric) for metric in metrics),
        ]
        for row in rows
    ]
    return f"{header}\n\n{markdown_table(columns, cells)}\n"


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
    trained = trained_methods(ckpts, args.task, scale, s, args.out / "models")
    crops = held_out(args.task, scale, args.crop, args.out / "held_out")
    measured, metrics = evaluate_all(trained, crops, args.out)
    rows = build_table(
        measured,
        metrics,
        cost_rows(trained, args.task, scale, args.macs_size),
        published_rows(args.task, scale, args.macs_size),
        budget,
    )
    header = (
        f"Task {args.task}{f' ×{scale}' if scale > 1 else ''} on {len(list(crops.iterdir()))} held-out photo "
        f"crops of {args.crop}² (GT), scored by eval.py's evaluation (its commands: compare.json); training "
        f"budget: {budget}, batch {s['batch']}, patch {s['patch']}, {torch.get_num_threads()} CPU threads. "
        f"MACs per image at {args.macs_size}² output."
    )
    text = markdown(rows, metrics, header)
    print("\n" + text)
    (args.out / "compare.md").write_text(text)
    (args.out / "compare.json").write_text(json.dumps({"setup": header, "rows": rows}, indent=2))
    with (args.out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    plot_quality_vs_macs(rows, "psnr" if "psnr" in metrics else metrics[0], args.out / "quality_vs_macs.png")
    folder = eval_config(["data=folder", f"data.root={crops}"])
    save_image(
        grid_of_first_crop(measured, folder, args.task, scale, max(128, args.crop)), args.out / "grid.png"
    )
    print(f"wrote {args.out}/compare.md|csv|json, quality_vs_macs.png, grid.png")
    return rows


if __name__ == "__main__":
    main()
