"""What a model file rebuilds itself from: the architecture presets of ``conf/model/arch/`` and the complete
``build_model`` arguments saved in checkpoints. Plain OmegaConf, no Hydra: loading a model needs neither Hydra
nor Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .baselines import PixelDiffusion, build_pixel_diffusion
from .models import DiffIRS1, DiffIRS2, build_model
from .models.factory import DIFFUSION_ARGS

CONF_DIR = Path(__file__).resolve().parent / "conf"  # conf/ of the repository, shipped inside the package
# the diffusion settings of conf/diffusion a stage-2 model is built with (``diffusion`` itself is ``enabled``)
DIFFUSION_KEYS = tuple(k for k in DIFFUSION_ARGS if k != "diffusion")


def model_preset(task: str, preset: str = "paper") -> dict[str, Any]:
    """The architecture arguments of ``conf/model/arch/<task>/<preset>.yaml``."""
    path = CONF_DIR / "model" / "arch" / task / f"{preset}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise FileNotFoundError(
            f"no model preset {preset!r} for task {task!r} ({path}); available: {available}"
        )
    return dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def diffusion_preset(name: str = "official") -> dict[str, Any]:
    """The IPR diffusion settings of ``conf/diffusion/<name>.yaml`` (``build_model``'s stage-2 arguments)."""
    values = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "diffusion" / f"{name}.yaml"), resolve=True)
    return {k: values[k] for k in DIFFUSION_KEYS}


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
