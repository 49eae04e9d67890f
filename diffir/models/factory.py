"""Build DiffIR models for a task from the official constructor arguments (BasicSR option names)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .cpen import CPEN
from .diffir import DiffIRS1, DiffIRS2
from .diffusion import Denoiser, IPRDiffusion
from .dirformer import SR_SCALES, DIRformer

TASKS = ("sr", "deblur", "inpainting")
# build_model's stage-2 arguments: a stage-1 model's config leaves them out (it has no diffusion)
DIFFUSION_ARGS = (
    "diffusion",
    "n_denoise_res",
    "timesteps",
    "linear_start",
    "linear_end",
    "parameterization",
    "reverse_noise",
)


@dataclass(frozen=True)
class TaskLayout:
    """What differs between tasks: input channels, head, residual and the CPEN's LQ unshuffle."""

    inp_channels: int
    upscale: int | None
    global_residual: bool
    cpen_lq_unshuffle: int
    refinement: bool = True


def task_layout(task: str, scale: int = 1) -> TaskLayout:
    """The per-task layout of docs/method.md §1.2-1.3 (SR ×4/×2/×1, deblurring, inpainting)."""
    if task == "sr":
        if scale not in SR_SCALES:
            raise ValueError(f"SR scale must be one of {SR_SCALES}, got {scale}")
        return TaskLayout(3, scale, True, 4 // scale)
    if task == "deblur":
        return TaskLayout(3, None, True, 4)
    if task == "inpainting":
        # masked RGB + mask in; no refinement stage and no residual (the official inpainting arch)
        return TaskLayout(4, None, False, 4, refinement=False)
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def build_model(
    task: str,
    stage: int,
    scale: int = 1,
    *,
    dim: int,
    num_blocks: Sequence[int],
    num_refinement_blocks: int,
    heads: Sequence[int],
    ffn_expansion_factor: float,
    bias: bool,
    LayerNorm_type: str,  # noqa: N803 - official option name
    n_encoder_res: int,
    n_feats: int,
    diffusion: bool = True,
    n_denoise_res: int | None = None,
    timesteps: int | None = None,
    linear_start: float | None = None,
    linear_end: float | None = None,
    parameterization: str | None = None,
    reverse_noise: bool | None = None,
    inp_channels: int | None = None,
    out_channels: int = 3,
) -> DiffIRS1 | DiffIRS2:
    """DiffIRS1 (``stage=1``) or DiffIRS2 (``stage=2``) for ``task``.

    The architecture arguments have no defaults: they come from a preset
    (``conf/model/arch/<task>/<preset>.yaml``, read by ``diffir.model_config.model_preset``), the one place that
    says what ``paper``, ``small`` and ``tiny`` are.

    The stage-2 diffusion settings not given (None) take their official values from
    ``conf/diffusion/official.yaml`` (``diffir.model_config.diffusion_preset``), the one place that holds them.
    ``diffusion=False`` builds the paper's no-diffusion ablation (CPEN_S2 regresses the prior directly).
    ``inp_channels`` is accepted for compatibility with official option files and must match the task.
    """
    arguments = dict(locals())
    if stage == 2 and diffusion:
        from ..model_config import diffusion_preset  # model_config builds models: imported when used

        official = diffusion_preset()
        arguments.update({k: official[k] if arguments[k] is None else arguments[k] for k in official})
    # every argument (sequences as lists, no None), so that the model can describe itself in a model file
    config = {
        k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
        for k, v in arguments.items()
        if v is not None and (stage == 2 or k not in DIFFUSION_ARGS)
    }
    layout = task_layout(task, scale)
    if inp_channels is not None and inp_channels != layout.inp_channels:
        raise ValueError(
            f"task {task!r} takes {layout.inp_channels} input channels, not inp_channels={inp_channels}"
        )
    G = DIRformer(  # noqa: N806
        inp_channels=layout.inp_channels,
        out_channels=out_channels,
        dim=dim,
        num_blocks=num_blocks,
        num_refinement_blocks=num_refinement_blocks if layout.refinement else 0,
        heads=heads,
        ffn_expansion_factor=ffn_expansion_factor,
        bias=bias,
        LayerNorm_type=LayerNorm_type,
        upscale=layout.upscale,
        global_residual=layout.global_residual,
        ipr_dim=4 * n_feats,
    )
    cpen_kwargs = dict(
        lq_channels=layout.inp_channels,
        lq_unshuffle=layout.cpen_lq_unshuffle,
        n_feats=n_feats,
        n_encoder_res=n_encoder_res,
    )
    if stage == 1:
        model: DiffIRS1 | DiffIRS2 = DiffIRS1(G, CPEN(gt_unshuffle=4, **cpen_kwargs))
    elif stage == 2:
        condition = CPEN(gt_unshuffle=None, **cpen_kwargs)
        if diffusion:
            settings = {k: arguments[k] for k in DIFFUSION_ARGS if k != "diffusion"}
            denoise = Denoiser(4 * n_feats, settings.pop("n_denoise_res"), settings["timesteps"])
            model = DiffIRS2(G, condition, denoise, IPRDiffusion(**settings))
        else:
            model = DiffIRS2(G, condition)
    else:
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    model.config = config  # these arguments rebuild it: what model files and save_pretrained store
    return model
