"""Our models compute the official DiffIR functions: every reference file, every quantity, within 1e-4 of
the reference's magnitude (outputs of order 1: 1e-4).

Two sets of vectors are scanned, so a new ``*.pt`` file in either is tested the same way (test ids carry the
set and the file's stem): the tiny configurations that ship in ``tests/data/official_tiny`` (weights rebuilt
from a seed, see ``tests/parity/official_tiny.py``; these run on any clone) and the larger ones of
``$DIFFIR_OFFICIAL_REFS`` (default ``../shared/reference/official_diffir``, with stored weights).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import REPO, cases_or_reason, official_refs_dir, shared_path
from numerics import assert_within_relative
from parity.official_tiny import check_numpy_stream, state_dict

from diffir.compat import load_official
from diffir.models import reference_model

# The official vectors' promise: a faithful float32 implementation is within 1e-4 of outputs of order 1 (the
# tiny models' float32 summation-order gap is ~2e-6), stated relative to each reference's magnitude.
RELATIVE = 1e-4
QUANTITIES = ("s1_out", "s1_ipr", "s2_train_chain", "s2_out_train", "s2_out_eval")
TINY_REFS = REPO / "tests" / "data" / "official_tiny"
SHARED_FILES = sorted(official_refs_dir().glob("*.pt")) if official_refs_dir().is_dir() else []
REF_FILES = sorted(TINY_REFS.glob("*.pt")) + SHARED_FILES
REF_IDS = [f"{'tiny' if p.parent == TINY_REFS else 'shared'}-{p.stem}" for p in REF_FILES]


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


def _official_state(ref: dict, stage: int) -> dict:
    """The official state dict of a reference file: stored (shared files) or rebuilt from its seed (tiny)."""
    key = f"s{stage}_state_dict"
    return _float(ref[key]) if key in ref else state_dict(ref, stage)


def _model(path, stage: int, cache):
    """The reference's stage-``stage`` model loaded through ``load_official`` (eval mode), once per file."""
    if (path, stage) not in cache:
        ref = _load(path, cache)
        options = {**ref["kwargs"], **(ref["s2_kwargs"] if stage == 2 else {})}
        cache[path, stage] = load_official(_official_state(ref, stage), ref["task"], stage, **options)
    return cache[path, stage]


def test_reference_files_present():
    assert sorted(p.stem for p in TINY_REFS.glob("*.pt")) == ["deblur", "inpainting", "sr_x4"]
    directory = shared_path("DIFFIR_OFFICIAL_REFS", official_refs_dir(), "official DiffIR parity vectors")
    assert list(directory.glob("*.pt")), f"no *.pt parity files in {directory}"


def test_tiny_reference_weights_rebuild_on_this_numpy():
    """The tiny files' weights come from numpy's PCG64 stream: the same on every platform, checked here."""
    check_numpy_stream()


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("ref_path", REF_FILES, ids=REF_IDS)
@torch.no_grad()
def test_parity(ref_path, quantity, reference_cache):
    ref = _load(ref_path, reference_cache)
    if quantity.startswith("s1"):
        model = _model(ref_path, 1, reference_cache)
        out, z = model(ref["lq"], ref["gt"])
        got, want = (out, _tensor(ref["s1_out"])) if quantity == "s1_out" else (z, ref["s1_ipr"])
        assert_within_relative(got, want, RELATIVE, quantity)
        return
    model = _model(ref_path, 2, reference_cache)
    if quantity == "s2_out_eval":
        out, _ = model(ref["lq"], noise=ref["s2_noise_eval"])
        assert_within_relative(out, _tensor(ref["s2_out_eval"]), RELATIVE, quantity)
        return
    out, chain = model(ref["lq"], z_teacher=ref["s1_ipr"], noise=ref["s2_noise_train"])
    if quantity == "s2_train_chain":
        steps = ref["s2_ipr_train_steps"]
        assert len(chain) == len(steps)
        for i, (got, want) in enumerate(zip(chain, steps, strict=True)):
            assert_within_relative(got, want, RELATIVE, f"step {i}")
        assert_within_relative(chain[-1], ref["s2_ipr_train"], RELATIVE, "s2_ipr_train")
    else:
        assert_within_relative(out, _tensor(ref["s2_out_train"]), RELATIVE, quantity)


@pytest.mark.parametrize("ref_path", REF_FILES, ids=REF_IDS)
@torch.no_grad()
def test_reference_model_parity(ref_path, reference_cache):
    """The official-order reference model (the speed baseline) computes the official functions too."""
    ref = _load(ref_path, reference_cache)
    stage1 = reference_model(_model(ref_path, 1, reference_cache))
    assert_within_relative(stage1(ref["lq"], ref["gt"])[0], _tensor(ref["s1_out"]), RELATIVE, "s1_out")
    stage2 = reference_model(_model(ref_path, 2, reference_cache))
    out, _ = stage2(ref["lq"], noise=ref["s2_noise_eval"])
    assert_within_relative(out, _tensor(ref["s2_out_eval"]), RELATIVE, "s2_out_eval")


PAPER_CONFIGS = official_refs_dir() / "official_paper_configs.json"


def _paper_configs() -> list:
    """(name, config) cases of the paper configurations, or one skipped case naming the missing file."""
    if not PAPER_CONFIGS.is_file():
        reason = f"{PAPER_CONFIGS} not found (set DIFFIR_OFFICIAL_REFS to ../shared's copy)"
        return cases_or_reason([], reason, arity=2)
    return [pytest.param(n, c, id=n.split(" ")[0]) for n, c in json.loads(PAPER_CONFIGS.read_text()).items()]


def _task_of(name: str) -> str:
    return "sr" if name.startswith("sr") else name.split("_")[0]


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("name,config", _paper_configs())
def test_paper_configuration_matches_official(name, config, stage):
    """The paper preset has exactly the official parameter count and every official key maps with its shape."""
    from diffir.compat import map_official_keys
    from diffir.model_config import model_preset
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


if os.environ.get("CI", "").lower() == "true" and not SHARED_FILES:
    raise RuntimeError(f"CI: no official parity files found in {official_refs_dir()}")
