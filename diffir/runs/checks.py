"""The checks of a training config, before anything is built: the stage, unknown keys, values that would fail
deep inside Lightning or torch, and the checkpoint a run resumes from; and what a config says about the run
(its folder, whether it trains a baseline). Each problem is a :class:`~diffir.errors.RunSetupError` naming
the key to change."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ..checkpoint import (
    CheckpointError,
    DamagedCheckpointError,
    find_model_record,
    intact_alternative,
    read_checkpoint,
)
from ..errors import RunSetupError
from ..model_config import CONF_DIR, model_config
from ..models.dirformer import SR_SCALES
from ..tasks import task_facts

log = logging.getLogger("diffir")

GAN_STAGE = "gan"  # the adversarial stage's name (conf/adversarial/common/stage.yaml): its folder and W&B run


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.run_dir)


def is_baseline(cfg: DictConfig) -> bool:
    """``method=sr3|cddpm|ddpm_prior``: a pixel-space diffusion baseline (conf/method), not a DiffIR stage."""
    return cfg.get("method", {}).get("name", "diffir") != "diffir"


def is_gan_stage(cfg: DictConfig) -> bool:
    """The adversarial stage (``adversarial=<recipe>``, which names the stage ``gan``): stage 2's network
    fine-tuned with a discriminator, in ``<experiment>/gan/``."""
    return cfg.get("stage_name") == GAN_STAGE


LEGACY_GAN_DIR = "stage2_gan"  # the adversarial stage's folder before it was named gan


def adopt_legacy_gan_dir(cfg: DictConfig) -> None:
    """Runs of the adversarial stage begun before it was named ``gan`` live in ``<experiment>/stage2_gan/``:
    when that folder holds checkpoints and ``gan/`` none, the run continues there (``resume=auto`` finds its
    ``last.ckpt``) instead of starting again in ``gan/``."""
    directory = run_dir(cfg)
    legacy = directory.parent / LEGACY_GAN_DIR
    if (
        not is_gan_stage(cfg)
        or directory.name != GAN_STAGE
        or any((directory / "checkpoints").glob("*.ckpt"))
    ):
        return
    if any((legacy / "checkpoints").glob("*.ckpt")):
        log.warning(
            "continuing the adversarial stage in its former folder %s (new runs use %s)", legacy, directory
        )
        with open_dict(cfg):
            cfg.paths.run_dir = str(legacy)


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
    """The stage, unknown keys, and values that would fail deep inside Lightning or torch, refused up front
    with the key to change.

    ``trainer.max_steps=N`` (the key Lightning users try first) becomes this stage's ``stage<N>.max_steps``.
    """
    if cfg.stage not in (1, 2):
        raise RunSetupError(f"stage must be 1 or 2, got stage={cfg.stage}")
    if is_gan_stage(cfg) and cfg.stage != 2:
        raise RunSetupError(
            f"the adversarial stage follows stage 2: use stage=2 adversarial=..., not stage={cfg.stage}"
        )
    check_known_keys(cfg)
    section = "baseline" if is_baseline(cfg) else f"stage{cfg.stage}"
    if section != "baseline" and task_facts(cfg.task).resizes and cfg.scale not in SR_SCALES:
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
        config = model_config(task_facts(cfg.task).network, cfg.stage, cfg.scale, cfg.model, cfg.diffusion)
    differ = sorted(k for k in set(saved) & set(config) if saved[k] != config[k])
    if differ:
        raise RunSetupError(
            f"cannot resume from {path}: it holds a model with "
            + ", ".join(f"{k}={saved[k]}" for k in differ)
            + f" and this run has {', '.join(f'{k}={config[k]}' for k in differ)}; use the settings it was "
            "trained with, or another run folder (name=<new name>)"
        )
    return str(path)
