"""python eval.py ckpt=<file>|[<file>,...] | method=bicubic|identity task=<task> [scale=<s>]; data=<preset>|[...]"""

import sys

import hydra
from omegaconf import DictConfig

from diffir.config import CONF_DIR
from diffir.evaluation import evaluate
from diffir.infer import UsageError


@hydra.main(version_base="1.3", config_path=str(CONF_DIR / "eval"), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except UsageError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
