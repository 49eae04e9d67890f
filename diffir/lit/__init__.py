"""LightningModules for the two DiffIR training stages."""

from .base import NonFiniteLossError, RestorationModule
from .stage1 import Stage1Module
from .stage2 import Stage2Module

__all__ = ["NonFiniteLossError", "RestorationModule", "Stage1Module", "Stage2Module"]
