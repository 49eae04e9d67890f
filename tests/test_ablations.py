"""``python -m bench.ablations``: a row per ablation variant, mean ± std over seeds, the budget stated."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from bench import ablations
from bench.ablations import REFERENCE, TINY, VARIANTS, markdown, run_overrides, summarise
from diffir.config import compose_config
from diffir.model_config import build_from_config, model_config
from diffir.runs.demo import STAGE1

# Trained end to end (2 seeds each): the reference, the one without diffusion and the longest chain; the other
# variants are composed and their stage-2 network built, which is where a stale override would fail.
TRAINED = [REFERENCE, "no diffusion", "T=8"]


def test_summary_is_mean_sample_std_and_paired_difference():
    per_seed = [
        {REFERENCE: {"psnr": 20.0}, "T=1": {"psnr": 21.0}, "bicubic": {"psnr": 19.0}, STAGE1: {"psnr": 25.0}},
        {REFERENCE: {"psnr": 22.0}, "T=1": {"psnr": 22.0}, "bicubic": {"psnr": 19.0}, STAGE1: {"psnr": 27.0}},
    ]
    rows = {r["variant"]: r for r in summarise(per_seed, [REFERENCE, "T=1", "bicubic"])}
    assert rows["T=1"]["psnr_mean"] == 21.5
    # sample std (n - 1) of two values in float64: a few roundings (ulp(1) = 2.2e-16)
    assert rows["T=1"]["psnr_std"] == pytest.approx(math.sqrt(0.5), rel=4 * math.ulp(1.0))
    assert rows["T=1"]["psnr_delta_mean"] == 0.5  # (+1, 0): paired by seed
    assert rows["T=1"]["psnr_delta_std"] == pytest.approx(math.sqrt(0.5), rel=4 * math.ulp(1.0))
    assert "psnr_delta_mean" not in rows[REFERENCE]
    assert rows["T=1"]["overrides"] == "diffusion.timesteps=1"
    assert rows[ablations.BASELINES["bicubic"]]["psnr_std"] == 0.0
    text = markdown(list(rows.values()), ["psnr"], "header")
    assert "| T=1 | 21.50 ± 0.71 | +0.50 ± 0.71 | ablated, number not retrieved |" in text


@pytest.mark.slow
def test_tiny_ablation_end_to_end(tmp_path, capsys):
    for variant in [v for v in VARIANTS if v not in TRAINED]:
        cfg = compose_config([*run_overrides(TINY, 2, 2, 0, tmp_path), *VARIANTS[variant]])
        for override in VARIANTS[variant]:
            key, value = override.split("=")
            assert OmegaConf.select(cfg, key) == yaml.safe_load(value), (variant, override)
        net = build_from_config(model_config("sr", 2, cfg.scale, cfg.model, cfg.diffusion))
        built = (net.diffusion.timesteps, net.diffusion.parameterization, net.diffusion.reverse_noise)
        assert built == tuple(cfg.diffusion[k] for k in ("timesteps", "parameterization", "reverse_noise")), (
            variant
        )
    rows = ablations.main(["--tiny", "--threads", "1", "--out", str(tmp_path), "--variants", *TRAINED])
    out = capsys.readouterr().out
    references = json.loads((tmp_path / "ablations.json").read_text())["references"]
    assert [r["variant"] for r in rows] == TRAINED
    assert [r["variant"] for r in references] == list(ablations.BASELINES.values())
    for row in [*rows, *references]:
        assert row["seeds"] == 2
        for metric in ("psnr", "ssim"):
            assert math.isfinite(row[f"{metric}_mean"]) and math.isfinite(row[f"{metric}_std"]), row
        if row["variant"] in TRAINED and row["variant"] != REFERENCE:
            assert math.isfinite(row["psnr_delta_mean"]) and math.isfinite(row["psnr_delta_std"]), row
    # two seeds train two different stage 1s: the spread over seeds is real, not a copy of one run
    assert rows[0]["psnr_std"] > 0
    assert "issue #14" in next(r for r in rows if r["variant"] == "no diffusion")["paper"]

    budget = (
        "stage 1: 2 steps, stage 2: 2 steps per variant (one stage 1 per seed, shared by its variants); "
        "batch 2, GT patch 32, model preset 'tiny', seeds [0, 1]"
    )
    assert budget in out and "[  0%] seed 0: stage 1, 2 steps" in out and "min left)" in out
    text = (tmp_path / "ablations.md").read_text()
    assert budget in text and all(f"| {v} |" in text for v in TRAINED)
    with (tmp_path / "ablations.csv").open() as f:
        assert [r["variant"] for r in csv.DictReader(f)] == [r["variant"] for r in [*rows, *references]]
    assert json.loads((tmp_path / "ablations.json").read_text())["rows"] == rows
    with Image.open(tmp_path / "ablations.png") as image:
        assert image.width > 600 and image.height > 24 * (len(rows) + len(references))
    assert (tmp_path / "grid_seed0.png").is_file()
