"""diffir: DiffIR (ICCV 2023) for image restoration, with Lightning and Hydra.

The front door (see :mod:`diffir.api`): ``diffir.load(path)``, ``diffir.restore(model, lq, mask=, tile=,
seed=)``, ``diffir.build_model(task, stage, scale, **diffir.model_preset(task, preset))``.
"""

__version__ = "0.1.0"

from .api import load, restore
from .model_config import model_preset
from .models import build_model

__all__ = ["build_model", "load", "model_preset", "restore"]
