"""Load official DiffIR checkpoints (BasicSR ``.pth``, bare state dicts, LaMa-style inpainting ``.ckpt``).

Official S2 files register CPEN_S2 and the denoiser twice (``condition.*`` = ``diffusion.condition.*``,
``denoise.*`` = ``diffusion.model.*``) plus 12 schedule buffers; here each module is owned once and the
schedule is derived from the arguments, so the duplicates are checked equal and the buffers checked against
the schedule rather than loaded. Everything else maps one to one: loading is strict.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import FORMAT, CheckpointError, read_checkpoint
from .model_config import model_config, model_preset
from .models import DiffIRS1, DiffIRS2, IPRDiffusion, build_model
from .tasks import task_facts

DUPLICATE_PREFIXES = {"diffusion.model.": "denoise.", "diffusion.condition.": "condition."}
LAMA_DROP_PREFIXES = ("generatorS1.", "discriminator.", "loss_", "val_evaluator.", "test_evaluator.")
S2_OPTIONS = ("n_denoise_res", "linear_start", "linear_end", "timesteps")


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


def map_official_keys(state: dict[str, torch.Tensor], model: DiffIRS1 | DiffIRS2) -> dict[str, torch.Tensor]:
    """Rename an official state dict to this model's names and verify it fills the model exactly."""
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


def load_official(
    src: str | os.PathLike | dict[str, Any], task: str, stage: int, **official_kwargs: Any
) -> DiffIRS1 | DiffIRS2:
    """Our model carrying the weights of an official checkpoint (strict: every tensor used and filled).

    ``official_kwargs`` are the official ``network_g`` options (``dim``, ``num_blocks``, ``scale``,
    ``n_denoise_res``, ``timesteps``, ...); omitted ones take the task's paper configuration.
    """
    config = official_model_config(task, stage, **official_kwargs)
    ckpt = src if isinstance(src, dict) else read_checkpoint(src)
    model = build_model(**config)
    model.load_state_dict(map_official_keys(official_state_dict(ckpt), model), strict=True)
    model.config = config  # type: ignore[attr-defined]  # lets callers save a self-describing model file
    return model.eval()
