"""Every debug/, hparams_search/ and trainer/ preset composes into a config that resolves and whose keys
are real (lightning-hydra-template's compose fixtures, one test per preset)."""

from __future__ import annotations

import inspect

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from diffir.config import CONF_DIR  # diffir.config registers the resolvers the configs use


def presets(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def composed(*overrides: str, hydra: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def resolved(cfg) -> dict:
    """Every interpolation resolves (the Hydra node is dropped: it needs a running app)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("preset", presets("trainer"))
def test_trainer_preset_holds_only_real_trainer_arguments(preset):
    trainer = composed(f"trainer={preset}").trainer
    assert trainer._target_ == "lightning.Trainer"
    unknown = set(trainer) - {"_target_"} - set(inspect.signature(L.Trainer).parameters)
    assert not unknown, f"trainer={preset}: {unknown} are not lightning.Trainer arguments"


@pytest.mark.parametrize("preset", presets("debug"))
def test_debug_preset_composes_and_is_short(preset):
    for stage in (1, 2):
        cfg = composed(f"debug={preset}", f"stage={stage}")
        values = resolved(cfg)
        assert values["run"]["max_steps"] <= 100 and values["model"]["preset"] == "tiny", (preset, stage)
        assert "wandb" not in values["logger"], "a debug run must not need W&B"


@pytest.mark.parametrize("preset", presets("hparams_search"))
def test_hparams_search_preset_sweeps_keys_that_exist(preset):
    cfg = composed(f"hparams_search={preset}", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.mode.name == "MULTIRUN" and "Sweeper" in sweeper._target_
    assert sweeper.params, "nothing is searched"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", (
            f"{preset}: {key} is not a config key"
        )
    resolved(cfg)
