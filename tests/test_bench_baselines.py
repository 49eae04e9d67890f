"""bench.compare_methods end to end in its tiny mode (bench.ablations: tests/test_ablations.py)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from bench import compare_methods

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_compare_methods_tiny_writes_a_row_per_method_with_finite_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rows = compare_methods.main(["--tiny", "--out", str(tmp_path), "--threads", "1"])
    by_name = {r["method"]: r for r in rows}
    trained = ["DiffIR", "SR3", "cDDPM (DDIM)", "GDP-x0"]
    published = ["DiffIR (paper model)", "SR3 64->256, JSR3 2000 steps", "GDP + ImageNet ADM-256, 1000 steps"]
    assert set(trained + published) <= set(by_name)
    for name in trained:
        row = by_name[name]
        for key in (
            "params",
            "macs",
            "seconds_per_image",
            "psnr",
            "ssim",
            "macs_vs_diffir",
            "seconds_vs_diffir",
        ):
            assert math.isfinite(row[key]), (name, key)
    assert by_name["DiffIR"]["macs_vs_diffir"] == 1.0
    assert by_name["SR3"]["nfe"] == 4 and by_name["SR3"]["macs"] == 4 * by_name["SR3"]["macs_per_nfe"]
    # the published rows: exact parameter counts, costs from FLOP counts alone
    assert by_name["GDP + ImageNet ADM-256, 1000 steps"]["params"] == 552_814_086
    assert by_name["GDP + ImageNet ADM-256, 1000 steps"]["macs"] == pytest.approx(1.1198e15, rel=1e-3)
    assert by_name["SR3 64->256, JSR3 2000 steps"]["macs"] == pytest.approx(2000 * 772.0e9, rel=1e-3)
    assert "psnr" not in by_name["DiffIR (paper model)"]
    saved = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["method"] for r in saved] == [r["method"] for r in rows]
    with (tmp_path / "compare.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert "| GDP-x0 |" in (tmp_path / "compare.md").read_text()
    # the quality is eval.py's: each trained row is one eval.py run, whose results it repeats
    for name in trained:
        results = json.loads((Path(by_name[name]["eval_output_dir"]) / "metrics.json").read_text())
        (scored,) = results["datasets"]["folder"].values()
        assert (
            by_name[name]["eval"].startswith("python eval.py ")
            and scored["mean"]["psnr"] == by_name[name]["psnr"]
        )
    for image in ("quality_vs_macs.png", "grid.png"):
        assert Image.open(tmp_path / image).size[0] > 100
