"""The training run behind ``python train.py``: compose, check inputs early, build, fit, summarise."""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import shlex
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from .callbacks import AtomicCheckpointIO, Interruption, format_metric, usable_callbacks
from .checkpoint import (
    CheckpointError,
    DamagedCheckpointError,
    find_model_record,
    load_error_summary,
    load_model,
    read_checkpoint,
    read_model_record,
    remove_partial_saves,
    write_model_folder,
)
from .io import require_writable_dir
from .lit import Stage1Module, Stage2Module
from .lit.pixel_diffusion import PixelDiffusionModule
from .metrics import MissingWeightsError
from .model_config import CONF_DIR, build_from_config, model_config
from .models import DiffIRS1, DiffIRS2
from .models.dirformer import SR_SCALES
from .models.switches import compile_model, log_compile_cost, set_checkpointing
from .noise import quiet
from .runlock import RunLock, RunLockedError
from .tasks import task_facts

log = logging.getLogger("diffir")


class RunInterrupted(RuntimeError):
    """A run stopped by SIGTERM or Ctrl+C after saving ``last.ckpt``: not finished, so the command fails (a
    following ``train.py stage=2`` must not start from a half-trained stage 1)."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.exit_code = 143 if signal_name == "SIGTERM" else 130  # 128 + the signal number, as shells report


class RunSetupError(RuntimeError):
    """A problem with the run's inputs, found before training starts, with what to do about it."""


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.run_dir)


def separate_multirun_jobs(cfg: DictConfig) -> None:
    """In a Hydra multirun (a sweep), each job writes into its own sweep folder, not the shared run dir."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.paths.run_dir = str(Path(HydraConfig.get().runtime.output_dir) / Path(cfg.paths.run_dir).name)


def previous_checkpoint(cfg: DictConfig, key: str, stage_dir: str, missing: str) -> Path:
    """``<key>=<file>`` or the same experiment's ``<stage_dir>/checkpoints/last.ckpt``; one clear error (the
    ``missing`` text, with ``{path}`` and ``{name}``) when neither exists."""
    if cfg[key]:
        path = Path(cfg[key])
        if not path.is_file():
            raise RunSetupError(f"{key}={path} does not exist")
        return path
    path = Path(cfg.paths.experiments_dir) / cfg.name / stage_dir / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise RunSetupError(missing.format(path=path, name=cfg.name))
    return path


def stage1_checkpoint(cfg: DictConfig) -> Path:
    """The frozen teacher (and stage 2's DIRformer start): ``stage1_ckpt=`` or this experiment's stage 1."""
    return previous_checkpoint(
        cfg,
        "stage1_ckpt",
        "stage1",
        "stage 2 needs a trained stage 1, and {path} does not exist. Train it first with the same experiment "
        "settings (`python train.py stage=1 ...` with name={name}), or pass stage1_ckpt=<checkpoint> "
        "(a converted official checkpoint works: python -m diffir.convert)",
    )


def stage2_checkpoint(cfg: DictConfig) -> Path:
    """The adversarial stage's start: ``init_ckpt=`` or this experiment's stage 2."""
    return previous_checkpoint(
        cfg,
        "init_ckpt",
        "stage2",
        "the adversarial stage starts from a trained stage 2, and {path} does not exist. Train it first "
        "(`python train.py stage=2 ...` with name={name}, after stage=1), or pass init_ckpt=<checkpoint>",
    )


def load_trained(path: Path, stage: int, config: dict[str, Any]) -> DiffIRS1 | DiffIRS2:
    """A stage-``stage`` model from ``path``, checked against this run's task and scale."""
    try:
        model, model_cfg = load_model(path)
    except CheckpointError as err:
        raise RunSetupError(str(err)) from err
    if model_cfg["stage"] != stage:
        raise RunSetupError(
            f"{path} holds a stage-{model_cfg['stage']} model; this run needs a stage-{stage} one"
        )
    for key in ("task", "scale"):
        if model_cfg[key] != config[key]:
            raise RunSetupError(
                f"{path} was trained for {key}={model_cfg[key]}, this run has {key}={config[key]}"
            )
    return model


def load_discriminator(discriminator: torch.nn.Module, path: Path, task: str) -> None:
    """Discriminator weights from a diffir checkpoint of the same task, an official BasicSR ``net_d`` file
    (``params``) or a LaMa / DiffIR-inpainting checkpoint (``discriminator.*``)."""
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as err:
        raise RunSetupError(str(err)) from err
    record = ckpt.get("diffir_model")
    if record is not None and record["config"]["task"] != task:
        raise RunSetupError(
            f"disc_ckpt={path} was trained for task={record['config']['task']}, this run is {task}"
        )
    state = ckpt.get("params", ckpt.get("state_dict", ckpt))
    for prefix in ("adversary.discriminator.", "discriminator."):
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            break
    try:
        discriminator.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RunSetupError(
            f"disc_ckpt={path} does not fit the configured discriminator: {load_error_summary(err)}"
        ) from err
    log.info("discriminator weights from %s", path)


def instantiate_checked(node: Any, key: str, hint: str | None = None, **kwargs: Any) -> Any:
    """``instantiate`` whose missing-pretrained-weights error becomes one line naming the config key to change."""
    try:
        return instantiate(node, **kwargs)
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MissingWeightsError):
            cause = cause.__cause__
        if cause is None:
            raise
        message = " ".join(line.strip() for line in str(cause).splitlines())
        hint = hint or (
            f"{key}.pretrained=false (random weights, for smoke runs) or {key}=null (the loss off), both warned"
        )
        raise RunSetupError(f"{key}: {message} Without the file: {hint}") from err


def intact_alternative(damaged: Path) -> str:
    """What to resume from instead of a damaged checkpoint: the newest other one of its folder that reads."""
    others = sorted(
        (p for p in damaged.parent.glob("*.ckpt") if p != damaged),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for candidate in others:
        try:
            step = read_checkpoint(candidate).get("global_step")
        except CheckpointError:
            continue
        return f"the newest intact checkpoint of the run is {candidate} (step {step}): resume from it with ckpt_path={candidate}"
    return "no other checkpoint of the run can be read: start again with overwrite=true"


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """``ckpt_path=`` or, with ``resume=auto``, the run's ``last.ckpt``: checked to be a safe checkpoint of this
    run's model before Lightning restores it."""
    path = None
    if cfg.ckpt_path:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise RunSetupError(f"ckpt_path={path} does not exist")
    elif cfg.resume in ("auto", True):
        last = run_dir(cfg) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.info("resume=auto: no %s yet, starting a new run", last)
            return None
        log.info("resuming from %s", last)
        path = last
    if path is None:
        return None
    try:
        saved = find_model_record(read_checkpoint(path), path)["config"]
    except DamagedCheckpointError as err:
        raise RunSetupError(f"{err}; {intact_alternative(path)}") from err
    except CheckpointError as err:
        raise RunSetupError(str(err)) from err
    if is_baseline(cfg):
        config = instantiate(cfg.method.net, _convert_="all").config()
    else:
        config = model_config(
            task_facts(cfg.task_name).network, cfg.stage, cfg.scale, cfg.model, cfg.diffusion
        )
    differ = sorted(k for k in set(saved) & set(config) if saved[k] != config[k])
    if differ:
        raise RunSetupError(
            f"cannot resume from {path}: it holds a model with "
            + ", ".join(f"{k}={saved[k]}" for k in differ)
            + f" and this run has {', '.join(f'{k}={config[k]}' for k in differ)}; use the settings it was "
            "trained with, or another run folder (name=<new name>)"
        )
    return str(path)


def check_known_keys(cfg: DictConfig) -> None:
    """Keys under ``stage1`` / ``stage2`` / ``export`` that nothing reads are refused: ``+stage1.max_step=3``
    (Hydra's own hint for a mistyped key) would otherwise train the default number of steps without a word."""
    schema = OmegaConf.load(CONF_DIR / "train.yaml")
    for section in ("stage1", "stage2", "export"):
        unknown = sorted(set(cfg.get(section) or {}) - set(schema[section]))
        if unknown:
            known = ", ".join(sorted(schema[section]))
            raise RunSetupError(
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(f'{section}.{k}' for k in unknown)}: "
                f"nothing reads {'them' if len(unknown) > 1 else 'it'} (a typo?); the keys of {section} are: {known}"
            )


def check_settings(cfg: DictConfig) -> None:
    """Values that would fail deep inside Lightning or torch, refused up front with the key to change.

    ``trainer.max_steps=N`` (the key Lightning users try first) becomes this stage's ``stage<N>.max_steps``.
    """
    check_known_keys(cfg)
    section = "baseline" if is_baseline(cfg) else f"stage{cfg.stage}"
    if section != "baseline" and task_facts(cfg.task_name).resizes and cfg.scale not in SR_SCALES:
        scales = ", ".join(map(str, SR_SCALES))
        raise RunSetupError(
            f"scale={cfg.scale}: DiffIR's SR models upscale by {scales}; use scale=<{scales}>"
        )
    if cfg.trainer.get("max_steps") is not None:
        with open_dict(cfg):
            cfg[section].max_steps = cfg.trainer.max_steps
    for key in ("max_steps", "batch_size", "val_every"):
        value = cfg.run.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunSetupError(f"{section}.{key}={value} must be a positive integer")
    for key, value in cfg.run.items():
        lr = value.get("lr") if isinstance(value, DictConfig) else None
        if isinstance(lr, int | float) and lr < 0:
            raise RunSetupError(f"{section}.{key}.lr={lr}: a learning rate cannot be negative")


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
    if rank_zero_only.rank == 0:
        report_data_choices(cfg, datamodule.train_set, datamodule.val_set)
    return datamodule


def report_data_choices(cfg: DictConfig, train_set: Any, val_set: Any) -> None:
    """Say once, in one line each, what a small dataset makes the run do that it would otherwise do silently:
    reflect-pad training images smaller than the patch, and validate on training images (whose scores show
    how well they are fitted, not how the model does on new images)."""
    sources = getattr(train_set, "sources", [])
    patches = [
        getattr(train_set, "patch_size", None),
        *((cfg.run.get("progressive") or {}).get("patch_sizes") or []),
    ]
    patch = max((p for p in patches if p), default=None)
    small = [s for s in sources if patch and min(s.size) < patch]
    if small:
        section = "baseline" if is_baseline(cfg) else f"stage{cfg.stage}"
        key = "gt_crop" if cfg.get("gt_crop") == patch else f"{section}.patch_size"
        examples = ", ".join(f"{s.name} {s.size[0]}x{s.size[1]}" for s in small[:3])
        log.warning(
            "%d of the %d training images are smaller than the %dx%d training patch (%s%s): they are "
            "reflect-padded up to it; use larger images or a smaller %s",
            len(small),
            len(sources),
            patch,
            patch,
            examples,
            ", ..." if len(small) > 3 else "",
            key,
        )
    trained = {s.path.resolve() for s in sources}
    shared = [s for s in getattr(val_set, "sources", []) if s.path.resolve() in trained]
    if shared:
        log.warning(
            "validation uses %d training image(s)%s: its scores show how well they are fitted, not how the "
            "model does on new images; data.val_root=<dir> validates on other images",
            len(shared),
            " (data.validate_on_train=true)" if cfg.data.get("validate_on_train") else "",
        )


def is_baseline(cfg: DictConfig) -> bool:
    """``method=sr3|cddpm|ddpm_prior``: a pixel-space diffusion baseline (conf/method), not a DiffIR stage."""
    return cfg.get("method", {}).get("name", "diffir") != "diffir"


def build_baseline_module(cfg: DictConfig) -> PixelDiffusionModule:
    """SR3 / the image-conditioned DDPM / GDP's prior (``cfg.method.net``) with the shared training loop."""
    if cfg.get("batch_degradation"):
        raise RunSetupError(
            f"method={cfg.method.name} task={cfg.task_name}: the pixel-space baselines train on paired LQ/GT "
            "images and do not run the batch-wise Real-ESRGAN degradation; use task=sr|deblur|inpainting, "
            "or train DiffIR on real-world SR (task=realsr without method=)"
        )
    try:
        net = instantiate(cfg.method.net, _convert_="all")
    except Exception as err:  # Hydra wraps the model's ValueError (bad task, loss, sampler, preset)
        raise RunSetupError(f"method={cfg.method.name}: {err.__cause__ or err}") from err
    run = cfg.run
    return PixelDiffusionModule(
        net=net,
        model_config=net.config(),
        losses={},
        optimizer=instantiate(run.optimizer),
        scheduler=instantiate(run.scheduler) if run.get("scheduler") else None,
        metrics=instantiate(cfg.metrics, _convert_="object"),
        ema_decay=run.ema_decay,
        seed=cfg.seed,
        grad_clip=run.get("grad_clip"),
        val_panels=cfg.val_panels,
        run_dir=str(run_dir(cfg)),
        val_steps=run.val_steps,
        val_t=run.val_t,
    )


def build_module(cfg: DictConfig) -> Stage1Module | Stage2Module:
    """The LightningModule of ``cfg.stage``; stage 2 starts its DIRformer from stage 1's (EMA) weights, the
    adversarial stage (``gan_stage``) its whole network from stage 2's; ``gan`` adds a discriminator."""
    if is_baseline(cfg):
        return build_baseline_module(cfg)
    stage_cfg = cfg.run
    network = task_facts(cfg.task_name).network  # realsr trains the SR network
    config = model_config(network, cfg.stage, cfg.scale, cfg.model, cfg.diffusion)
    net = build_from_config(config)
    common: dict[str, Any] = dict(
        net=net,
        model_config=config,
        losses={
            name: instantiate_checked(loss, f"losses.{name}") for name, loss in cfg.losses.items() if loss
        },
        optimizer=instantiate(stage_cfg.optimizer),
        scheduler=instantiate(stage_cfg.scheduler) if stage_cfg.get("scheduler") else None,
        metrics=instantiate_checked(cfg.metrics, "metrics", "metrics.metrics=[psnr]", _convert_="object"),
        ema_decay=stage_cfg.ema_decay,
        seed=cfg.seed,
        grad_clip=stage_cfg.get("grad_clip"),
        val_panels=cfg.val_panels,
        run_dir=str(run_dir(cfg)),
        degradation=instantiate(cfg.batch_degradation) if cfg.get("batch_degradation") else None,
        gt_usm=list(cfg.get("gt_usm") or ()),
    )
    for name in (name for name, loss in cfg.losses.items() if not loss):
        log.warning("losses.%s=null: this loss is off (the paper's recipe uses it)", name)
    gan = cfg.get("gan")
    if gan:
        adversary = instantiate_checked(gan.adversary, "gan.adversary")
        if cfg.get("disc_ckpt"):
            load_discriminator(adversary.discriminator, Path(cfg.disc_ckpt), config["task"])
        common.update(
            adversary=adversary,
            optimizer_d=instantiate(gan.optimizer),
            scheduler_d=instantiate(gan.scheduler) if gan.get("scheduler") else None,
        )
    if cfg.stage == 1:
        return Stage1Module(**common)

    start = stage2_checkpoint(cfg) if cfg.get("gan_stage") else None
    path = stage1_checkpoint(cfg)
    stage1 = load_trained(path, 1, config)
    if start is not None:
        try:
            net.load_state_dict(load_trained(start, 2, config).state_dict())
        except RuntimeError as err:
            raise RunSetupError(
                f"the network of {start} does not fit model={cfg.model.preset}: use the stage-2 model settings. "
                f"{load_error_summary(err)}"
            ) from err
        log.info("adversarial stage: network and EMA from %s, the teacher CPEN_S1 from %s", start, path)
    else:
        try:
            net.G.load_state_dict(stage1.G.state_dict())
        except RuntimeError as err:
            raise RunSetupError(
                f"the DIRformer of {path} does not fit model={cfg.model.preset}: use the stage-1 model settings. "
                + load_error_summary(err)
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
    if cfg.stage not in (1, 2):
        raise RunSetupError(f"stage must be 1 or 2, got stage={cfg.stage}")
    if cfg.get("gan_stage") and cfg.stage != 2:
        raise RunSetupError(
            f"the adversarial stage follows stage 2: use stage=2 adversarial=..., not stage={cfg.stage}"
        )
    separate_multirun_jobs(cfg)
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
    adversarial = {"sr": "srgan", "realsr": "realsr_v1|realsr_v2"}.get(cfg.task_name)
    if suggest_next and cfg.stage == 2 and adversarial and not (is_baseline(cfg) or cfg.get("gan_stage")):
        lines.append(
            f"  next (adversarial stage): {next_command(cfg, 'stage=2', f'adversarial={adversarial}')}"
        )
    if trainer.is_global_zero:
        print("\n".join(lines))
    return summary
