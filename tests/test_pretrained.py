"""Model folders (config.json + model.safetensors) and the one loader of every model source: round trips of
every task, official files to folders against the official reference vectors, eval.py / infer.py on a folder,
the Hugging Face cache, a run's final export, and the files that are refused."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import assert_within_relative
from parity.official_tiny import state_dict as official_state
from PIL import Image

import diffir
import diffir.pretrained
from diffir.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_save,
    load_model,
    model_record,
)
from diffir.convert import main as convert_main
from diffir.errors import UsageError

pytest.importorskip("safetensors")  # the export extra
pytestmark = pytest.mark.usefixtures("one_thread")

TINY_REFS = Path(__file__).resolve().parent / "data" / "official_tiny"
RELATIVE = 1e-4  # the official vectors' promise (tests/test_official_parity.py)
CASES = [  # (task, stage, scale): every task, the x2 / x1 PixelUnshuffle variants, both stages
    ("sr", 2, 4),
    ("sr", 2, 2),
    ("sr", 2, 1),
    ("deblur", 2, 1),
    ("inpainting", 2, 1),
    ("sr", 1, 4),
    ("deblur", 1, 1),
    ("inpainting", 1, 1),
]


def tiny(task: str, stage: int, scale: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffir.build_model(task, stage, scale, **diffir.model_preset(task, "tiny")).eval()


def restored(model, seed: int = 0) -> torch.Tensor:
    """One restoration of a fixed 13x21 input (not a multiple of any size multiple), with the mask / GT the
    model needs."""
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand(1, 3, 13, 21, generator=generator)
    mask = (torch.rand(1, 1, 13, 21, generator=generator) > 0.6).float() if model.in_channels == 4 else None
    gt = torch.rand(1, 3, 13 * model.scale, 21 * model.scale, generator=generator)
    return diffir.restore(model, lq, mask=mask, gt=gt if isinstance(model, diffir.models.DiffIRS1) else None)


def test_docstring_example_runs():
    result = doctest.testmod(diffir.pretrained, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_one_loader():
    assert diffir.load is diffir.from_pretrained


@pytest.mark.parametrize("task,stage,scale", CASES, ids=[f"{t}-s{s}-x{x}" for t, s, x in CASES])
def test_save_then_load_gives_the_same_model(tmp_path, task, stage, scale):
    model = tiny(task, stage, scale)
    folder = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    header = json.loads((folder / CONFIG_FILE).read_text())
    assert header["format"] == "diffir-model" and header["version"] == 1
    assert {k: header["config"][k] for k in ("task", "stage", "scale")} == {
        "task": task,
        "stage": stage,
        "scale": scale,
    }
    loaded = diffir.from_pretrained(folder)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # the same weights and start vector: the same computation, bit for bit
    assert torch.equal(restored(loaded), restored(model))


def test_a_pixel_diffusion_baseline_saves_and_loads_too(tmp_path):
    from diffir.baselines import SR3

    model = SR3(task="sr", scale=4, unet={"preset": "xs"})
    loaded, config = load_model(diffir.save_pretrained(model, tmp_path / "sr3"))
    assert type(loaded) is SR3 and config == json.loads(json.dumps(model.config()))  # tuples as lists
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_training_checkpoint_gives_its_ema_weights_everywhere(tmp_path):
    """save_pretrained of a loaded .ckpt, infer.py and eval.py (load_model) use the record's (EMA) weights, not
    the Lightning module's raw ones."""
    model, ema = tiny("sr", 2, 4, seed=0), tiny("sr", 2, 4, seed=1)
    ckpt = tmp_path / "last.ckpt"
    raw = {f"net.{k}": v for k, v in model.state_dict().items()}
    atomic_save({"state_dict": raw, "diffir_model": model_record(ema.config, ema.state_dict())}, ckpt)
    folder = diffir.save_pretrained(diffir.load(ckpt), tmp_path / "folder")
    from_folder, config = load_model(folder)  # what eval.py / infer.py call
    assert config == ema.config
    assert torch.equal(restored(from_folder), restored(ema)) and not torch.equal(
        restored(ema), restored(model)
    )


def test_training_writes_the_folder_at_the_end_when_asked(tmp_path):
    """``export.pretrained=true``: <run dir>/pretrained/ holds last.ckpt's model (one step of a tiny run)."""
    from test_training import overrides

    from diffir.config import compose_config
    from diffir.runs.train import train

    summary = train(compose_config(overrides(tmp_path, "sr", 1, 1, "export.pretrained=true")))
    folder = Path(summary["pretrained"])
    assert folder == Path(summary["run_dir"]) / "pretrained"
    model, config = load_model(folder)
    last, last_config = load_model(summary["last_checkpoint"])
    assert config == last_config and all(
        torch.equal(v, last.state_dict()[k]) for k, v in model.state_dict().items()
    )


def test_export_key_is_known_and_its_typos_are_refused():
    from diffir.config import compose_config
    from diffir.errors import RunSetupError
    from diffir.runs.checks import check_known_keys

    check_known_keys(compose_config(["export.pretrained=true"]))
    with pytest.raises(RunSetupError, match=r"export\.pretrianed.*the keys of export are: pretrained"):
        check_known_keys(compose_config(["+export.pretrianed=true"]))


def _reference(name: str) -> dict:
    return torch.load(TINY_REFS / f"{name}.pt", map_location="cpu", weights_only=True)


def _first(value):
    """Inpainting's official wrappers return ``(out, extras)``; the output is the first element."""
    return value[0] if isinstance(value, tuple | list) else value


@pytest.mark.parametrize("name", ["sr_x4", "deblur", "inpainting"])
@pytest.mark.parametrize("stage", [2, 1])
def test_official_file_to_folder_computes_the_reference(tmp_path, capsys, name, stage):
    """An official BasicSR file -> ``diffir.convert --format safetensors`` (task, stage and options read from
    its tensors) -> a folder whose model gives the official outputs."""
    ref = _reference(name)
    official = tmp_path / "net_g.pth"
    torch.save({"params_ema": official_state(ref, stage)}, official)
    folder = tmp_path / "folder"
    convert_main([str(official), "--out", str(folder), "--format", "safetensors"])
    assert f"DiffIR stage {stage} ({ref['task']}" in capsys.readouterr().out
    model = diffir.from_pretrained(folder)
    with torch.no_grad():
        if stage == 2:
            out, _ = model(ref["lq"], noise=ref["s2_noise_eval"])
            assert_within_relative(out, _first(ref["s2_out_eval"]), RELATIVE, "s2_out_eval")
        else:
            out, _ = model(ref["lq"], ref["gt"])
            assert_within_relative(out, _first(ref["s1_out"]), RELATIVE, "s1_out")
    # the options given explicitly (as diffir.convert --task --stage --set) build the same model
    options = {**ref["kwargs"], **(ref["s2_kwargs"] if stage == 2 else {})}
    explicit = diffir.from_pretrained(official, task=ref["task"], stage=stage, **options)
    assert explicit.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(explicit.state_dict()[k], v) for k, v in model.state_dict().items())


def test_released_deblurring_stage1_file_with_condition_keys(tmp_path):
    """Official issue 61: the released deblurring stage-1 file names its CPEN_S1 ``condition.*`` (as stage 2
    names CPEN_S2) where DiffIRS1 has ``E.*``. It loads as stage 1 and computes the reference."""
    ref = _reference("deblur")
    state = {
        ("condition." + k[2:] if k.startswith("E.") else k): v for k, v in official_state(ref, 1).items()
    }
    path = tmp_path / "net_g_s1.pth"
    torch.save({"params": state}, path)
    for model in (diffir.load(path), diffir.load(path, task="deblur", stage=1, **ref["kwargs"])):
        assert isinstance(model, diffir.models.DiffIRS1)
        with torch.no_grad():
            assert_within_relative(model(ref["lq"], ref["gt"])[0], ref["s1_out"], RELATIVE)
    # a real stage-2 file asked to load as stage 1 says what it is
    torch.save({"params": official_state(ref, 2)}, path)
    with pytest.raises(
        CheckpointError, match="this is a stage-2 checkpoint, not stage 1.*load it as stage 2"
    ):
        diffir.load(path, task="deblur", stage=1, **ref["kwargs"])


@pytest.fixture(scope="module")
def sr_folder(tmp_path_factory) -> Path:
    return tiny("sr", 2, 4).save_pretrained(tmp_path_factory.mktemp("sr") / "sr_x4")


def test_infer_and_eval_accept_a_folder(sr_folder, tmp_path):
    from test_eval_infer import eval_cfg, infer_cfg

    from diffir.runs.evaluate import evaluate
    from diffir.runs.infer import infer

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(
        photos / "a.png"
    )
    model_file = tmp_path / "sr_x4.pth"
    model = diffir.load(sr_folder)
    atomic_save(model_record(model.config, model.state_dict()), model_file)
    outputs = []
    for ckpt in (sr_folder, model_file):
        [written] = infer(infer_cfg(f"ckpt={ckpt}", f"input={photos}", f"output={tmp_path / ckpt.stem}"))
        outputs.append(written.read_bytes())
    assert outputs[0] == outputs[1], "the folder and the model file restore the same image"
    results = evaluate(
        eval_cfg(
            f"ckpt={sr_folder}",
            "data=folder",
            f"data.root={photos}",
            "metrics=[psnr]",
            "grids=0",
            "save_images=false",
            f"output_dir={tmp_path / 'eval'}",
        )
    )
    assert results["methods"] == ["sr_x4"] and (results["task"], results["scale"]) == ("sr", 4)
    with pytest.raises(UsageError, match="has no config.json"):
        infer(infer_cfg(f"ckpt={photos}", f"input={photos}", f"output={tmp_path / 'x'}"))


def _snapshot(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """A Hub cache entry as huggingface_hub lays it out: refs/main names the commit, snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())
    return snapshot


def test_hub_ids_use_the_cache_and_honour_offline_mode(sr_folder, tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    cache = tmp_path / "hf" / "hub"
    with pytest.raises(CheckpointError) as err:
        diffir.from_pretrained("someone/diffir-sr-x4")
    assert "someone/diffir-sr-x4" in str(err.value) and str(cache) in str(err.value)
    assert "HF_HUB_OFFLINE=1" in str(err.value) and "\n" not in str(err.value)

    ref = _reference("sr_x4")
    official = tmp_path / "DiffIRS2.pth"
    torch.save({"params_ema": official_state(ref, 2)}, official)
    files = {
        CONFIG_FILE: sr_folder / CONFIG_FILE,
        WEIGHTS_FILE: sr_folder / WEIGHTS_FILE,
        "DiffIRS2.pth": official,
    }
    _snapshot(cache, "someone/diffir-sr-x4", files)
    model = diffir.from_pretrained("someone/diffir-sr-x4")
    assert torch.equal(restored(model), restored(diffir.from_pretrained(sr_folder)))
    # one file of the repository: an official checkpoint hosted on the Hub
    hosted = diffir.from_pretrained("someone/diffir-sr-x4", filename="DiffIRS2.pth")
    with torch.no_grad():
        assert_within_relative(hosted(ref["lq"], noise=ref["s2_noise_eval"])[0], ref["s2_out_eval"], RELATIVE)


def _write(folder: Path, header: object = None, weights: bytes | None = None) -> Path:
    folder.mkdir()
    if header is not None:
        (folder / CONFIG_FILE).write_text(header if isinstance(header, str) else json.dumps(header))
    if weights is not None:
        (folder / WEIGHTS_FILE).write_bytes(weights)
    return folder


def test_refusals_are_one_line_and_name_the_file_and_key(sr_folder, tmp_path):
    header = json.loads((sr_folder / CONFIG_FILE).read_text())
    weights = (sr_folder / WEIGHTS_FILE).read_bytes()
    import safetensors.torch

    partial = safetensors.torch.load_file(sr_folder / WEIGHTS_FILE)
    del partial["G.tail.1.bias"], partial["denoise.resmlp.0.weight"]
    cases = {
        "empty": (_write(tmp_path / "empty"), "empty has no config.json, so it is not a diffir model folder"),
        "future": (
            _write(tmp_path / "future", {**header, "version": 2}, weights),
            r"newer diffir \(model-file version 2",
        ),
        "unknown": (
            _write(tmp_path / "unknown", {**header, "version": "1.0"}, weights),
            "no valid model-file version",
        ),
        "other": (
            _write(tmp_path / "other", {"model_type": "bert"}, weights),
            r"not a diffir config \(format None",
        ),
        "json": (_write(tmp_path / "json", "{not json", weights), "config.json is not valid JSON"),
        "no weights": (_write(tmp_path / "noweights", header), "has config.json but no model.safetensors"),
        "damaged": (_write(tmp_path / "damaged", header, weights[:1000]), "model.safetensors is damaged"),
        "missing keys": (
            _write(tmp_path / "missing", header, safetensors.torch.save(partial)),
            r"2 missing \(G\.tail\.1\.bias, denoise\.resmlp\.0\.weight\) tensors",
        ),
    }
    for name, (folder, message) in cases.items():
        with pytest.raises(CheckpointError, match=message) as err:
            diffir.from_pretrained(folder)
        assert "\n" not in str(err.value), name
        with pytest.raises(CheckpointError, match=message):
            load_model(folder)
    with pytest.raises(CheckpointError, match="is a file"):
        diffir.save_pretrained(tiny("sr", 2, 4), sr_folder / CONFIG_FILE)
    with pytest.raises(CheckpointError, match=r"holds a model with task='sr'.*not task='deblur'"):
        diffir.from_pretrained(sr_folder, task="deblur")
    with pytest.raises(CheckpointError, match=r"checkpoint .*nowhere\.pth .* does not exist"):
        diffir.from_pretrained(tmp_path / "nowhere.pth")
