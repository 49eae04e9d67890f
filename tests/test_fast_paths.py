"""Every optimised path computes the default function: channels-last vs NCHW, activation checkpointing on vs
off, the composed SR head vs layer by layer, and the official-order reference model (diffir.models.reference,
the speed baseline) vs ours, outputs and gradients."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from numerics import assert_float32_close, assert_within_relative, float32_tolerance

from diffir.lit.optim import build_optimizer
from diffir.model_config import model_preset
from diffir.models import (
    CPEN,
    DMTA,
    DIRformer,
    SRHead,
    build_model,
    reference_model,
    set_channels_last,
    set_checkpointing,
    set_composed,
)
from diffir.models.blocks import LayerNorm
from diffir.models.ops import Conv1x1, conv1x1
from diffir.models.reference import layer_norm as reference_layer_norm
from diffir.summary import summarize

TASK_SCALES = [("sr", 4), ("sr", 2), ("deblur", 1), ("inpainting", 1)]
# The widest reduction of the tiny models' forward: a 3×3 conv over 8·dim = 64 channels (the attentions sum
# over at most h·w = 512 pixels); measured ≤ 3.9 ε·M on outputs and priors, AVX2 and default alike.
FORWARD_TERMS = 9 * 64


def tiny(task: str, stage: int, scale: int, **kwargs):
    torch.manual_seed(0)
    preset = model_preset(task, "tiny")
    return build_model(task, stage, scale, **{**preset, **kwargs})


def stage2_loss(model, task: str, scale: int, seed: int = 1):
    """Output, prior chain and gradients of one stage-2 training forward/backward (L1 + prior L1)."""
    generator = torch.Generator().manual_seed(seed)
    m = model.size_multiple
    lq = torch.rand(2, 4 if task == "inpainting" else 3, m, 2 * m, generator=generator)
    gt = torch.rand(2, 3, m * scale, 2 * m * scale, generator=generator)
    z, noise = (
        torch.rand(2, model.condition.ipr_dim, generator=generator),
        torch.randn(2, 32, generator=generator),
    )
    model.zero_grad(set_to_none=True)
    out, chain = model(lq, z_teacher=z, noise=noise)
    (torch.nn.functional.l1_loss(out, gt) + torch.nn.functional.l1_loss(chain[-1], z)).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return out.detach(), chain[-1].detach(), grads


def assert_same(a, b) -> None:
    out_a, z_a, grads_a = a
    out_b, z_b, grads_b = b
    assert_float32_close(out_a, out_b, terms=FORWARD_TERMS)
    assert_float32_close(z_a, z_b, terms=FORWARD_TERMS)
    assert grads_a.keys() == grads_b.keys()
    # Weight gradients sum over the batch's output pixels (B·H·W, the last conv's), and their summands are of
    # the model's gradient magnitude: a gradient that cancels to ~1e-7 (the attention at a 1×2 latent) still
    # carries their rounding, so every gradient gets the model's. Measured ≤ 18 ε·M (AVX2 and default).
    pixels = out_b.shape[0] * out_b.shape[-2] * out_b.shape[-1]
    magnitude = max(float(g.abs().max()) for g in grads_b.values())
    for name in grads_a:
        torch.testing.assert_close(
            grads_a[name],
            grads_b[name],
            atol=float32_tolerance(pixels, magnitude),
            rtol=0,
            msg=lambda m, n=name: f"{n}: {m}",
        )


def test_models_are_channels_last_by_default_and_switchable():
    model = tiny("sr", 2, 4)
    assert all(m.channels_last for m in model.modules() if isinstance(m, DIRformer | CPEN))
    assert model.G.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    set_channels_last(model, False)
    assert not any(m.channels_last for m in model.modules() if isinstance(m, DIRformer | CPEN))
    assert model.G.patch_embed.proj.weight.is_contiguous()
    out, _ = model(torch.rand(1, 3, 8, 8))
    assert out.is_contiguous()


@pytest.mark.parametrize("task,scale", TASK_SCALES)
def test_channels_last_equals_nchw(task, scale):
    fast = tiny(task, 2, scale)
    nchw = set_channels_last(copy.deepcopy(fast), False)
    assert_same(stage2_loss(fast, task, scale), stage2_loss(nchw, task, scale))


@pytest.mark.parametrize("task,scale", TASK_SCALES)
def test_activation_checkpointing_equals_default(task, scale):
    default = tiny(task, 2, scale)
    checkpointed = set_checkpointing(copy.deepcopy(default), True)
    calls = []
    checkpointed.G.encoder_level1[0].register_forward_pre_hook(lambda *_: calls.append(1))
    assert_same(stage2_loss(default, task, scale), stage2_loss(checkpointed, task, scale))
    assert len(calls) == 2, "a checkpointed block runs again in backward"


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("task,scale", TASK_SCALES)
def test_composed_head_and_attention_equal_layer_by_layer(task, scale, bias):
    """The SR head and the attention's output projection composed (default) vs layer by layer."""
    composed = tiny(task, 2, scale, bias=bias)
    assert all(m.composed for m in composed.modules() if isinstance(m, SRHead | DMTA))
    layered = set_composed(copy.deepcopy(composed), False)
    assert not any(m.composed for m in layered.modules() if isinstance(m, SRHead | DMTA))
    assert_same(stage2_loss(composed, task, scale), stage2_loss(layered, task, scale))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(2, 6, 3, 5), (1, 6, 1, 4), (1, 6, 2, 2)])
def test_composed_sr_head_is_exact_at_every_pixel(shape, channels_last):
    """Against conv → shuffle → conv → shuffle → conv with random biases: every pixel (the border ring, computed
    apart, included; maps down to one pixel wide) and the gradients of the input and of every weight."""
    torch.manual_seed(0)
    head = SRHead(shape[1], 3)
    with torch.no_grad():
        for conv in (head[0][0], head[0][2], head[1]):
            conv.bias.normal_()
    x = torch.randn(shape)
    if channels_last:
        head, x = head.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = head(x)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, *head.parameters()], grad)
    head.composed = False
    ref = head(x)
    want = torch.autograd.grad(ref, [x, *head.parameters()], grad)
    assert out.shape == ref.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
    # the composed 5×5 conv sums 25·C terms per output (measured ≤ 6.4 ε·M); the weight gradients sum over
    # the output's B·4h·4w ≤ 480 pixels (measured ≤ 6.3 ε·M, AVX2 and default)
    assert_float32_close(out, ref, terms=25 * shape[1])
    for g, w in zip(got, want, strict=True):
        assert_float32_close(g, w, terms=shape[0] * 16 * shape[2] * shape[3])


def test_composed_sr_head_runs_under_bf16_autocast():
    torch.manual_seed(0)
    head, x = SRHead(6, 3), torch.rand(1, 6, 4, 5)
    with torch.autocast("cpu", torch.bfloat16):
        out = head(x)
    head.composed = False
    # three bf16 convolutions round their inputs and outputs to 8 bits (ε = 2⁻⁷): within 4ε of the float32
    # head, relative to its outputs (measured 0.3%)
    assert_within_relative(out.float(), head(x), 4 * torch.finfo(torch.bfloat16).eps)


def test_mac_count_is_the_official_one_unless_asked_for_the_executed_one():
    """``summarize`` counts the SR head layer by layer (the paper's MACs) and leaves the model composed;
    ``layer_by_layer=False`` counts what runs, fewer MACs."""
    model = tiny("sr", 2, 4).eval()
    lq = (torch.rand(1, 3, 16, 16),)
    official = summarize(model, lq)["components"]["G"]["macs"]
    assert model.G.tail.composed
    layered = set_composed(copy.deepcopy(model), False)
    assert official == summarize(layered, lq, layer_by_layer=False)["components"]["G"]["macs"]
    assert summarize(model, lq, layer_by_layer=False)["components"]["G"]["macs"] < official


@pytest.mark.parametrize("layer_norm", ["BiasFree", "WithBias"])
@pytest.mark.parametrize("task,scale", TASK_SCALES)
def test_reference_model_equals_ours(task, scale, layer_norm):
    """The speed baseline is honest: the same function on the same weights (both LayerNorm flavours)."""
    ours = tiny(task, 2, scale, LayerNorm_type=layer_norm, bias=layer_norm == "WithBias")
    with torch.no_grad():  # LayerNorm affines and temperatures away from their 1 / 0 initialisation, so that
        for name, param in ours.named_parameters():  # folding the LayerNorm affine into the modulation counts
            if ".norm" in name or name.endswith("temperature"):
                param.copy_(torch.randn_like(param))
    official = reference_model(ours)
    assert official.state_dict().keys() == ours.state_dict().keys()
    assert not official.G.channels_last
    assert not any(m.composed for m in official.modules() if isinstance(m, SRHead | DMTA))
    assert_same(stage2_loss(ours, task, scale), stage2_loss(official, task, scale))


def test_reference_model_matches_stage1_too():
    ours = tiny("sr", 1, 4)
    official = reference_model(ours)
    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert_float32_close(ours(lq, gt)[0], official(lq, gt)[0], terms=FORWARD_TERMS)


@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_conv_fast_path_equals_conv2d(bias):
    """The channels-last oneDNN 1×1 path and its hand-written backward against ``F.conv2d``."""
    torch.manual_seed(0)
    conv = Conv1x1(6, 10, bias)
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.detach().contiguous().requires_grad_()
    out, ref = conv(x), torch.nn.functional.conv2d(x_ref, conv.weight, conv.bias)
    assert out.grad_fn is not None and "ChannelsLastConv1x1" in type(out.grad_fn).__name__
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, [x, *conv.parameters()], grad)
    want = torch.autograd.grad(ref, [x_ref, *conv.parameters()], grad)
    assert_float32_close(out, ref, terms=6)  # a 1×1 conv sums the 6 input channels (measured ≤ 0.75 ε·M)
    for g, w in zip(got, want, strict=True):  # the weight and bias gradients sum over the 2·5·7 = 70 pixels,
        assert_float32_close(g, w, terms=70)  # the input's over 10 channels (measured ≤ 2.8 ε·M)
    # NCHW inputs take nn.Conv2d's path
    assert "ChannelsLast" not in type(conv1x1(x_ref, conv.weight).grad_fn).__name__


def test_mac_count_sees_the_direct_onednn_calls():
    """``diffir.summary`` counts the same MACs whatever the memory format (the 1×1 fast path included)."""
    model = tiny("sr", 2, 4).eval()
    lq = (torch.rand(1, 3, 16, 16),)
    fast = summarize(model, lq)["components"]["G"]["macs"]
    assert fast > 0 and fast == summarize(set_channels_last(model, False), lq)["components"]["G"]["macs"]


def test_training_builds_fused_adam_unless_the_config_chooses():
    """Adam/AdamW from the config run torch's fused kernel; an explicit ``foreach``/``fused`` or another
    optimiser is left as configured."""
    params = [torch.nn.Parameter(torch.randn(3, 2))]
    build = build_optimizer
    for optimizer in (torch.optim.Adam, torch.optim.AdamW):
        assert build(functools.partial(optimizer, lr=1e-3), params).defaults["fused"] is True
    assert not build(functools.partial(torch.optim.Adam, foreach=True), params).defaults["fused"]
    assert not build(functools.partial(torch.optim.SGD, lr=0.1), params).defaults["fused"]


@pytest.mark.parametrize("layer_norm", ["BiasFree", "WithBias"])
def test_layer_norm_module_and_its_folded_form_equal_the_official_layer_norm(layer_norm):
    """``LayerNorm(x)`` and ``normalize(x)·w + b`` (what the modulation folds) are the official LayerNorm."""
    torch.manual_seed(0)
    norm = LayerNorm(6, layer_norm)
    with torch.no_grad():
        for param in norm.parameters():
            param.copy_(torch.randn_like(param))
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last) * 3 + 1
    want = reference_layer_norm(norm, x)
    # the mean and the variance each sum the 6 channels, whose errors the affine scales by |x - μ|/σ ≲ 2 here:
    # 2·2·6 terms (measured ≤ 1.7 ε·M)
    assert_float32_close(norm(x), want, terms=24)
    bias = norm.body.bias if norm.body.bias is not None else torch.zeros(6)
    folded = norm.normalize(x) * norm.body.weight.view(-1, 1, 1) + bias.view(-1, 1, 1)
    assert_float32_close(folded, want, terms=24)
