"""What a training run trains: the data (set up at once, so a missing dataset stops the run before training) and
the LightningModule of the stage (:func:`build_module`: DiffIR's stage 1, stage 2 or adversarial stage, from
the checkpoints of the earlier stages; :func:`build_baseline_module`: a pixel-space diffusion baseline)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ..baselines.lit import PixelDiffusionModule
from ..checkpoint import CheckpointError, find_checkpoint, load_model, load_strictly, read_checkpoint
from ..errors import RunSetupError
from ..lit import Stage1Module, Stage2Module
from ..metrics import MissingWeightsError
from ..model_config import build_from_config, model_config
from ..models import DiffIRS1, DiffIRS2
from ..tasks import task_facts
from .checks import is_baseline, is_gan_stage, run_dir

log = logging.getLogger("diffir")


def previous_checkpoint(cfg: DictConfig, key: str, stage_dir: str, missing: str) -> Path:
    """``<key>=<file>`` or the same experiment's ``<stage_dir>/checkpoints/last.ckpt``; one clear error (the
    ``missing`` text, with ``{path}`` and ``{name}``) when neither exists."""
    default = Path(cfg.paths.experiments_dir) / cfg.name / stage_dir / "checkpoints" / "last.ckpt"
    try:
        return find_checkpoint(cfg[key], key, default, missing.format(path=default, name=cfg.name))
    except CheckpointError as err:
        raise RunSetupError(str(err)) from err


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
    load_strictly(
        discriminator, state, f"disc_ckpt={path} does not fit the configured discriminator", RunSetupError
    )
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


def build_baseline_module(cfg: DictConfig) -> PixelDiffusionModule:
    """SR3 / the image-conditioned DDPM / GDP's prior (``cfg.method.net``) with the shared training loop."""
    if cfg.get("batch_degradation"):
        raise RunSetupError(
            f"method={cfg.method.name} task={cfg.task}: the pixel-space baselines train on paired LQ/GT "
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
    adversarial stage (``stage_name=gan``) its whole network from stage 2's; ``gan`` adds a discriminator."""
    if is_baseline(cfg):
        return build_baseline_module(cfg)
    stage_cfg = cfg.run
    network = task_facts(cfg.task).network  # realsr trains the SR network
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

    start = stage2_checkpoint(cfg) if is_gan_stage(cfg) else None
    path = stage1_checkpoint(cfg)
    stage1 = load_trained(path, 1, config)
    if start is not None:
        load_strictly(
            net,
            load_trained(start, 2, config).state_dict(),
            f"the network of {start} does not fit model={cfg.model.preset}: use the stage-2 model settings",
            RunSetupError,
        )
        log.info("adversarial stage: network and EMA from %s, the teacher CPEN_S1 from %s", start, path)
    else:
        load_strictly(
            net.G,
            stage1.G.state_dict(),
            f"the DIRformer of {path} does not fit model={cfg.model.preset}: use the stage-1 model settings",
            RunSetupError,
        )
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
