"""The command-line entry points: ``train.py`` / ``eval.py`` / ``infer.py`` in a checkout, and the console
scripts ``diffir-train`` / ``diffir-eval`` / ``diffir-infer`` of an installed package (configs ship inside it).

Known causes of failure (bad input, missing files, a non-finite loss) end the run with one ``error:`` line.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .checkpoint import CheckpointError
from .config import CONF_DIR  # importing diffir.config registers the resolvers the configs use
from .errors import UsageError
from .evaluation import evaluate as run_evaluation
from .lit import NonFiniteLossError
from .restore_files import infer as run_inference
from .training import RunInterrupted, RunSetupError
from .training import train as run_training


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
