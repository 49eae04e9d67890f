"""python train.py task=<sr|deblur|inpainting> stage=<1|2> [experiment=...] [data=...] [model=...] [key=value ...]"""

import sys

import hydra
from omegaconf import DictConfig

from diffir.checkpoint import CheckpointError
from diffir.config import CONF_DIR
from diffir.lit import NonFiniteLossError
from diffir.training import RunSetupError, train


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except (RunSetupError, CheckpointError, NonFiniteLossError) as err:  # known causes: one line
        sys.exit(f"error: {err}")
    return summary["best_val_psnr"]  # the value an Optuna sweep optimises


if __name__ == "__main__":
    main()
