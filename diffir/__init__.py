"""diffir: DiffIR (ICCV 2023) for image restoration, with Lightning and Hydra."""

__version__ = "0.1.0"
