"""The training run behind ``python train.py``: compose, check inputs early, build, fit, summarise."""

from __future__ import annotations

import logging
import netrc
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from .callbacks import AtomicCheckpointIO
from .checkpoint import CheckpointError, load_model, read_checkpoint
from .config import build_from_config, model_config
from .lit import Stage1Module, Stage2Module
from .models import DiffIRS1

log = logging.getLogger("diffir")

# Intended here: checkpoints hold the state *after* step N's update (that is what step N means on resume), and
# the EMA copy and the stage-2 teacher stay in eval mode while the student trains.
warnings.filterwarnings("ignore", message=".*Using ModelCheckpoint with manual optimization.*")
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")


class RunSetupError(RuntimeError):
    """A problem with the run's inputs, found before training starts, with what to do about it."""


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.run_dir)


def separate_multirun_jobs(cfg: DictConfig) -> None:
    """In a Hydra multirun (a sweep), each job writes into its own sweep folder, not the shared run dir."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.paths.run_dir = str(Path(HydraConfig.get().runtime.output_dir) / f"stage{cfg.stage}")


def stage1_checkpoint(cfg: DictConfig) -> Path:
    """``stage1_ckpt=`` or the same experiment's stage-1 ``last.ckpt``; a clear error when neither exists."""
    if cfg.stage1_ckpt:
        path = Path(cfg.stage1_ckpt)
        if not path.is_file():
            raise RunSetupError(f"stage1_ckpt={path} does not exist")
        return path
    path = Path(cfg.paths.experiments_dir) / cfg.name / "stage1" / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise RunSetupError(
            f"stage 2 needs a trained stage 1, and {path} does not exist. Train it first with the same "
            f"experiment settings (`python train.py stage=1 ...` with name={cfg.name}), or pass "
            "stage1_ckpt=<checkpoint> (a converted official checkpoint works: python -m diffir.convert)"
        )
    return path


def resume_checkpoint(cfg: DictConfig) -> str | None:
    if cfg.ckpt_path:
        if not Path(cfg.ckpt_path).is_file():
            raise RunSetupError(f"ckpt_path={cfg.ckpt_path} does not exist")
        return str(cfg.ckpt_path)
    if cfg.resume in ("auto", True):
        last = run_dir(cfg) / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.info("resume=auto: no %s yet, starting a new run", last)
    return None


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


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """Instantiate and set up the data at once, so a missing or broken dataset stops the run before training."""
    missing = [key for key in cfg.data if OmegaConf.is_missing(cfg.data, key)]
    if missing:
        raise RunSetupError(
            f"data={cfg.data.name} needs {', '.join(f'data.{k}=<...>' for k in missing)} "
            f"(e.g. data.root=<directory of images>)"
        )
    datamodule = instantiate(cfg.data.module, _convert_="object")
    try:
        datamodule.setup("fit")
    except FileNotFoundError as err:
        prepare = cfg.data.get("prepare")
        hint = f"\n  prepare it with: {prepare}" if prepare else ""
        raise RunSetupError(
            f"dataset '{cfg.data.name}' is not available: {err}{hint}\n"
            "  or train on the bundled sample photos: data=samples, or on any folder: data=folder data.root=<dir>"
        ) from err
    except (OSError, ValueError) as err:  # unreadable files, mismatched pairs, images smaller than the patch
        raise RunSetupError(f"dataset '{cfg.data.name}': {err}") from err
    return datamodule


def build_module(cfg: DictConfig) -> Stage1Module | Stage2Module:
    """The LightningModule of ``cfg.stage``; stage 2 starts its DIRformer from stage 1's (EMA) weights."""
    stage_cfg = cfg.run
    config = model_config(cfg.task_name, cfg.stage, cfg.scale, cfg.model, cfg.diffusion)
    net = build_from_config(config)
    common: dict[str, Any] = dict(
        net=net,
        model_config=config,
        losses={name: instantiate(loss) for name, loss in cfg.losses.items()},
        optimizer=instantiate(stage_cfg.optimizer),
        scheduler=instantiate(stage_cfg.scheduler) if stage_cfg.get("scheduler") else None,
        metrics=instantiate(cfg.metrics, _convert_="object"),
        ema_decay=stage_cfg.ema_decay,
        seed=cfg.seed,
        grad_clip=stage_cfg.get("grad_clip"),
        val_panels=cfg.val_panels,
        run_dir=str(run_dir(cfg)),
    )
    if cfg.stage == 1:
        return Stage1Module(**common)

    path = stage1_checkpoint(cfg)
    try:
        stage1, stage1_config = load_model(path)
    except CheckpointError as err:
        raise RunSetupError(str(err)) from err
    if not isinstance(stage1, DiffIRS1):
        raise RunSetupError(
            f"{path} holds a stage-{stage1_config['stage']} model; stage 2 needs a stage-1 checkpoint"
        )
    for key in ("task", "scale"):
        if stage1_config[key] != config[key]:
            raise RunSetupError(
                f"{path} was trained for {key}={stage1_config[key]}, this run has {key}={config[key]}"
            )
    try:
        net.G.load_state_dict(stage1.G.state_dict())
    except RuntimeError as err:
        raise RunSetupError(
            f"the DIRformer of {path} does not fit model={cfg.model.preset}: use the stage-1 model settings. {err}"
        ) from err
    log.info("stage 2: DIRformer and the teacher CPEN_S1 from %s", path)
    return Stage2Module(
        **common,
        teacher=stage1.E,
        prior_loss=instantiate(stage_cfg.prior_loss),
        encoder_iter=stage_cfg.encoder_iter,
        optimizer_e=instantiate(stage_cfg.optimizer_e) if stage_cfg.get("optimizer_e") else None,
        scheduler_e=instantiate(stage_cfg.scheduler_e) if stage_cfg.get("scheduler_e") else None,
        objective=cfg.diffusion.objective,
    )


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    for lg in loggers:
        Path(getattr(lg, "save_dir", None) or run_dir(cfg)).mkdir(parents=True, exist_ok=True)
    return instantiate(
        cfg.trainer,
        max_steps=cfg.run.max_steps,
        val_check_interval=cfg.run.val_every,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir(cfg)),
    )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one stage; returns the run summary (directory, checkpoints, best metric, final validation)."""
    if cfg.stage not in (1, 2):
        raise RunSetupError(f"stage must be 1 or 2, got stage={cfg.stage}")
    separate_multirun_jobs(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    offline = configure_wandb(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    directory = run_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, directory / "config.yaml", resolve=False)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg))
        last = directory / "checkpoints" / "last.ckpt"
        if trainer.global_step and (
            not last.is_file() or read_checkpoint(last)["global_step"] < trainer.global_step
        ):
            trainer.save_checkpoint(
                last
            )  # max_steps not on a checkpoint interval: keep the final weights too
    finally:
        if "wandb" in (cfg.get("logger") or {}):
            import wandb

            wandb.finish()  # each multirun job closes its own W&B run
    return summarize(cfg, trainer, directory, offline)


def summarize(cfg: DictConfig, trainer: L.Trainer, directory: Path, offline: bool) -> dict[str, Any]:
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
    }
    lines = [
        f"stage {cfg.stage} finished at step {summary['steps']}",
        f"  run directory:   {directory}",
        f"  last checkpoint: {summary['last_checkpoint']}",
    ]
    if summary["best_checkpoint"]:
        lines.append(
            f"  best checkpoint: {summary['best_checkpoint']} (val/psnr {summary['best_val_psnr']:.3f})"
        )
    if metrics:
        lines.append("  last validation: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    if offline:
        lines.append(
            f"  W&B run saved offline in {directory}/wandb: upload it with `wandb sync {directory}/wandb/offline-run-*`"
        )
    if cfg.stage == 1:
        lines.append(f"  next: python train.py stage=2 name={cfg.name} (same task / model settings)")
    if trainer.is_global_zero:
        print("\n".join(lines))
    return summary
