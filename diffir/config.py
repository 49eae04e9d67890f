"""Hydra composition of the project's configs (``compose_config``); importing this module registers the resolvers the
configs use (``${stage_section:...}``, ``${held_out:...}``), so every Hydra entry point imports it."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf

from .model_config import CONF_DIR


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
