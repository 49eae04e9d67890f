"""A run stopped by SIGTERM (preemption, ``timeout``) or Ctrl+C saves ``last.ckpt``, says how to resume and
fails, so ``train stage=1 && train stage=2`` does not go on from a half-trained stage 1."""

from __future__ import annotations

import pytest
from test_training import overrides

from diffir.checkpoint import read_checkpoint
from diffir.config import compose_config
from diffir.runs.train import RunInterrupted, train


@pytest.mark.parametrize("signal,exit_code", [("SIGTERM", 143), ("SIGINT", 130)])
@pytest.mark.slow
def test_a_signal_saves_last_ckpt_and_fails_with_the_way_to_resume(tmp_path, signal, exit_code):
    kill = ["+callbacks.kill._target_=kill_at_step.KillAtStep", "+callbacks.kill.step=2"]
    cfg = compose_config([*overrides(tmp_path, "sr", 1, 6), *kill, f"+callbacks.kill.signal={signal}"])
    with pytest.raises(
        RunInterrupted, match=rf"{signal} stopped the run at step \d of 6.*resume=auto"
    ) as err:
        train(cfg)
    assert err.value.exit_code == exit_code
    last = tmp_path / "test" / "stage1" / "checkpoints" / "last.ckpt"
    stopped = read_checkpoint(last)["global_step"]
    assert 2 <= stopped < 6, "the interrupted run's state was not saved"
    resumed = train(compose_config([*overrides(tmp_path, "sr", 1, 6), "resume=auto"]))
    assert resumed["steps"] == 6
