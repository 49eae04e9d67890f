"""The README's main job restores: both stages beat bicubic upsampling on the held-out photos."""

from __future__ import annotations

import pytest

from diffir.demo import main as demo


@pytest.mark.slow
def test_demo_beats_bicubic(tmp_path, capsys):
    table = demo([f"paths.experiments_dir={tmp_path}", "logger=csv"])
    bicubic = table["bicubic"]
    stage1, stage2 = (v for k, v in table.items() if k != "bicubic")
    assert stage2["psnr"] > bicubic["psnr"], table
    assert stage1["psnr"] > bicubic["psnr"], table
    out = capsys.readouterr().out
    assert "| bicubic |" in out and "DiffIR stage 2" in out
    assert (tmp_path / "demo" / "results.md").is_file() and (tmp_path / "demo" / "comparison.png").is_file()
