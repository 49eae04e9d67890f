"""DiffIR as plain ``nn.Module``s: no Lightning, no I/O.

The paper's networks: ``blocks`` (LayerNorm, DMTA, DGFN, transformer block), ``dirformer`` (the U-shaped
DIRformer and its SR head), ``cpen``, ``diffusion`` (the IPR diffusion), ``diffir`` (DiffIRS1 / DiffIRS2),
``factory`` (``build_model``). Beside them: ``ops`` (the fast kernels those layers call), ``switches`` (every
run-time switch), ``reference`` (the same networks in the official computation order).
"""

from .blocks import DGFN, DMTA, LayerNorm, TransformerBlock
from .cpen import CPEN
from .diffir import DiffIRS1, DiffIRS2
from .diffusion import Denoiser, IPRDiffusion
from .dirformer import DIRformer, SRHead
from .discriminators import NLayerDiscriminator, UNetDiscriminatorSN
from .factory import TASKS, TaskLayout, build_model, task_layout
from .reference import reference_model
from .switches import compile_model, layer_by_layer, set_channels_last, set_checkpointing, set_composed

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
    "compile_model",
    "layer_by_layer",
    "reference_model",
    "set_channels_last",
    "set_checkpointing",
    "set_composed",
    "task_layout",
]
