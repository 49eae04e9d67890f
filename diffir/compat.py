"""Load official DiffIR checkpoints (BasicSR ``.pth``, bare state dicts, LaMa-style inpainting ``.ckpt``).

Official S2 files register CPEN_S2 and the denoiser twice (``condition.*`` = ``diffusion.condition.*``,
``denoise.*`` = ``diffusion.model.*``) plus 12 schedule buffers; here each module is owned once and the
schedule is derived from the arguments, so the duplicates are checked equal and the buffers checked against
the schedule rather than loaded. Everything else maps one to one: loading is strict. A diffir state dict is
an official one without the duplicates and buffers, so everything here takes both layouts.

The network options need not be given: :func:`read_architecture` reads the task, stage, scale and every
architecture option from the tensors' shapes (and an official file's schedule from its buffers).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import torch

from .checkpoint import FORMAT, CheckpointError, read_checkpoint
from .model_config import model_config, model_preset
from .models import DiffIRS1, DiffIRS2, IPRDiffusion, build_model, task_layout
from .tasks import task_facts

DUPLICATE_PREFIXES = {"diffusion.model.": "denoise.", "diffusion.condition.": "condition."}
LAMA_DROP_PREFIXES = ("generatorS1.", "discriminator.", "loss_", "val_evaluator.", "test_evaluator.")
S2_OPTIONS = ("n_denoise_res", "linear_start", "linear_end", "timesteps")
# the DIRformer's transformer levels and their width in multiples of dim (docs/method.md §1.2)
LEVEL_WIDTHS = {
    "encoder_level1": 1,
    "encoder_level2": 2,
    "encoder_level3": 4,
    "latent": 8,
    "decoder_level3": 4,
    "decoder_level2": 2,
    "decoder_level1": 2,
    "refinement": 2,
}


def official_state_dict(ckpt: dict[str, Any], param_key: str = "params_ema") -> dict[str, torch.Tensor]:
    """The generator weights in an official checkpoint: BasicSR (``params_ema`` / ``params``), LaMa
    Lightning (``state_dict`` with ``generator.``), or a bare state dict; ``module.`` prefixes removed."""
    if "diffir_model" in ckpt or ckpt.get("format") == FORMAT:
        raise CheckpointError(
            "this is already a diffir checkpoint or model file: it needs no conversion; load it with "
            "diffir.load(path) or pass it as ckpt= to eval.py / infer.py (or stage1_ckpt= / init_ckpt=)"
        )
    if param_key in ckpt or "params" in ckpt:
        state = ckpt.get(param_key, ckpt.get("params"))
    elif "state_dict" in ckpt:
        state = {
            k[len("generator.") :]: v
            for k, v in ckpt["state_dict"].items()
            if k.startswith("generator.") and not k.startswith(LAMA_DROP_PREFIXES)
        }
        if not state:
            raise CheckpointError("the checkpoint's state_dict has no 'generator.' weights")
    else:
        state = ckpt
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _check_schedule(buffers: dict[str, torch.Tensor], diffusion: IPRDiffusion) -> None:
    for name, value in buffers.items():
        ours = getattr(diffusion, name.removeprefix("diffusion."), None)
        if ours is None:  # log-variance buffers are unused by the method and not kept here
            continue
        if not torch.allclose(value.float(), ours.cpu(), atol=1e-6, rtol=1e-5):
            raise CheckpointError(
                f"official buffer {name} = {value.tolist()} differs from the schedule of these arguments "
                f"({ours.tolist()}): pass the checkpoint's timesteps / linear_start / linear_end"
            )


def _stage1_named_condition(state: dict[str, torch.Tensor], model: DiffIRS1) -> dict[str, torch.Tensor]:
    """The released deblurring stage-1 file (official issue 61) names its CPEN_S1 ``condition.*``, as stage 2
    names CPEN_S2, where ``DiffIRS1`` has ``E.*``: renamed when the trunk's input width is stage 1's."""
    if any(k.startswith("E.") for k in state) or "condition.E.0.weight" not in state:
        return state
    width, want = state["condition.E.0.weight"].shape[1], model.E.in_channels
    if width != want:
        raise CheckpointError(
            f"this is a stage-2 checkpoint, not stage 1: its CPEN (condition.E.0.weight) sees {width} input "
            f"channels, the LQ alone, where stage 1's sees {want} (LQ and GT); load it as stage 2"
        )
    return {
        ("E." + k.removeprefix("condition.") if k.startswith("condition.") else k): v
        for k, v in state.items()
    }


def map_official_keys(state: dict[str, torch.Tensor], model: DiffIRS1 | DiffIRS2) -> dict[str, torch.Tensor]:
    """Rename an official state dict to this model's names and verify it fills the model exactly."""
    if isinstance(model, DiffIRS1):
        state = _stage1_named_condition(state, model)
    mapped: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    duplicates: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix = next((p for p in DUPLICATE_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            duplicates[DUPLICATE_PREFIXES[prefix] + key[len(prefix) :]] = value
        elif key.startswith("diffusion."):
            buffers[key] = value
        else:
            mapped[key] = value
    for key, value in duplicates.items():
        if key in mapped and not torch.equal(mapped[key], value):
            raise CheckpointError(
                f"official shared weights disagree: {key} differs from its diffusion.* copy"
            )
        mapped.setdefault(key, value)
    if buffers:
        if not isinstance(model, DiffIRS2) or model.diffusion is None:
            raise CheckpointError(
                f"checkpoint has diffusion buffers but the model has no diffusion: {sorted(buffers)}"
            )
        _check_schedule(buffers, model.diffusion)

    ours = model.state_dict()
    unused = sorted(set(mapped) - set(ours))
    unfilled = sorted(set(ours) - set(mapped))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(ours[k].shape)}"
        for k in set(mapped) & set(ours)
        if mapped[k].shape != ours[k].shape
    )
    if unused or unfilled or mismatched:
        lines = [
            "the official checkpoint does not match the model built from these options",
            "(check task, stage, scale and the official network options):",
        ]
        for title, keys in (("unused checkpoint tensors", unused), ("model tensors not filled", unfilled)):
            if keys:
                lines.append(
                    f"  {title} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
                )
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:10])}")
        raise CheckpointError("\n".join(lines))
    return {k: v.to(ours[k].dtype) for k, v in mapped.items()}


def official_model_config(task: str, stage: int, **official_kwargs: Any) -> dict[str, Any]:
    """Our ``build_model`` arguments for official options (missing ones from the task's paper preset)."""
    scale = int(official_kwargs.pop("scale", task_facts(task).output_scale(4)))
    official_kwargs.pop("inp_channels", None)  # implied by the task
    arch = {
        **model_preset(task, "paper"),
        **{k: v for k, v in official_kwargs.items() if k not in S2_OPTIONS},
    }
    diffusion = {k: v for k, v in official_kwargs.items() if k in S2_OPTIONS}
    return model_config(task, stage, scale, arch, diffusion if stage == 2 else None)


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """Length of the sequence ``prefix.<i>.*`` in ``state`` (0 when absent)."""
    found = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return max((int(m.group(1)) + 1 for k in state if (m := found.match(k))), default=0)


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"not a DiffIR state dict: it has no {key}")
    return tuple(state[key].shape)


def _ffn_factor(hidden: dict[int, int]) -> float:
    """The shortest decimal ``f`` with ``int(dim · f) == hidden`` at every level (DGFN's width rule), e.g.
    2.66 from the widths 127 / 255 / 510 / 1021 of dims 48 / 96 / 192 / 384."""
    low = max(h / d for d, h in hidden.items())
    for digits in range(1, 9):
        factor = math.ceil(low * 10**digits - 1e-9) / 10**digits
        if all(int(d * factor) == h for d, h in hidden.items()):
            return factor
    raise CheckpointError(f"the FFN widths {hidden} (dim: hidden) fit no single expansion factor")


def read_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``build_model``'s arguments for a DiffIR state dict, official or diffir layout, read from its tensors:
    task and SR scale from the head and the input width, stage from CPEN's input width (LQ, or LQ and GT),
    widths, blocks, heads, FFN factor, bias and LayerNorm type from the DIRformer, the schedule from an
    official file's ``diffusion.betas`` (without it: the official T = 4, β 0.1 → 0.99).
    """
    dim, patch_in = _shape(state, "G.patch_embed.proj.weight")[:2]
    if "G.tail.1.weight" in state:
        task, unshuffle = "sr", math.isqrt(patch_in // 3)
        if patch_in != 3 * unshuffle**2 or unshuffle not in (1, 2, 4):
            raise CheckpointError(
                f"G.patch_embed.proj.weight takes {patch_in} channels: no SR scale has that"
            )
        scale = 4 // unshuffle
    elif "G.output.weight" in state and patch_in in (3, 4):
        task, scale = ("deblur" if patch_in == 3 else "inpainting"), 1
    else:
        raise CheckpointError(
            "not a DiffIR state dict: no G.tail (SR head) or G.output of 3 or 4 input channels"
        )
    layout = task_layout(task, scale)
    cpen = "E" if "E.E.0.weight" in state else "condition"
    n_feats, cpen_in = _shape(state, f"{cpen}.E.0.weight")[:2]
    lq_width = layout.inp_channels * layout.cpen_lq_unshuffle**2
    stages = {lq_width + 3 * 4**2: 1, lq_width: 2}  # CPEN_S1 also sees the GT, pixel-unshuffled by 4
    if cpen_in not in stages:
        raise CheckpointError(f"{cpen}.E.0.weight takes {cpen_in} channels: neither {task} stage has that")
    levels = tuple(LEVEL_WIDTHS)[:4]  # the encoder levels and the latent: what num_blocks and heads list
    num_blocks = [_count(state, f"G.{level}") for level in levels]
    hidden = {
        dim * width: _shape(state, f"G.{level}.0.ffn.project_out.weight")[1]
        for level, width in LEVEL_WIDTHS.items()
        if f"G.{level}.0.ffn.project_out.weight" in state
    }
    config: dict[str, Any] = {
        "task": task,
        "stage": stages[cpen_in],
        "scale": scale,
        "dim": dim,
        "num_blocks": num_blocks,
        "num_refinement_blocks": _count(state, "G.refinement"),
        # a level without blocks has no heads to read; any count builds the same (empty) level
        "heads": [
            _shape(state, f"G.{level}.0.attn.temperature")[0] if n else 2**i
            for i, (level, n) in enumerate(zip(levels, num_blocks, strict=True))
        ],
        "ffn_expansion_factor": _ffn_factor(hidden),
        "bias": any(k.startswith("G.") and k.endswith(".attn.qkv.bias") for k in state),
        "LayerNorm_type": "WithBias" if any(k.endswith(".norm1.body.bias") for k in state) else "BiasFree",
        "n_encoder_res": sum(
            f"{cpen}.E.{i}.body.0.weight" in state for i in range(_count(state, f"{cpen}.E"))
        ),
        "n_feats": n_feats,
    }
    if config["stage"] == 2:
        denoise = next((p for p in ("denoise", "diffusion.model") if f"{p}.resmlp.0.weight" in state), None)
        config["diffusion"] = denoise is not None
        if denoise is not None:
            config["n_denoise_res"] = sum(
                f"{denoise}.resmlp.{i}.resmlp.0.weight" in state
                for i in range(_count(state, f"{denoise}.resmlp"))
            )
        if "diffusion.betas" in state:  # the official buffers hold the schedule (6 digits: float32's)
            betas = state["diffusion.betas"].double()
            config["timesteps"] = len(betas)
            config["linear_start"], config["linear_end"] = (float(f"{b:.6g}") for b in (betas[0], betas[-1]))
    return config


def load_official(
    src: str | os.PathLike | dict[str, Any],
    task: str | None = None,
    stage: int | None = None,
    **official_kwargs: Any,
) -> DiffIRS1 | DiffIRS2:
    """Our model carrying the weights of an official checkpoint (strict: every tensor used and filled).

    ``official_kwargs`` are the official ``network_g`` options (``dim``, ``num_blocks``, ``scale``,
    ``n_denoise_res``, ``timesteps``, ...); omitted ones take the task's paper configuration. Without
    ``task``, ``stage`` and options, all of them are read from the tensors (:func:`read_architecture`).
    """
    ckpt = src if isinstance(src, dict) else read_checkpoint(src)
    state = official_state_dict(ckpt)
    if task is None and stage is None and not official_kwargs:
        config = read_architecture(state)
    elif task is None or stage is None:
        raise CheckpointError(
            "pass both task and stage (with the official options that differ from the paper's), or none of "
            "them to read everything from the checkpoint's tensors"
        )
    else:
        config = official_model_config(task, stage, **official_kwargs)
    model = build_model(**config)
    model.load_state_dict(map_official_keys(state, model), strict=True)
    return model.eval()
