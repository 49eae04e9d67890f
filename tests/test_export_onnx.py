"""ONNX export (``python -m diffir.export``) and onnxruntime as a backend: every task's graph gives PyTorch's
output at any size and batch, the official tiny models' graphs give the official outputs, and infer.py /
eval.py give the same images from a graph as from its checkpoint.

Exports take seconds, so each model is exported by one test only: under pytest-xdist the tests of a module
may run on several workers, and a module fixture shared by several tests would export on each.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import onnx
import pytest
import skimage.data
import torch
from numerics import assert_within_relative
from PIL import Image
from test_eval_infer import eval_cfg, infer_cfg
from test_official_parity import TINY_REFS, _model

import diffir
from diffir.checkpoint import atomic_save, model_record
from diffir.errors import UsageError
from diffir.export import export_onnx, main
from diffir.models import DiffIRS2
from diffir.onnx_runtime import META_CONFIG, OnnxModel, example_inputs, graph_inputs
from diffir.restoration import start_noise
from diffir.runs.evaluate import evaluate
from diffir.runs.infer import infer

pytestmark = pytest.mark.usefixtures("one_thread")

RELATIVE = 1e-4  # the promise: within 1e-4 of outputs of order 1 (measured: ~1e-7)
CONFIGS = [("sr", 4), ("sr", 2), ("sr", 1), ("deblur", 1), ("inpainting", 1)]
CONFIG_IDS = [f"{task}x{scale}" if task == "sr" else task for task, scale in CONFIGS]


def _tiny(task: str, scale: int) -> DiffIRS2:
    torch.manual_seed(0)
    return diffir.build_model(task, 2, scale, **diffir.model_preset(task, "tiny")).eval()


def _sizes(multiple: int) -> list[tuple[int, tuple[int, int]]]:
    """(batch, (H, W)): a multiple of the model's size multiple, and two sizes that are not (one thinner than
    the padding, so it is mirrored back and forth)."""
    return [(1, (multiple, 2 * multiple)), (2, (multiple + 3, multiple - 1)), (2, (2, 3 * multiple + 5))]


@pytest.mark.parametrize("config", CONFIGS[1:], ids=CONFIG_IDS[1:])  # SR x4: the command's graph, below
@pytest.mark.slow
def test_graph_restores_as_pytorch_at_any_size_and_batch(config, tmp_path):
    model = _tiny(*config)
    check_graph(model, OnnxModel(export_onnx(model, tmp_path / "model.onnx")))


def check_graph(model: DiffIRS2, graph: OnnxModel) -> None:
    """``graph`` passes the checker, describes ``model`` and restores as it does at three sizes, batch 1 and 2;
    inputs it does not take, or lacks, are refused."""
    proto = onnx.load(graph.path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    assert graph.config == model.config and graph.parameters == sum(p.numel() for p in model.parameters())
    assert (graph.scale, graph.size_multiple, graph.noise_dim) == (model.scale, model.size_multiple, 32)
    inpainting = model.in_channels == 4
    assert [i.name for i in proto.graph.input] == ["lq", "noise", "mask"][: 3 if inpainting else 2]
    assert [o.name for o in proto.graph.output] == ["restored"]
    lq_dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in lq_dims] == ["batch", 3, "height", "width"]
    assert not {n.op_type for n in proto.graph.node} & {"RandomNormal", "RandomNormalLike", "RandomUniform"}

    for batch, size in _sizes(model.size_multiple):
        inputs = example_inputs(model, batch, size)
        lq, mask = inputs[0], (inputs[-1] if inpainting else None)
        want = diffir.restore(model, lq, mask=mask, seed=3)  # one start vector for the batch, drawn from 3
        got = graph(lq, mask=mask, noise=start_noise(graph, 1, 3))
        assert got.shape == (batch, 3, size[0] * model.scale, size[1] * model.scale)
        assert_within_relative(got, want, RELATIVE, f"batch {batch}, {size}")
    with pytest.raises(ValueError, match="needs mask=" if inpainting else "takes no mask="):
        graph(lq, mask=None if inpainting else torch.zeros_like(lq[:, :1]), noise=start_noise(graph, 1, 3))
    with pytest.raises(ValueError, match="needs noise="):
        graph(lq, mask=mask)


@pytest.mark.parametrize("name", ["sr_x4", "inpainting"])  # deblur's layout: the tiny deblur graph above
@pytest.mark.slow
def test_official_tiny_graph_gives_the_official_output(name, tmp_path):
    """The exported official-layout model with the reference's start vector gives the official output (for
    inpainting the graph also keeps the known pixels: the official output composited with the image)."""
    cache: dict = {}
    ref_path = TINY_REFS / f"{name}.pt"
    model = _model(ref_path, 2, cache)
    ref = cache[ref_path]
    graph = OnnxModel(export_onnx(model, tmp_path / "official.onnx"))
    want = ref["s2_out_eval"]
    want = want[0] if isinstance(want, tuple | list) else want
    lq, mask = ref["lq"], None
    if lq.shape[1] == 4:
        lq, mask = lq[:, :3], lq[:, 3:]
        want = want * mask + lq * (1 - mask)
    assert_within_relative(graph(lq, mask=mask, noise=ref["s2_noise_eval"]), want, RELATIVE)


def test_models_without_a_deterministic_graph_are_refused(tmp_path):
    # (the no-diffusion ablation is exportable: its graph has no noise input; checked by hand, not exported here)
    regression = diffir.build_model("deblur", 2, diffusion=False, **diffir.model_preset("deblur", "tiny"))
    assert graph_inputs(regression) == ["lq"] and start_noise(regression, 1, 0) is None
    stage1 = diffir.build_model("sr", 1, 4, **diffir.model_preset("sr", "tiny"))
    with pytest.raises(ValueError, match="stage-1"):
        export_onnx(stage1, tmp_path / "s1.onnx")
    noisy = diffir.build_model("sr", 2, 4, reverse_noise=True, **diffir.model_preset("sr", "tiny"))
    with pytest.raises(ValueError, match="reverse_noise"):
        export_onnx(noisy, tmp_path / "noisy.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_file_through_the_command_infer_and_eval(tmp_path, caplog):
    """What a user does: export a model file with the command, then run infer.py and eval.py on the graph.

    Same seed, same start vector: the PNGs are those of the PyTorch model up to one gray level (float32 sums in
    another order move values by ~1e-7, which flips the rounding of a value at an exact half level).
    """
    model = _tiny("sr", 4)
    ckpt, path = tmp_path / "sr_x4.pt", tmp_path / "sr_x4.onnx"
    atomic_save(model_record(model.config, model.state_dict()), ckpt)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        main([str(ckpt), "--format", "onnx", "--out", str(path)])
    check_graph(model, OnnxModel(path))
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith(f"wrote {path} (")
    checks = [line for line in lines if line.startswith("onnxruntime vs PyTorch")]
    assert len(checks) == 2 and all(float(line.rsplit("= ", 1)[1]) < 1e-5 for line in checks), lines
    with pytest.raises(SystemExit, match="suffix"):
        main([str(ckpt), "--out", str(tmp_path / "model.bin")])

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.astronaut()[40:77, 180:226]).save(photos / "astronaut.png")  # 37x46: padded
    Image.fromarray(skimage.data.coffee()[120:152, 200:248]).save(photos / "coffee.png")  # 32x48: a multiple
    outputs = {}
    for name, source in (("pytorch", ckpt), ("onnx", path)):
        with caplog.at_level(logging.INFO, logger="diffir"):
            infer(infer_cfg(f"ckpt={source}", f"input={photos}", f"output={tmp_path / name}", "seed=5"))
        outputs[name] = {p.name: np.asarray(Image.open(p), np.int16) for p in (tmp_path / name).iterdir()}
    assert "backend=onnxruntime" in caplog.text and "backend=pytorch" in caplog.text
    assert sorted(outputs["onnx"]) == ["astronaut.png", "coffee.png"]
    for name, image in outputs["pytorch"].items():
        assert image.shape == outputs["onnx"][name].shape == (image.shape[0], image.shape[1], 3)
        assert np.abs(image - outputs["onnx"][name]).max() <= 1, name
    with pytest.raises(UsageError, match="whole images"):
        infer(
            infer_cfg(
                f"ckpt={path}", f"input={photos}", f"output={tmp_path / 't'}", "tile=16", "tile_overlap=4"
            )
        )

    results = evaluate(
        eval_cfg(
            f"ckpt=[{ckpt},{path}]",
            "data=folder",
            f"data.root={photos}",
            f"output_dir={tmp_path / 'eval'}",
            "metrics=[psnr,ssim]",
            "grids=0",
        )
    )
    assert results["methods"] == ["sr_x4.pt", "sr_x4.onnx (onnxruntime)"]
    torch_run, onnx_run = (results["datasets"]["folder"][m] for m in results["methods"])
    assert onnx_run["params"] == torch_run["params"] and onnx_run["macs"] is None  # torch cannot count them
    assert "| sr_x4.onnx (onnxruntime) |" in (tmp_path / "eval" / "metrics.md").read_text()
    for metric in ("psnr", "ssim"):  # of 8-bit outputs: equal up to a rare one-level rounding flip
        assert onnx_run["mean"][metric] == pytest.approx(torch_run["mean"][metric], rel=1e-3)

    bare = tmp_path / "bare.onnx"  # a graph without diffir's metadata: not one of ours
    proto = onnx.load(path)
    del proto.metadata_props[:]
    onnx.save(proto, bare)
    with pytest.raises(ValueError, match=META_CONFIG):
        OnnxModel(bare)
