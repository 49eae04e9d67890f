"""onnxruntime as a backend: a graph written by ``python -m diffir.export`` restores images like the model.

``infer.py ckpt=model.onnx`` and ``eval.py ckpt=model.onnx`` load it through :func:`diffir.restorer.load_checkpoint`
(chosen by the ``.onnx`` suffix; the log says ``backend=onnxruntime``) and restore through
:func:`diffir.restoration.restore_image`, with the same seeded start vector as the PyTorch model
(:func:`diffir.restoration.start_noise` reads :attr:`OnnxModel.noise_dim`), so both give the same images.
The graph restores whole images: padding, the prior, masking and the composite are inside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

BACKEND = "onnxruntime"
OUTPUT = "restored"  # the graph's output; its inputs are graph_inputs()
# metadata_props of a graph (written by diffir.export): the config and the facts a runtime needs
META_CONFIG = "diffir.config"  # JSON: build_model's arguments
META_FACTS = ("scale", "size_multiple", "in_channels", "noise_dim", "parameters")  # as "diffir.<fact>"
META_VERSION = "diffir.version"


def graph_inputs(model: Any) -> list[str]:
    """The input names of ``model``'s graph (a DiffIRS2 or an :class:`OnnxModel`), in order: ``lq``, then
    ``noise`` (with a diffusion), then ``mask`` (inpainting)."""
    return ["lq", *(["noise"] if model.noise_dim else []), *(["mask"] if model.in_channels == 4 else [])]


def example_inputs(model: Any, batch: int = 1, size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """Seeded inputs of ``model``'s graph, in :func:`graph_inputs` order; ``size`` defaults to one that needs
    padding on both sides."""
    m = model.size_multiple
    h, w = size or (m + 3, m + 5)
    generator = torch.Generator().manual_seed(0)
    draw = {
        "lq": lambda: torch.rand(batch, 3, h, w, generator=generator),
        "noise": lambda: torch.randn(batch, model.noise_dim, generator=generator),
        "mask": lambda: (torch.rand(batch, 1, h, w, generator=generator) > 0.5).float(),
    }
    return [draw[name]() for name in graph_inputs(model)]


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ValueError("running an .onnx model needs onnxruntime: pip install 'diffir[export]'") from err
    return onnxruntime


class OnnxModel:
    """An exported DiffIR graph in an onnxruntime session, with what restoration needs to know of a model:
    ``scale``, ``size_multiple``, ``in_channels`` (4 for inpainting: the image and its mask), ``noise_dim``
    (None without a diffusion), ``config`` (``build_model``'s arguments) and ``parameters`` (their count).

    ``threads`` defaults to torch's (``torch.get_num_threads()``), so both backends use the same cores.
    """

    backend = BACKEND

    def __init__(
        self, path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None
    ):
        ort = _onnxruntime()
        self.path, self.device = Path(path), torch.device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    f"device={device} for {self.path}: this onnxruntime has no CUDA provider "
                    f"({', '.join(ort.get_available_providers())}); use device=cpu or install onnxruntime-gpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: not its notes on graph optimisation
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime's own error types; re-raised naming the file
            raise ValueError(f"cannot load {self.path} with onnxruntime: {str(err).strip()[:300]}") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_CONFIG not in meta:
            raise ValueError(
                f"{self.path} is not a diffir graph (no {META_CONFIG} metadata): write it with "
                "`python -m diffir.export <model> --format onnx --out <file>.onnx`"
            )
        self.config: dict[str, Any] = json.loads(meta[META_CONFIG])
        facts = {name: int(meta[f"diffir.{name}"]) for name in META_FACTS}
        self.scale, self.size_multiple = facts["scale"], facts["size_multiple"]
        self.in_channels, self.parameters = facts["in_channels"], facts["parameters"]
        self.noise_dim = facts["noise_dim"] or None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, task={self.config.get('task')}, scale={self.scale})"

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restore ``image`` (N, 3, H, W) in [0, 1] (any size): (N, 3, H·s, W·s) on the model's device.

        ``noise`` (N or 1, noise_dim) starts the reverse diffusion (:func:`~diffir.restoration.start_noise`);
        inpainting needs ``mask`` (N, 1, H, W), 1 = hole, and keeps the known pixels.
        """
        if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise ValueError(
                f"{self.path} takes an RGB float batch (N, 3, H, W) in [0, 1], got {tuple(image.shape)} "
                f"{image.dtype}"
            )
        if noise is not None:
            noise = noise.expand(image.shape[0], -1)  # one start vector for every image of the batch
        given = {"lq": image, "noise": noise, "mask": mask}
        for name in ("noise", "mask"):
            if (name in self.input_names) != (given[name] is not None):
                need = "needs" if name in self.input_names else "takes no"
                raise ValueError(f"{self.path} {need} {name}= (its inputs: {', '.join(self.input_names)})")
        feeds = {name: _numpy(given[name]) for name in self.input_names}
        (out,) = self.session.run([OUTPUT], feeds)
        return torch.from_numpy(out).to(self.device)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def compare_with_pytorch(
    graph: OnnxModel,
    model: Any,
    cases: tuple[tuple[int, tuple[int, int] | None], ...] = ((1, None), (2, None)),
) -> Iterator[tuple[int, tuple[int, int], float]]:
    """``(batch, (H, W), max |graph − model|)`` on seeded test inputs of each ``(batch, size)`` case (default:
    a size that needs padding); what ``python -m diffir.export`` prints after writing a graph."""
    from .restoration import restore_image

    for batch, size in cases:
        inputs = dict(zip(graph_inputs(model), example_inputs(model, batch, size), strict=True))
        want = restore_image(model.eval(), inputs["lq"], mask=inputs.get("mask"), noise=inputs.get("noise"))
        got = graph(inputs["lq"], mask=inputs.get("mask"), noise=inputs.get("noise"))
        yield batch, tuple(inputs["lq"].shape[-2:]), float((got - want).abs().max())
