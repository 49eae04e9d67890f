"""``python -m diffir.summary``: parameters and MACs per component, counted, not estimated."""

from __future__ import annotations

import json

import pytest
import torch

from diffir.model_config import build_from_config, model_config, model_preset
from diffir.models import SRHead
from diffir.summary import example_inputs, format_table, main, summarize


@pytest.fixture(scope="module")
def stage2_tiny():
    return build_from_config(model_config("sr", 2, 4, model_preset("sr", "tiny"), {"enabled": True})).eval()


def test_components_add_up_to_the_model(stage2_tiny):
    summary = summarize(stage2_tiny, example_inputs(stage2_tiny, "sr", 4, 32))
    parts = summary["components"]
    assert set(parts) == {"G", "condition", "denoise"}  # the diffusion schedule holds no weights
    for name, part in parts.items():
        assert part["params"] == sum(p.numel() for p in getattr(stage2_tiny, name).parameters())
    assert sum(p["params"] for p in parts.values()) == summary["params"]
    assert sum(p["macs"] for p in parts.values()) == summary["macs"] > 0


def test_the_image_parts_scale_with_the_pixels_and_the_denoiser_does_not(stage2_tiny):
    """DiffIR's point: the diffusion runs on one 256-d vector, whatever the image size. DIRformer's MACs are
    ``a·pixels + b`` (b: the per-image IPR modulation), so quadrupling the pixels quadruples the increments."""
    parts = [
        summarize(stage2_tiny, example_inputs(stage2_tiny, "sr", 4, s))["components"] for s in (32, 64, 128)
    ]
    g = [p["G"]["macs"] for p in parts]
    assert g[2] - g[1] == 4 * (g[1] - g[0]) and g[0] < g[1] < g[2]
    assert parts[0]["denoise"]["macs"] == parts[2]["denoise"]["macs"] > 0


def test_macs_of_a_known_layer_are_exact():
    """A 3x3 convolution 3->8 channels on 16x16: 8·3·9·256 MACs; a Linear 256->64 on one vector: 256·64."""
    conv, linear = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Linear(256, 64, bias=False)

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.G, self.denoise = conv, linear

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.G(x).mean() + self.denoise(torch.zeros(1, 256)).mean()

    summary = summarize(Toy(), (torch.rand(1, 3, 16, 16),))
    assert summary["components"]["G"] == {"params": 8 * 3 * 9, "macs": 8 * 3 * 9 * 256}
    assert summary["components"]["denoise"] == {"params": 256 * 64, "macs": 256 * 64}
    table = format_table(summary, "toy")
    assert "DIRformer (G)" in table and f"{8 * 3 * 9 * 256:,}" in table


def test_sr_head_macs_official_and_executed_are_exact():
    """The SR head (conv n→4n, shuffle, conv n→4n, shuffle, conv n→3) counted layer by layer, and as diffir runs
    it: the first conv, composing the kernel, the 5×5 conv to 3×4 phases, and the two layers on the four 2-pixel
    strips."""
    n, h, w = 4, 3, 5

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.G = SRHead(n, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.G(x)

    def inner_then_last(rows: int, cols: int) -> int:  # on a rows×cols map of the first shuffle's output
        return rows * cols * n * 4 * n * 9 + 4 * rows * cols * n * 3 * 9

    first = h * w * n * 4 * n * 9
    official = first + inner_then_last(2 * h, 2 * w)
    strips = 2 * inner_then_last(2, 2 * w) + 2 * inner_then_last(2 * h, 2)
    composing = 3 * 9 * n * (4 * n * 9 + 4)  # the outer taps times the inner weights and biases, per call
    executed = first + composing + 4 * h * w * 12 * n * 25 + strips
    x = (torch.rand(1, n, h, w),)
    assert summarize(Toy(), x)["components"]["G"]["macs"] == official
    assert summarize(Toy(), x, layer_by_layer=False)["components"]["G"]["macs"] == executed


def test_the_command_prints_a_table_and_a_json_line(capsys):
    result = main(["task=deblur", "stage=1", "model=tiny", "input_size=32"])
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(result))
    assert result["input_size"] == [32, 32] and set(result["components"]) == {"G", "E"}
    assert out[0].startswith("DiffIR stage 1 | task=deblur")
