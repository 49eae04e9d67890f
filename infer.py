"""python infer.py ckpt=<file> input=<image or folder> output=<folder> [mask=...] [tile=...] [device=...] [seed=...]"""

import sys

import hydra
from omegaconf import DictConfig

from diffir.config import CONF_DIR
from diffir.infer import UsageError, infer


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="infer")
def main(cfg: DictConfig) -> None:
    try:
        infer(cfg)
    except UsageError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
