"""The training run behind ``python train.py``: check the config, claim the run folder, build, fit, summarise.

The pieces: :mod:`diffir.runs.checks` (the config and the checkpoint to resume from), :mod:`diffir.runs.build`
(the data and the LightningModule of the stage), this module (the trainer, the run folder, the summary).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from ..callbacks import AtomicCheckpointIO, Interruption, format_metric, usable_callbacks
from ..checkpoint import read_checkpoint, read_model_record, remove_partial_saves, write_model_folder
from ..errors import RunSetupError
from ..io import require_writable_dir
from ..models.switches import compile_model, log_compile_cost, set_checkpointing
from ..noise import quiet
from ..runlock import RunLock, RunLockedError
from .build import build_datamodule, build_module
from .checks import (
    adopt_legacy_gan_dir,
    check_settings,
    is_baseline,
    is_gan_stage,
    resume_checkpoint,
    run_dir,
)
from .loggers import configure_wandb

log = logging.getLogger("diffir")


class RunInterrupted(RuntimeError):
    """A run stopped by SIGTERM or Ctrl+C after saving ``last.ckpt``: not finished, so the command fails (a
    following ``train.py stage=2`` must not start from a half-trained stage 1)."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.exit_code = 143 if signal_name == "SIGTERM" else 130  # 128 + the signal number, as shells report


def separate_multirun_jobs(cfg: DictConfig) -> None:
    """In a Hydra multirun (a sweep), each job writes into its own sweep folder, not the shared run dir."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.paths.run_dir = str(Path(HydraConfig.get().runtime.output_dir) / Path(cfg.paths.run_dir).name)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    callbacks = usable_callbacks(
        callbacks,
        has_logger=bool(loggers),
        progress_bar=cfg.trainer.enable_progress_bar,
        model_summary=cfg.trainer.enable_model_summary,
    )
    for lg in loggers:
        Path(getattr(lg, "save_dir", None) or run_dir(cfg)).mkdir(parents=True, exist_ok=True)
    extra = {}
    if cfg.trainer.get("strategy") == "ddp" and (cfg.get("gan") or cfg.run.get("encoder_iter")):
        # the discriminator's update (and the stage-2 warm-up) leaves parameters out of a backward pass
        extra["strategy"] = "ddp_find_unused_parameters_true"
    interruption = Interruption(run_dir(cfg) / "checkpoints" / "last.ckpt")
    return instantiate(
        cfg.trainer,
        **extra,
        max_steps=cfg.run.max_steps,
        val_check_interval=cfg.run.val_every,
        callbacks=[*callbacks, interruption],
        logger=loggers or False,
        enable_model_summary=False,  # diffir.callbacks.ParameterSummary, when configured, replaces Lightning's
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir(cfg)),
    )


KEPT_IN_PLACE = {".lock", ".hydra"}  # this run's lock and Hydra's record of this run stay; logs (*.log) too


def claim_run_dir(cfg: DictConfig, directory: Path) -> None:
    """A folder that holds a run (checkpoints) is resumed or refused, never mixed with a new run: its
    ``last.ckpt`` would keep the old weights, which the summary and the next stage would then use.
    ``overwrite=true`` moves the old run aside into ``<run dir>/replaced-<time>/``."""
    if cfg.ckpt_path or cfg.resume in ("auto", True):
        return
    old = sorted((directory / "checkpoints").glob("*.ckpt"))
    if not old:
        return
    if not cfg.get("overwrite"):
        raise RunSetupError(
            f"{directory} already holds a run ({', '.join(p.name for p in old[:3])}{', ...' if len(old) > 3 else ''}): "
            "continue it with resume=auto, start another with name=<new name>, or replace it with overwrite=true "
            "(moves the old run aside)"
        )
    aside = directory / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for entry in directory.iterdir():
        if (
            entry.name not in KEPT_IN_PLACE
            and entry.suffix != ".log"
            and not entry.name.startswith("replaced-")
        ):
            entry.rename(aside / entry.name)
    log.warning("overwrite=true: moved the previous run of %s to %s", directory, aside)


def train(cfg: DictConfig, suggest_next: bool = True) -> dict[str, Any]:
    """Run one stage; returns the run summary (directory, checkpoints, best metric, final validation).

    ``suggest_next`` prints the command of the next stage (off for callers that run it themselves: the demo).
    """
    quiet()
    separate_multirun_jobs(cfg)
    adopt_legacy_gan_dir(cfg)
    check_settings(cfg)
    directory = run_dir(cfg)
    require_writable_dir(directory, "paths.experiments_dir=", cfg.paths.experiments_dir)
    lock = RunLock(directory)
    if rank_zero_only.rank == 0:  # DDP: the launching process holds the folder for all its ranks
        try:
            lock.acquire()
        except RunLockedError as err:
            raise RunSetupError(str(err)) from None
        for tmp in remove_partial_saves(directory / "checkpoints"):
            log.warning("removed %s, left by a checkpoint save that did not finish", tmp)
        try:
            claim_run_dir(cfg, directory)
        except RunSetupError:
            lock.release()
            raise
    try:
        return _fit(cfg, directory, suggest_next)
    finally:
        lock.release()


def _fit(cfg: DictConfig, directory: Path, suggest_next: bool) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    offline = configure_wandb(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    set_checkpointing(module.net, bool(cfg.get("checkpointing")))
    if cfg.get("compile"):
        compile_model(module.net)
    ckpt_path = resume_checkpoint(cfg)
    trainer = build_trainer(cfg)
    OmegaConf.save(cfg, directory / "config.yaml", resolve=False)
    (interruption,) = (c for c in trainer.callbacks if isinstance(c, Interruption))
    try:
        with contextlib.suppress(SIGTERMException):  # Interruption saved last.ckpt; said below
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if cfg.get("compile"):
            log_compile_cost()
        last = directory / "checkpoints" / "last.ckpt"
        if trainer.global_step and (
            not last.is_file() or read_checkpoint(last)["global_step"] < trainer.global_step
        ):
            # max_steps not on a checkpoint interval (or a stop by Ctrl+C): keep the final weights too (a full,
            # resumable checkpoint)
            trainer.save_checkpoint(last, weights_only=False)
    finally:
        if "wandb" in (cfg.get("logger") or {}):
            import wandb

            wandb.finish()  # each multirun job closes its own W&B run
    if interruption.signal is not None:
        raise RunInterrupted(
            f"{interruption.signal} stopped the run at step {trainer.global_step} of {cfg.run.max_steps}; "
            f"{directory / 'checkpoints' / 'last.ckpt'} holds it: continue with the same command and resume=auto",
            interruption.signal,
        )
    if OmegaConf.select(cfg, "export.pretrained", default=False) and trainer.is_global_zero:
        export_pretrained(directory)
    return summarize(cfg, trainer, directory, offline, suggest_next)


PRETRAINED_DIR = "pretrained"  # export.pretrained=true: the model folder inside the run folder


def export_pretrained(directory: Path) -> Path:
    """``export.pretrained=true``: the run's final model as a model folder ``<run dir>/pretrained/``
    (``config.json`` + ``model.safetensors``, see :func:`diffir.save_pretrained`): the record of
    ``last.ckpt``, i.e. the EMA weights when EMA is on, as eval.py and infer.py would load them."""
    last = directory / "checkpoints" / "last.ckpt"
    folder = write_model_folder(read_model_record(last), directory / PRETRAINED_DIR)
    log.info("wrote the model folder %s (config.json + model.safetensors) from %s", folder, last)
    return folder


# Overrides that belong to one stage's run, not to the experiment: left out of the next stage's command.
RUN_ONLY_KEYS = ("stage", "resume", "ckpt_path", "overwrite", "stage1_ckpt", "init_ckpt", "adversarial")


def next_command(cfg: DictConfig, *changes: str) -> str:
    """``python train.py`` with this run's command-line overrides (task, data, model, name, debug, ...) and
    ``changes``: the command that continues *this* experiment, not the defaults'."""
    try:
        given = list(HydraConfig.get().overrides.task)
    except ValueError:  # composed in Python (tests, the API): no command line to repeat
        given = []
    changed = {c.split("=", 1)[0] for c in changes}
    kept = [
        o
        for o in given
        if (key := o.split("=", 1)[0].lstrip("+~")) not in changed
        and key not in RUN_ONLY_KEYS
        and not key.startswith(("stage1.", "stage2.", "hydra."))
    ]
    if not any(o.split("=", 1)[0] == "name" for o in kept):
        kept.append(f"name={cfg.name}")
    return "python train.py " + " ".join(shlex.quote(o) for o in [*kept, *changes])


def shown(path: str | Path) -> str:
    """A path as the run summary prints it: relative to the working directory when inside it, else absolute,
    whatever form it was made in (Lightning makes the best checkpoint's absolute, the run folder is relative)."""
    absolute = Path(path).absolute()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)


def summarize(
    cfg: DictConfig, trainer: L.Trainer, directory: Path, offline: bool, suggest_next: bool = True
) -> dict[str, Any]:
    best_cb = next(
        (c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None) == "val/psnr"), None
    )
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    summary = {
        "run_dir": str(directory),
        "stage": int(cfg.stage),
        "steps": trainer.global_step,
        "last_checkpoint": str(directory / "checkpoints" / "last.ckpt"),
        "best_checkpoint": best_cb.best_model_path if best_cb else None,
        "best_val_psnr": float(best_cb.best_model_score)
        if best_cb and best_cb.best_model_score is not None
        else None,
        "val": metrics,
        "pretrained": str(directory / PRETRAINED_DIR)
        if OmegaConf.select(cfg, "export.pretrained", default=False)
        else None,
    }
    lines = [
        f"{cfg.method.name if is_baseline(cfg) else f'stage {cfg.stage}'} finished at step {summary['steps']}",
        f"  run directory:   {shown(directory)}",
        f"  last checkpoint: {shown(summary['last_checkpoint'])}",
    ]
    if summary["best_checkpoint"]:
        lines.append(
            f"  best checkpoint: {shown(summary['best_checkpoint'])} "
            f"(val/psnr {format_metric(summary['best_val_psnr'])})"
        )
    if summary["pretrained"]:
        lines.append(f"  model folder:    {shown(summary['pretrained'])} (config.json + model.safetensors)")
    if metrics:
        lines.append(
            "  last validation: " + ", ".join(f"{k}={format_metric(v)}" for k, v in sorted(metrics.items()))
        )
    if offline:
        lines.append(
            f"  W&B run saved offline in {shown(directory)}/wandb: upload it with "
            f"`wandb sync {shown(directory)}/wandb/offline-run-*`"
        )
    if suggest_next and cfg.stage == 1 and not is_baseline(cfg):
        lines.append(f"  next: {next_command(cfg, 'stage=2')}")
    adversarial = {"sr": "srgan", "realsr": "realsr_v1|realsr_v2"}.get(cfg.task)
    if suggest_next and cfg.stage == 2 and adversarial and not (is_baseline(cfg) or is_gan_stage(cfg)):
        lines.append(
            f"  next (adversarial stage): {next_command(cfg, 'stage=2', f'adversarial={adversarial}')}"
        )
    if trainer.is_global_zero:
        print("\n".join(lines))
    return summary
