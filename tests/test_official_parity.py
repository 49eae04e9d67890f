"""Our models compute the official DiffIR functions: every reference file, every quantity, atol 1e-4.

The reference directory (``$DIFFIR_OFFICIAL_REFS``, default ``../shared/reference/official_diffir``) is
scanned, so a new ``*.pt`` file there is tested the same way; test ids carry the file's stem.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import official_refs_dir, shared_path

from diffir.compat import load_official

ATOL = 1e-4
QUANTITIES = ("s1_out", "s1_ipr", "s2_train_chain", "s2_out_train", "s2_out_eval")
REF_FILES = sorted(official_refs_dir().glob("*.pt")) if official_refs_dir().is_dir() else []


def _tensor(value):
    """Inpainting's official wrappers return ``(out, extras)`` tuples; the output is the first element."""
    return value[0] if isinstance(value, tuple | list) else value


def _float(state: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture(scope="module")
def reference_cache():
    return {}


def _load(path, cache):
    if path not in cache:
        cache[path] = torch.load(path, map_location="cpu", weights_only=True)
    return cache[path]


def test_reference_files_present():
    directory = shared_path("DIFFIR_OFFICIAL_REFS", official_refs_dir(), "official DiffIR parity vectors")
    assert list(directory.glob("*.pt")), f"no *.pt parity files in {directory}"


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("ref_path", REF_FILES, ids=[p.stem for p in REF_FILES])
@torch.no_grad()
def test_parity(ref_path, quantity, reference_cache):
    ref = _load(ref_path, reference_cache)
    task, kwargs = ref["task"], dict(ref["kwargs"])
    if quantity.startswith("s1"):
        model = load_official(_float(ref["s1_state_dict"]), task, 1, **kwargs)
        out, z = model(ref["lq"], ref["gt"])
        got, want = (out, _tensor(ref["s1_out"])) if quantity == "s1_out" else (z, ref["s1_ipr"])
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        return
    model = load_official(_float(ref["s2_state_dict"]), task, 2, **kwargs, **ref["s2_kwargs"])
    if quantity == "s2_out_eval":
        out, _ = model(ref["lq"], noise=ref["s2_noise_eval"])
        torch.testing.assert_close(out, _tensor(ref["s2_out_eval"]), atol=ATOL, rtol=0)
        return
    out, chain = model(ref["lq"], z_teacher=ref["s1_ipr"], noise=ref["s2_noise_train"])
    if quantity == "s2_train_chain":
        steps = ref["s2_ipr_train_steps"]
        assert len(chain) == len(steps)
        for i, (got, want) in enumerate(zip(chain, steps, strict=True)):
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=lambda m, i=i: f"step {i}: {m}")
        torch.testing.assert_close(chain[-1], ref["s2_ipr_train"], atol=ATOL, rtol=0)
    else:
        torch.testing.assert_close(out, _tensor(ref["s2_out_train"]), atol=ATOL, rtol=0)


PAPER_CONFIGS = official_refs_dir() / "official_paper_configs.json"


def _paper_configs():
    if not PAPER_CONFIGS.is_file():
        return []
    return list(json.loads(PAPER_CONFIGS.read_text()).items())


def _task_of(name: str) -> str:
    return "sr" if name.startswith("sr") else name.split("_")[0]


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("name,config", _paper_configs(), ids=[n.split(" ")[0] for n, _ in _paper_configs()])
def test_paper_configuration_matches_official(name, config, stage):
    """The paper preset has exactly the official parameter count and every official key maps with its shape."""
    from diffir.compat import map_official_keys
    from diffir.config import model_preset
    from diffir.models import IPRDiffusion, build_model

    task, kwargs = _task_of(name), dict(config["official_kwargs"])
    scale = kwargs.pop("scale", 1)
    preset = model_preset(task, "paper")
    kwargs.pop("inp_channels", None)
    assert {k: preset[k] for k in kwargs} == kwargs, (
        "conf/model/arch/<task>/paper.yaml differs from the paper"
    )
    model = build_model(task, stage, scale, **preset)
    params = config["params"]
    if stage == 1:
        parts = {"G": model.G, "E": model.E}
    else:
        parts = {"G": model.G, "condition": model.condition, "denoise": model.denoise}
    counts = {part: sum(p.numel() for p in module.parameters()) for part, module in parts.items()}
    assert sum(p.numel() for p in model.parameters()) == params[f"s{stage}_total"]
    assert counts["G"] == params[f"s{stage}_G_DIRformer"]
    if stage == 1:
        assert counts["E"] == params["s1_E_CPEN"]
    else:
        assert counts["condition"] == params["s2_condition_CPEN"]
        assert counts["denoise"] == params["s2_denoise"]
    shapes = config[f"s{stage}_state_dict_shapes"]
    schedule = IPRDiffusion.schedule(4, 0.1, 0.99)
    # an official-shaped state dict: zeros, except the schedule buffers, which the loader checks
    official = {k: schedule.get(k.removeprefix("diffusion."), torch.zeros(s)) for k, s in shapes.items()}
    mapped = map_official_keys(official, model)  # raises, listing keys, on any unmatched name or shape
    assert len(mapped) == len(model.state_dict())


if os.environ.get("CI", "").lower() == "true" and not REF_FILES:
    raise RuntimeError(f"CI: no official parity files found in {official_refs_dir()}")
