"""The command-line entry points: ``train.py`` / ``eval.py`` / ``infer.py`` in a checkout, and the console
scripts ``diffir-train`` / ``diffir-eval`` / ``diffir-infer`` of an installed package (configs ship inside it);
and :class:`WritableDirCheck`, the Hydra callback ``conf/train.yaml`` and ``conf/eval/eval.yaml`` name.

Known causes of failure (bad input, missing files, a non-finite loss) end the run with one ``error:`` line.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..checkpoint import CheckpointError
from ..config import CONF_DIR  # importing diffir.config registers the resolvers the configs use
from ..errors import RunSetupError, UsageError
from ..io import require_writable_dir
from ..lit import NonFiniteLossError
from .evaluate import evaluate as run_evaluation
from .infer import infer as run_inference
from .train import RunInterrupted
from .train import train as run_training


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train(cfg: DictConfig) -> float | None:
    """``train.py task=<sr|realsr|deblur|inpainting> stage=<1|2> [experiment=...] [data=...] [key=value ...]``."""
    try:
        summary = run_training(cfg)
    except (RunSetupError, CheckpointError, NonFiniteLossError, UsageError) as err:
        sys.exit(f"error: {err}")
    except RunInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    return summary["best_val_psnr"]  # the value an Optuna sweep optimises


@hydra.main(version_base="1.3", config_path=str(CONF_DIR / "eval"), config_name="eval")
def evaluate(cfg: DictConfig) -> None:
    """``eval.py ckpt=<file>|[<file>,...] | method=bicubic|identity|gdp task=<task>; data=<preset>|[...]``."""
    try:
        run_evaluation(cfg)
    except UsageError as err:
        sys.exit(f"error: {err}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="infer")
def infer(cfg: DictConfig) -> None:
    """``infer.py ckpt=<file> input=<image or folder> output=<folder> [mask=...] [tile=...]``."""
    try:
        run_inference(cfg)
    except UsageError as err:
        sys.exit(f"error: {err}")


class WritableDirCheck(Callback):
    """A Hydra callback: a run folder that cannot be written (a regular file at or above it, a read-only file
    system, no permission) stops the run with one ``error:`` line naming it and the option ``key`` to change,
    before Hydra creates the folder and opens its log file there (which end in tracebacks: ``OSError``, or
    ``ValueError: Unable to configure handler 'file'`` when the folder exists)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _check(self, folder: str, config: DictConfig) -> None:
        try:
            require_writable_dir(folder, f"{self.key}=", OmegaConf.select(config, self.key))
        except UsageError as err:
            sys.exit(f"error: {err}")

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, config)
