"""DiffIR as plain ``nn.Module``s: no Lightning, no I/O."""

from .blocks import DGFN, DMTA, LayerNorm, TransformerBlock
from .cpen import CPEN
from .diffir import DiffIRS1, DiffIRS2, set_channels_last, set_composed
from .diffusion import Denoiser, IPRDiffusion
from .dirformer import DIRformer, SRHead
from .discriminators import NLayerDiscriminator, UNetDiscriminatorSN
from .factory import TASKS, TaskLayout, build_model, task_layout

__all__ = [
    "CPEN",
    "DGFN",
    "DMTA",
    "TASKS",
    "DIRformer",
    "Denoiser",
    "DiffIRS1",
    "DiffIRS2",
    "IPRDiffusion",
    "LayerNorm",
    "NLayerDiscriminator",
    "SRHead",
    "TaskLayout",
    "TransformerBlock",
    "UNetDiscriminatorSN",
    "build_model",
    "set_channels_last",
    "set_composed",
    "task_layout",
]
