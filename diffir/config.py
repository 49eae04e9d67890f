"""Locations of the project's Hydra configs, and model construction from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf

from .diffusion import PixelDiffusion, build_pixel_diffusion
from .models import DiffIRS1, DiffIRS2, build_model

CONF_DIR = Path(__file__).resolve().parent / "conf"  # conf/ of the repository, shipped inside the package
DIFFUSION_KEYS = (
    "n_denoise_res",
    "timesteps",
    "linear_start",
    "linear_end",
    "parameterization",
    "reverse_noise",
)


def model_preset(task: str, preset: str = "paper") -> dict[str, Any]:
    """The architecture arguments of ``conf/model/arch/<task>/<preset>.yaml``."""
    path = CONF_DIR / "model" / "arch" / task / f"{preset}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise FileNotFoundError(
            f"no model preset {preset!r} for task {task!r} ({path}); available: {available}"
        )
    return dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def model_config(
    task: str, stage: int, scale: int, arch: dict | DictConfig, diffusion: dict | DictConfig | None = None
) -> dict[str, Any]:
    """The complete ``build_model`` arguments: saved in checkpoints so any model file rebuilds itself."""
    arch = dict(OmegaConf.to_container(arch, resolve=True)) if isinstance(arch, DictConfig) else dict(arch)
    arch.pop("preset", None)
    config: dict[str, Any] = {"task": task, "stage": int(stage), "scale": int(scale), **arch}
    if diffusion is not None and int(stage) == 2:
        diff = (
            OmegaConf.to_container(diffusion, resolve=True)
            if isinstance(diffusion, DictConfig)
            else diffusion
        )
        config["diffusion"] = bool(diff.get("enabled", True))
        config.update({k: diff[k] for k in DIFFUSION_KEYS if k in diff})
    return config


def build_from_config(config: dict[str, Any]) -> DiffIRS1 | DiffIRS2 | PixelDiffusion:
    """Rebuild a model from :func:`model_config`'s output (or a pixel-diffusion baseline's ``config()``, which
    names its ``method``)."""
    config = dict(config)
    if "method" in config:
        return build_pixel_diffusion(config)
    return build_model(config.pop("task"), config.pop("stage"), config.pop("scale"), **config)


def _stage_section(stage: int, *, _root_: DictConfig) -> DictConfig:
    if f"stage{stage}" not in _root_:
        raise ValueError(f"stage must be 1 or 2, got stage={stage}")
    return _root_[f"stage{stage}"]


def _held_out(root: str, val_root: str, validate_on_train: bool, val_images: int) -> int:
    """``data=folder``: how many of ``data.root``'s images validation holds out of training: ``val_images``
    when it validates on that same folder, none when ``data.val_root`` is another folder or
    ``data.validate_on_train=true`` asks for the training images themselves."""
    same = Path(root).expanduser().resolve() == Path(val_root).expanduser().resolve()
    return int(val_images) if same and not validate_on_train else 0


if not OmegaConf.has_resolver("stage_section"):
    OmegaConf.register_new_resolver("stage_section", _stage_section)
if not OmegaConf.has_resolver("held_out"):
    OmegaConf.register_new_resolver("held_out", _held_out)


def compose_config(overrides: list[str], config_name: str = "train") -> DictConfig:
    """Compose a project config outside ``@hydra.main`` (the demo, tests, notebooks), or inside another
    app's run (``eval.py`` composes the task's training config): the running app's Hydra is set aside and
    restored afterwards."""
    outer = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    finally:
        restore_gh_from_backup(outer)
