"""W&B for the runs: offline without an API key (:func:`configure_wandb`, training and evaluation), and an
evaluation's results as a W&B table (:func:`log_results`)."""

from __future__ import annotations

import logging
import netrc
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..evaluation.report import results_table

log = logging.getLogger("diffir")


def configure_wandb(cfg: DictConfig) -> bool:
    """W&B needs no account to run: without an API key the run is written offline. Returns True if offline."""
    if "wandb" not in (cfg.get("logger") or {}):
        return False
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun") or cfg.logger.wandb.get("offline"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return False
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    os.environ["WANDB_MODE"] = "offline"
    log.warning("no W&B API key found (WANDB_API_KEY or `wandb login`): logging offline")
    return True


def log_results(cfg: DictConfig, results: dict[str, Any]) -> None:
    """Send the table (a ``wandb.Table``) and the means to W&B; offline without an API key."""
    import wandb  # imported only when asked for: it is slow to import

    offline = configure_wandb(cfg)
    run = wandb.init(
        project=cfg.logger.wandb.project,
        name=cfg.logger.wandb.name,
        job_type="eval",
        dir=str(cfg.output_dir),
        config=OmegaConf.to_container(cfg, resolve=True),
        mode="offline" if offline else None,
    )
    columns, rows = results_table(results)
    run.log({"eval/metrics": wandb.Table(columns=columns, data=rows)})
    for dataset, per_method in results["datasets"].items():
        for method, r in per_method.items():
            for metric, value in r["mean"].items():
                run.summary[f"{dataset}/{method}/{metric}"] = value
    run.finish()
