"""``debug=`` presets run anywhere (the lightning-hydra-template convention): on the bundled photos, whatever
the task's paper dataset, which is absent on a fresh checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffir.config import compose_config
from diffir.model_config import CONF_DIR
from diffir.runs.train import train

DEBUG_PRESETS = sorted(p.stem for p in (CONF_DIR / "debug").glob("*.yaml"))


@pytest.mark.parametrize("preset", DEBUG_PRESETS)
@pytest.mark.parametrize("task", ["sr", "deblur", "inpainting"])
def test_debug_presets_use_the_bundled_photos_unless_data_is_given(preset, task):
    cfg = compose_config([f"task={task}", f"debug={preset}"])
    assert cfg.data.name == "samples" and cfg.model.preset == "tiny"
    cfg = compose_config([f"task={task}", f"debug={preset}", "data=folder", "data.root=photos"])
    assert cfg.data.name == "folder"  # the command line still wins


@pytest.mark.slow
def test_debug_fast_runs_without_the_paper_dataset(tmp_path: Path):
    absent = tmp_path / "no_data"  # task=sr's default dataset (DF2K) would be looked for here
    cfg = compose_config(
        ["debug=fast", f"paths.data_dir={absent}", f"paths.experiments_dir={tmp_path}", "trainer=cpu"]
    )
    summary = train(cfg)
    assert summary["steps"] == 4 and Path(summary["last_checkpoint"]).is_file()
    assert not absent.exists()
