"""Parity checks of the discriminators and the perceptual / GAN / LaMa losses against the official vectors.

Every size, configuration and seed is read from the reference file; tolerances are the reference README's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from numerics import float32_tolerance
from torch import nn

from diffir.losses import FeatureMatchingLoss, GANLoss, NonSaturatingWithR1, PerceptualLoss
from diffir.models import NLayerDiscriminator, UNetDiscriminatorSN

# README "Recommended tolerances": (rtol, atol) per kind, for values of order 1; ``close`` scales atol by the
# reference's magnitude where it exceeds 1 (an NLayer logit of ~3 carries 3x the rounding of one of ~1).
TOL = {
    "unet_discriminator_sn": (1e-4, 1e-5),
    "nlayer_discriminator": (1e-4, 1e-5),
    "perceptual_loss": (1e-4, 1e-6),
    "gan_loss_vanilla": (0.0, 1e-6),
    "lama_adversarial": (1e-4, 1e-5),
}


def close(
    actual: torch.Tensor, expected: torch.Tensor, ref: dict, field: str, tol: tuple | None = None
) -> None:
    """``assert_close`` with the kind's tolerance (atol scaled by max(1, max |expected|)) and a message naming
    the case and the field."""
    rtol, atol = tol or TOL[ref["kind"]]
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    magnitude = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(
        actual.detach(),
        expected,
        rtol=rtol,
        atol=atol * magnitude,
        msg=lambda m: f"{ref['case']}: {field}: {m}",
    )


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_unet_discriminator_sn(ref: dict) -> None:
    """Eval output (stored u, v), sigma, then one train-mode forward (a power iteration) and its buffers."""
    disc = UNetDiscriminatorSN(**ref["args"])
    disc.load_state_dict(ref["state_dict"], strict=True)
    assert num_params(disc) == ref["num_params"], f"{ref['case']}: num_params {num_params(disc)}"
    disc.eval()
    with torch.no_grad():
        close(disc(ref["input"]), ref["output_eval"], ref, "output_eval")
        for name, sigma in ref["sigma_eval"].items():
            conv = getattr(disc, name)
            weight = conv.weight_orig.flatten(1)
            close(torch.dot(conv.weight_u, weight @ conv.weight_v), sigma, ref, f"sigma_eval.{name}")
        disc.train()
        close(disc(ref["input"]), ref["output_train_one_step"], ref, "output_train_one_step")
    state = disc.state_dict()
    for key, value in ref["sn_buffers_after_train_step"].items():
        close(state[key], value, ref, f"sn_buffers_after_train_step.{key}")


def check_nlayer_discriminator(ref: dict) -> None:
    """Eval-mode logits and features, then a train-mode forward (batch statistics) and the BN buffers."""
    args = dict(ref["args"])
    norm = args.pop("norm_layer", "BatchNorm2d")
    assert norm == "BatchNorm2d", f"{ref['case']}: norm_layer {norm!r} is not built here"
    disc = NLayerDiscriminator(**args)
    disc.load_state_dict(ref["state_dict"], strict=True)
    assert num_params(disc) == ref["num_params"], f"{ref['case']}: num_params {num_params(disc)}"
    assert ref["bn_mode"] == "eval", f"{ref['case']}: unexpected bn_mode {ref['bn_mode']!r}"
    for mode, suffix in ((False, ""), (True, "_train_mode")):
        disc.train(mode)
        with torch.no_grad():
            logits, features = disc(ref["input"])
        close(logits, ref[f"output{suffix}"], ref, f"output{suffix}")
        assert len(features) == len(ref[f"features{suffix}"]), f"{ref['case']}: {len(features)} feature maps"
        for i, (ours, theirs) in enumerate(zip(features, ref[f"features{suffix}"], strict=True)):
            close(ours, theirs, ref, f"features{suffix}[{i}]")
    state = disc.state_dict()
    for key, value in ref["bn_buffers_after_train_forward"].items():
        if key.endswith("num_batches_tracked"):
            assert int(state[key]) == int(value), (
                f"{ref['case']}: {key} = {int(state[key])}, expected {int(value)}"
            )
        else:
            close(state[key], value, ref, f"bn_buffers_after_train_forward.{key}")


def vgg_weights_from_seed(seed: int, convs: list[nn.Conv2d]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The README's seeded VGG weights, drawn in conv order (its channel list is our VGG19's)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for conv in convs:
        cout, cin = conv.out_channels, conv.in_channels
        w = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(2.0 / (cout * 9))
        b = (torch.rand(cout, generator=g) - 0.5) * 0.1
        out.append((w, b))
    return out


def check_perceptual_loss(ref: dict) -> None:
    """Rebuild the seeded VGG (checked against the stored checksums), then per-layer distances and loss."""
    init = ref["vgg_init"]
    assert init["procedure"] == "vgg_weights_from_seed", (
        f"{ref['case']}: unknown vgg_init {init['procedure']!r}"
    )
    loss = PerceptualLoss(**ref["args"], pretrained=False)
    features = loss.vgg.features
    conv_indices = [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]
    ref_indices = sorted({int(key.split(".")[1]) for key in ref["vgg_layer_checksums"]})
    assert conv_indices == ref_indices[: len(conv_indices)], f"{ref['case']}: conv positions {conv_indices}"
    assert loss.vgg.names == ref["vgg_layer_names"][: len(loss.vgg.names)], f"{ref['case']}: layer names"
    with torch.no_grad():
        for i, (w, b) in zip(
            conv_indices,
            vgg_weights_from_seed(init["seed"], [features[i] for i in conv_indices]),
            strict=True,
        ):
            features[i].weight.copy_(w)
            features[i].bias.copy_(b)
            for name, tensor in (("weight", w), ("bias", b)):
                checksum = ref["vgg_layer_checksums"][f"features.{i}.{name}"]
                # torch.randn's Box-Muller (log, sqrt, cos) differs by a few ulps between CPUs with and
                # without AVX2, so each weight may move by ~8 eps of itself: the sum by 8 eps of sum |w|
                slack = float32_tolerance(8, float(tensor.double().abs().sum()))
                close(
                    tensor.double().sum(),
                    checksum,
                    ref,
                    f"vgg_layer_checksums.features.{i}.{name}",
                    (0.0, slack),
                )
    close(loss.vgg.mean.flatten(), ref["input_norm_mean"], ref, "input_norm_mean")
    close(loss.vgg.std.flatten(), ref["input_norm_std"], ref, "input_norm_std")

    with torch.no_grad():
        x_features, gt_features = loss.vgg(ref["x"]), loss.vgg(ref["gt"])
        for name in ref["per_layer"]:
            close(x_features[name], ref["x_features"][name], ref, f"x_features.{name}", (1e-4, 1e-5))
            close(gt_features[name], ref["gt_features"][name], ref, f"gt_features.{name}", (1e-4, 1e-5))
            close(
                loss.distance(x_features[name], gt_features[name]),
                ref["per_layer"][name],
                ref,
                f"per_layer.{name}",
            )
        percep, style = loss.terms(ref["x"], ref["gt"])
    if ref["loss"] is None:  # BasicSR returns None for a term whose weight is 0
        assert percep is None, f"{ref['case']}: a perceptual loss was computed with perceptual_weight 0"
    else:
        close(percep, ref["loss"], ref, "loss")
    if ref["style_loss_is_none"]:
        assert style is None, f"{ref['case']}: a style loss was computed with style_weight 0"
    else:
        close(style, ref["style_loss"], ref, "style_loss")


def check_gan_loss_vanilla(ref: dict) -> None:
    """Each ``target_{real,fake}_{disc,gen}`` value of BasicSR's GANLoss on the stored logits."""
    gan = GANLoss(**ref["args"])
    for key, value in ref["losses"].items():
        _, target, role = key.split("_")
        close(gan(ref["pred"], target == "real", is_disc=role == "disc"), value, ref, f"losses.{key}")


class TinyDisc(nn.Module):
    """The reference file's fixed discriminator (``disc_description``): two 4×4/2 convs, a 3×3 logit conv."""

    def __init__(self, in_ch: int, c1: int, c2: int) -> None:
        super().__init__()
        self.model0 = nn.Sequential(nn.Conv2d(in_ch, c1, 4, 2, 2), nn.LeakyReLU(0.2))
        self.model1 = nn.Sequential(nn.Conv2d(c1, c2, 4, 2, 2), nn.LeakyReLU(0.2))
        self.model2 = nn.Sequential(nn.Conv2d(c2, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        f0 = self.model0(x)
        f1 = self.model1(f0)
        return self.model2(f1), [f0, f1]


def check_lama_adversarial(ref: dict) -> None:
    """LaMa's generator step (NS loss, feature matching, their input gradients) and discriminator step
    (mask resizing, R1 through ``create_graph``, the loss terms and the parameter gradients)."""
    config = dict(ref["adversarial_config"])
    assert config.pop("kind") == "r1", f"{ref['case']}: only the r1 adversarial loss is built"
    adversarial = NonSaturatingWithR1(**config)
    fm_config = ref["feature_matching_config"]
    feature_matching = FeatureMatchingLoss(weight=fm_config["weight"])
    disc = TinyDisc(**ref["disc_args"])
    disc.load_state_dict(ref["disc_state_dict"], strict=True)
    mask = ref["mask"]

    # generator step
    fake = ref["fake"].clone().requires_grad_(True)
    real_pred, real_features = disc(ref["real"])
    fake_pred, fake_features = disc(fake)
    close(real_pred, ref["discr_real_pred"], ref, "discr_real_pred")
    close(fake_pred, ref["discr_fake_pred"], ref, "discr_fake_pred")
    for field, ours in (("features_real", real_features), ("features_fake", fake_features)):
        for i, (a, b) in enumerate(zip(ours, ref[field], strict=True)):
            close(a, b, ref, f"{field}[{i}]")
    gen_loss = adversarial.generator_loss(fake_pred, mask)
    fm_loss = feature_matching(fake_features, real_features, mask if fm_config.get("pass_mask") else None)
    close(gen_loss, ref["gen_loss"], ref, "gen_loss")
    close(fm_loss, ref["fm_loss"], ref, "fm_loss")
    close(gen_loss + fm_loss, ref["gen_total"], ref, "gen_total")
    (grad_gen,) = torch.autograd.grad(gen_loss, fake, retain_graph=True)
    (grad_fm,) = torch.autograd.grad(fm_loss, fake)
    close(grad_gen, ref["grad_gen_loss_wrt_fake"], ref, "grad_gen_loss_wrt_fake")
    close(grad_fm, ref["grad_fm_loss_wrt_fake"], ref, "grad_fm_loss_wrt_fake")

    # discriminator step
    real = ref["real"].clone().requires_grad_(True)
    real_pred, _ = disc(real)
    fake_pred, _ = disc(ref["fake"])
    close(
        adversarial.interpolate_mask(mask, fake_pred.shape[-2:]),
        ref["mask_interpolated"],
        ref,
        "mask_interpolated",
    )
    (grad_real,) = torch.autograd.grad(real_pred.sum(), real, retain_graph=True)
    close(grad_real, ref["grad_real"], ref, "grad_real")
    terms = adversarial.discriminator_loss(real, real_pred, fake_pred, mask)
    close(terms["r1_raw"], ref["r1_penalty_raw"], ref, "r1_penalty_raw")
    close(terms["r1"], ref["grad_penalty"], ref, "grad_penalty")
    close(terms["real"], ref["disc_real_term"], ref, "disc_real_term")
    close(terms["fake"], ref["disc_fake_term"], ref, "disc_fake_term")
    close(terms["total"], ref["disc_loss"], ref, "disc_loss")
    disc.zero_grad()
    terms["total"].backward()
    for name, param in disc.named_parameters():
        close(param.grad, ref["disc_loss_param_grads"][name], ref, f"disc_loss_param_grads.{name}")


CHECKS: dict[str, Callable[[dict], None]] = {
    "unet_discriminator_sn": check_unet_discriminator_sn,
    "nlayer_discriminator": check_nlayer_discriminator,
    "perceptual_loss": check_perceptual_loss,
    "gan_loss_vanilla": check_gan_loss_vanilla,
    "lama_adversarial": check_lama_adversarial,
}
