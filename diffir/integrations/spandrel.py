"""DiffIR as a spandrel architecture, so that ComfyUI, chaiNNer and other spandrel hosts load DiffIR files.

One line before the host loads models (e.g. in a ComfyUI custom node's ``__init__.py``)::

    import diffir.integrations.spandrel as s; s.install()

Then ``spandrel.ModelLoader().load_from_file(path)`` recognises DiffIR stage-2 weights by their keys: official
DiffIR files (BasicSR ``.pth``, LaMa ``.ckpt``) and diffir's (model files, training checkpoints, the
``model.safetensors`` of a model folder). The hyper-parameters are read from the tensors' shapes
(:func:`diffir.compat.read_architecture`). SR and deblurring give an ``ImageModelDescriptor``, inpainting a
``MaskedImageModelDescriptor``; calling it restores the image as ``diffir.restore(model, image, seed=0)`` does
(the reverse diffusion starts from the vector of seed 0). Stage-1 files are refused: they need the GT.

    >>> import spandrel, torch, diffir
    >>> import diffir.integrations.spandrel as s
    >>> s.install()
    >>> model = diffir.build_model("sr", stage=2, scale=4, **diffir.model_preset("sr", "tiny"))
    >>> descriptor = spandrel.ModelLoader().load_from_state_dict(model.state_dict())
    >>> descriptor.architecture.name, descriptor.purpose, descriptor.scale
    ('DiffIR', 'SR', 4)
    >>> descriptor(torch.rand(1, 3, 20, 30)).shape
    torch.Size([1, 3, 80, 120])
"""

from __future__ import annotations

from typing import Any

import torch

try:
    from spandrel import (
        MAIN_REGISTRY,
        Architecture,
        ArchRegistry,
        ArchSupport,
        ImageModelDescriptor,
        MaskedImageModelDescriptor,
        ModelTiling,
        SizeRequirements,
        StateDict,
    )
    from spandrel.util import KeyCondition
except ImportError as err:  # the export extra, not the base install
    raise ImportError("diffir.integrations.spandrel needs spandrel: pip install 'diffir[export]'") from err

from ..api import restore
from ..checkpoint import CheckpointError
from ..compat import map_official_keys, read_architecture
from ..models import DiffIRS2, build_model

ARCH_ID = "DiffIR"
SEED = 0  # the start vector of the reverse diffusion: diffir.restore's default, so both give the same image
# Measured on the CPU (tests/test_spandrel.py): bfloat16 restores within a few of its ε of float32 (mean ~0.4 ε,
# max ~6 ε: ~3e-3 / ~4e-2 on [0, 1] outputs). float16 does for some weights (~4e-4 / ~6e-3) but gives NaN for
# others: the channel attention's L2 norms of small features underflow float16's range (bfloat16 has float32's).
SUPPORTS_HALF = False
SUPPORTS_BFLOAT16 = True
# Where the network's tensors sit in the state dicts spandrel hands over: bare (official .pth, diffir model
# files and model.safetensors), a diffir training checkpoint's Lightning state (EMA copy first), LaMa's .ckpt
WRAPPERS = ("", "net_ema.", "net.", "generator.")
STAGE1_REFUSAL = (
    "this is a DiffIR stage-1 file: stage 1 (CPEN_S1) extracts its prior from the LQ *and* the ground truth, "
    "so it cannot restore an image on its own; use the stage-2 file of the same model"
)
# Keys every DiffIR model has, official or diffir layout, any task and stage: the DIRformer's fixed modules,
# a head, and a CPEN (stage 2's ``condition``, stage 1's ``E``)
IS_DIFFIR = KeyCondition.has_all(
    "G.patch_embed.proj.weight",
    "G.down1_2.body.0.weight",
    "G.down2_3.body.0.weight",
    "G.down3_4.body.0.weight",
    "G.up4_3.body.0.weight",
    "G.reduce_chan_level3.weight",
    "G.reduce_chan_level2.weight",
    "G.up2_1.body.0.weight",
    KeyCondition.has_any("G.tail.1.weight", "G.output.weight"),
    KeyCondition.has_any(
        KeyCondition.has_all("condition.E.0.weight", "condition.mlp.0.weight"),
        KeyCondition.has_all("E.E.0.weight", "E.mlp.0.weight"),
    ),
)


def network_weights(state: StateDict) -> dict[str, Any] | None:
    """The DiffIR network's tensors (``G.*``, CPEN, denoiser, official buffers) of a state dict as spandrel
    hands it over, without their wrapper's prefix; None if it holds no DiffIR network."""
    for prefix in WRAPPERS:
        if f"{prefix}G.patch_embed.proj.weight" in state:
            weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            return weights if IS_DIFFIR(weights) else None
    return None


def detect(state: StateDict) -> bool:
    """True for the state dict of any DiffIR model (stage 1 too, so that :meth:`DiffIRArch.load` can say why
    it is refused instead of spandrel's bare "unsupported model")."""
    return network_weights(state) is not None


def _restore(model: DiffIRS2, image: torch.Tensor) -> torch.Tensor:
    return restore(model, image, seed=SEED)


def _inpaint(model: DiffIRS2, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return restore(model, image, mask=mask, seed=SEED)


class DiffIRArch(Architecture[DiffIRS2]):
    """DiffIR stage 2 (SR ×1/×2/×4, deblurring, inpainting), official or diffir weights."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="DiffIR", detect=detect)

    def load(
        self, state_dict: StateDict
    ) -> ImageModelDescriptor[DiffIRS2] | MaskedImageModelDescriptor[DiffIRS2]:
        """The descriptor of a DiffIR stage-2 state dict; a stage-1 one is a ``CheckpointError`` (``ValueError``)."""
        weights = network_weights(state_dict)
        if weights is None:
            raise CheckpointError(
                "not a DiffIR state dict (spandrel's detection should not have chosen DiffIR)"
            )
        config = read_architecture(weights)
        if config["stage"] == 1:
            raise CheckpointError(STAGE1_REFUSAL)
        model = build_model(**config).eval()
        task = config["task"]
        common: dict[str, Any] = {
            "model": model,
            "state_dict": map_official_keys(weights, model),  # official duplicates checked, buffers dropped
            "architecture": self,
            "tags": [
                task,
                f"{config['dim']}dim",
                f"{sum(config['num_blocks'])}+{config['num_refinement_blocks']}b",
            ],
            "supports_half": SUPPORTS_HALF,
            "supports_bfloat16": SUPPORTS_BFLOAT16,
            "input_channels": 3,
            "output_channels": 3,
            # spandrel reflect-pads to this multiple, as diffir.restore would; the crop back is spandrel's
            "size_requirements": SizeRequirements(multiple_of=model.size_multiple),
            # the prior is one vector per image: tiles would each get their own, and visibly differ
            "tiling": ModelTiling.DISCOURAGED,
        }
        if task == "inpainting":
            return MaskedImageModelDescriptor(purpose="Inpainting", call_fn=_inpaint, **common)
        purpose = "SR" if model.scale > 1 else "Restoration"
        return ImageModelDescriptor(purpose=purpose, scale=model.scale, call_fn=_restore, **common)


def install(registry: ArchRegistry = MAIN_REGISTRY) -> None:
    """Register DiffIR in ``registry`` (spandrel's global one by default, which ``ModelLoader`` uses); calling
    it again changes nothing."""
    registry.add(ArchSupport.from_architecture(DiffIRArch()), ignore_duplicates=True)
