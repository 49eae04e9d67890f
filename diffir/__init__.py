"""diffir: DiffIR (ICCV 2023) for image restoration, with Lightning and Hydra.

The front door (see :mod:`diffir.api`): ``diffir.load(path)``, ``diffir.restore(model, lq, mask=, tile=,
seed=)``, ``diffir.build_model(task, stage, scale, **diffir.model_preset(task, preset))``; model folders for
other tools (:mod:`diffir.pretrained`): ``diffir.save_pretrained(model, folder)``, ``diffir.from_pretrained(x)``
(the same function as ``diffir.load``).
"""

__version__ = "0.1.0"

from .api import load, restore
from .model_config import model_preset
from .models import build_model
from .pretrained import from_pretrained, save_pretrained

__all__ = ["build_model", "from_pretrained", "load", "model_preset", "restore", "save_pretrained"]
