"""Official checkpoint formats load strictly; mismatches are listed; the converter's file loads everywhere."""

from __future__ import annotations

import pytest
import torch
from numerics import assert_within_relative

from diffir.checkpoint import CheckpointError, load_model
from diffir.compat import load_official
from diffir.convert import main as convert_main
from diffir.restoration import restore

# The official vectors' promise: a faithful float32 implementation is within 1e-4 of outputs of order 1,
# stated relative to the reference's magnitude (as in test_official_parity.py).
RELATIVE = 1e-4


@pytest.fixture
def sr_ref(official_refs):
    ref = torch.load(official_refs / "sr_x4.pt", weights_only=True)
    ref["s2_state_dict"] = {
        k: v.float() if v.is_floating_point() else v for k, v in ref["s2_state_dict"].items()
    }
    return ref


def _options(ref):
    return {**ref["kwargs"], **ref["s2_kwargs"]}


def test_basicsr_file_with_module_prefix_and_ema(sr_ref, tmp_path):
    state = sr_ref["s2_state_dict"]
    path = tmp_path / "net_g.pth"
    broken = {k: torch.zeros_like(v) for k, v in state.items()}
    torch.save({"params": broken, "params_ema": {f"module.{k}": v for k, v in state.items()}}, path)
    model = load_official(path, "sr", 2, **_options(sr_ref))  # params_ema wins over params
    out, _ = model(sr_ref["lq"], noise=sr_ref["s2_noise_eval"])
    assert_within_relative(out, sr_ref["s2_out_eval"], RELATIVE)


def test_lama_style_checkpoint(sr_ref, tmp_path):
    state = sr_ref["s2_state_dict"]
    lightning = {f"generator.{k}": v for k, v in state.items()}
    lightning.update(
        {"generatorS1.E.mlp.0.weight": torch.zeros(3), "discriminator.model.0.weight": torch.zeros(2)}
    )
    model = load_official({"state_dict": lightning}, "sr", 2, **_options(sr_ref))
    out, _ = model(sr_ref["lq"], noise=sr_ref["s2_noise_eval"])
    assert_within_relative(out, sr_ref["s2_out_eval"], RELATIVE)


def test_unmatched_keys_are_listed(sr_ref):
    state = dict(sr_ref["s2_state_dict"])
    state["G.extra.weight"] = torch.zeros(1)
    del state["G.tail.1.bias"]
    with pytest.raises(CheckpointError) as err:
        load_official(state, "sr", 2, **_options(sr_ref))
    assert "G.extra.weight" in str(err.value) and "G.tail.1.bias" in str(err.value)


def test_wrong_schedule_is_refused(sr_ref):
    with pytest.raises(CheckpointError, match="differs from the schedule"):
        load_official(sr_ref["s2_state_dict"], "sr", 2, **{**_options(sr_ref), "linear_end": 0.5})


def test_disagreeing_shared_copies_are_refused(sr_ref):
    state = dict(sr_ref["s2_state_dict"])
    state["diffusion.model.resmlp.0.bias"] = state["denoise.resmlp.0.bias"] + 1
    with pytest.raises(CheckpointError, match="disagree"):
        load_official(state, "sr", 2, **_options(sr_ref))


def test_convert_cli_writes_a_model_file_that_loads(sr_ref, tmp_path, capsys):
    src, out = tmp_path / "official.pth", tmp_path / "converted.pth"
    torch.save({"params_ema": sr_ref["s2_state_dict"]}, src)
    options = [f"--set={k}={v}" for k, v in _options(sr_ref).items()]
    convert_main([str(src), "--task", "sr", "--stage", "2", "--out", str(out), *options])
    assert "parameters" in capsys.readouterr().out
    model, config = load_model(out)
    assert config["task"] == "sr" and config["stage"] == 2 and config["dim"] == 16
    got = restore(model, sr_ref["lq"], noise=sr_ref["s2_noise_eval"])
    assert_within_relative(got, sr_ref["s2_out_eval"], RELATIVE)


def test_non_diffir_file_gives_instructions(tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"params": {}}, path)
    with pytest.raises(CheckpointError, match="python -m diffir.convert"):
        load_model(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pth")
