"""Discriminators and the perceptual / adversarial / ResNetPL losses: official key names and sizes, weight
loading from the torch cache (and its one-line errors), the random-weight opt-outs, and the semantics the
parity vectors do not pin (other GAN types, style loss, masks, ResNetPL against an independent encoder).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED, shared_path
from numerics import EPS32, assert_float32_close, float32_tolerance
from torch import nn

from diffir.losses import (
    FeatureMatchingLoss,
    GANLoss,
    NonSaturatingWithR1,
    PerceptualLoss,
    PixelLoss,
    PriorLoss,
    ResNetPL,
    feature_matching_loss,
    prior_kl,
)
from diffir.losses.resnet_pl import ADE20K_ENCODER, ade20k_to_timm, encoder_features, resnet50dilated
from diffir.metrics import MissingWeightsError
from diffir.models import NLayerDiscriminator, UNetDiscriminatorSN


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread avoids thread barriers on the shared CPU."""


def test_existing_losses_still_import_from_the_package():
    assert PixelLoss()(out=torch.ones(1, 3, 2, 2), gt=torch.zeros(1, 3, 2, 2)).item() == 1.0
    z = torch.randn(2, 8)
    assert PriorLoss()(z_hat=z, z=z).item() == 0.0
    # log(softmax) against log_softmax: 8 terms p·(log p − log q) of magnitude ≤ 1 per row (measured ≤ 1 ε)
    assert prior_kl(z, z).abs().item() < float32_tolerance(z.shape[1], 1.0)


# ---------------------------------------------------------------------------------------------------------
# Discriminators


def official_unet_keys(num_convs: int = 10) -> set[str]:
    keys = {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"}
    return keys | {f"conv{k}.weight_{s}" for k in range(1, num_convs - 1) for s in ("orig", "u", "v")}


def test_unet_discriminator_paper_size_has_the_official_keys_and_parameter_count():
    disc = UNetDiscriminatorSN(num_in_ch=3, num_feat=64, skip_connection=True)
    assert set(disc.state_dict()) == official_unet_keys()
    # conv0 1 792 + SN convs (131 072 + 524 288 + 2 097 152 + 1 179 648 + 294 912 + 73 728 + 2·36 864) + conv9 577
    assert sum(p.numel() for p in disc.parameters()) == 4_376_897


@pytest.mark.parametrize("skip", [True, False])
def test_unet_discriminator_gives_per_pixel_logits_and_normalises_its_spectrum(skip):
    torch.manual_seed(0)
    disc = UNetDiscriminatorSN(num_feat=8, skip_connection=skip)
    x = torch.rand(2, 3, 16, 24)
    u0 = disc.conv1.weight_u.clone()
    disc.eval()
    assert disc(x).shape == (2, 1, 16, 24)
    assert torch.equal(disc.conv1.weight_u, u0), "eval mode must not run power iterations"
    disc.train()
    with torch.no_grad():
        for _ in range(30):
            disc(x)
    assert not torch.equal(disc.conv1.weight_u, u0)
    for k in range(1, 9):
        weight = getattr(disc, f"conv{k}").weight.flatten(1)
        assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=2e-2)


def test_unet_discriminator_rejects_sizes_not_divisible_by_8():
    with pytest.raises(ValueError, match="divisible by 8"):
        UNetDiscriminatorSN(num_feat=4)(torch.rand(1, 3, 20, 16))


def test_nlayer_discriminator_paper_size_keys_shapes_and_features():
    disc = NLayerDiscriminator(input_nc=3, ndf=64, n_layers=4)
    keys = set(disc.state_dict())
    assert {f"model{n}.0.weight" for n in range(6)} <= keys and "model5.1.weight" not in keys
    assert {f"model{n}.1.running_var" for n in range(1, 5)} <= keys and "model0.1.weight" not in keys
    assert disc.model4[0].stride == (1, 1) and disc.model3[0].stride == (2, 2)
    # 3 136 + 131 456 + 525 056 + 2 098 688 + 4 195 840 + 8 193 (convs with bias, BN affine)
    assert sum(p.numel() for p in disc.parameters()) == 6_962_369
    small = NLayerDiscriminator(ndf=4, n_layers=2)
    logits, features = small(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 1, 11, 11)
    assert [tuple(f.shape[1:]) for f in features] == [(4, 17, 17), (8, 9, 9), (16, 10, 10)]


@pytest.fixture
def gan_refs() -> Path:
    return shared_path(
        "DIFFIR_OFFICIAL_GAN_REFS", SHARED / "reference" / "official_gan", "GAN parity vectors"
    )


def test_official_discriminator_state_dicts_load_strictly(gan_refs):
    # State dicts written by the official classes (BasicSR net_d ``params``; LaMa ``discriminator.*``).
    for path in gan_refs.glob("unet_discriminator_sn_*.pt"):
        ref = torch.load(path, weights_only=True)
        UNetDiscriminatorSN(**ref["args"]).load_state_dict(
            {"params": ref["state_dict"]}["params"], strict=True
        )
    for path in gan_refs.glob("nlayer_discriminator_*.pt"):
        ref = torch.load(path, weights_only=True)
        args = {k: v for k, v in ref["args"].items() if k != "norm_layer"}
        lightning = {f"discriminator.{k}": v for k, v in ref["state_dict"].items()}
        state = {k.removeprefix("discriminator."): v for k, v in lightning.items()}
        NLayerDiscriminator(**args).load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------------------
# Perceptual loss


def test_perceptual_loss_without_pretrained_weights_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="diffir.losses.perceptual"):
        PerceptualLoss(layer_weights={"conv1_2": 1.0}, pretrained=False)
    assert "randomly initialised vgg19" in caplog.text


def test_missing_vgg_weights_is_a_one_line_error_naming_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        PerceptualLoss()
    message = str(error.value)
    assert "\n" not in message
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "hub" / "checkpoints") in message


def test_perceptual_loss_loads_vgg19_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    features = PerceptualLoss(layer_weights={"conv5_4": 1.0}, pretrained=False).vgg.features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # torchvision's file also holds the classifier: ignored
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    loaded = PerceptualLoss(layer_weights={"conv1_2": 1.0, "conv2_2": 1.0})
    assert len(loaded.vgg.features) == 8  # cut after conv2_2 (index 7)
    assert torch.equal(loaded.vgg.features[7].weight, features[7].weight)
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.train()
    assert not loaded.vgg.training


def test_perceptual_taps_are_before_relu_and_style_and_criteria_follow_basicsr():
    torch.manual_seed(0)
    x, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = PerceptualLoss({"conv1_2": 0.5, "relu2_1": 2.0}, perceptual_weight=3.0, style_weight=5.0, criterion="l2",
                          pretrained=False)  # fmt: skip
    vgg = loss.vgg.features
    norm = (torch.cat([x, gt]) - loss.vgg.mean) / loss.vgg.std
    conv1_2 = vgg[2](vgg[1](vgg[0](norm)))  # relu1_1 in place on conv1_1's output: fine, conv1_2 is read raw
    assert (conv1_2 < 0).any()
    relu2_1 = F.relu(vgg[5](vgg[4](F.relu(conv1_2))))
    feats = {"conv1_2": conv1_2, "relu2_1": relu2_1}

    def gram(f):
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    percep = sum(w * F.mse_loss(feats[k][:2], feats[k][2:]) for k, w in loss.layer_weights.items()) * 3.0
    style = (
        sum(w * F.mse_loss(gram(feats[k][:2]), gram(feats[k][2:])) for k, w in loss.layer_weights.items())
        * 5.0
    )
    ours_percep, ours_style = loss.terms(x, gt)
    # the largest reduction is a mean over conv1_2's 2·64·16² = 32768 squared differences (the grams' means
    # over 2·128² as many)
    n = conv1_2[:2].numel()
    assert_float32_close(ours_percep, percep, terms=n)
    assert_float32_close(ours_style, style, terms=n)
    assert_float32_close(loss(out=x, gt=gt, mask=None), percep + style, terms=n)
    fro = PerceptualLoss({"conv1_2": 1.0}, criterion="fro", pretrained=False)
    fro.vgg.features.load_state_dict(loss.vgg.features[:3].state_dict())
    norm = torch.linalg.vector_norm(conv1_2[:2] - conv1_2[2:]).item()
    assert fro(out=x, gt=gt).item() == pytest.approx(norm, rel=n * EPS32)  # a norm of the same n squares


def test_perceptual_loss_rejects_bad_configuration():
    with pytest.raises(ValueError, match="conv9_9"):
        PerceptualLoss({"conv9_9": 1.0}, pretrained=False)
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss(criterion="l3", pretrained=False)
    with pytest.raises(ValueError, match="vgg_type"):
        PerceptualLoss(vgg_type="vgg20", pretrained=False)


# ---------------------------------------------------------------------------------------------------------
# Adversarial losses


def test_gan_loss_types_and_weight_on_the_generator_only():
    pred = torch.tensor([[-2.0, 0.5], [1.5, 3.0]])
    tol = float32_tolerance(4, 9.0)  # means of 4 terms, each of magnitude ≤ 9 (= (−2 − 1)²)
    t = {"vanilla": GANLoss("vanilla", loss_weight=0.1), "lsgan": GANLoss("lsgan", loss_weight=0.1)}
    assert t["vanilla"](pred, True, is_disc=True).item() == pytest.approx(
        F.softplus(-pred).mean().item(), abs=tol
    )
    assert t["vanilla"](pred, False).item() == pytest.approx(0.1 * F.softplus(pred).mean().item(), abs=tol)
    assert t["lsgan"](pred, True, is_disc=True).item() == pytest.approx(
        ((pred - 1) ** 2).mean().item(), abs=tol
    )
    assert GANLoss("wgan")(pred, True).item() == pytest.approx(-pred.mean().item(), abs=tol)
    assert GANLoss("wgan_softplus")(pred, False).item() == pytest.approx(
        F.softplus(pred).mean().item(), abs=tol
    )
    hinge = GANLoss("hinge", loss_weight=2.0)
    assert hinge(pred, True, is_disc=True).item() == pytest.approx(F.relu(1 - pred).mean().item(), abs=tol)
    assert hinge(pred, False, is_disc=True).item() == pytest.approx(F.relu(1 + pred).mean().item(), abs=tol)
    assert hinge(pred, True).item() == pytest.approx(-2.0 * pred.mean().item(), abs=2 * tol)
    with pytest.raises(ValueError, match="gan_type"):
        GANLoss("bce")


def test_feature_matching_is_the_mean_of_per_map_mse_and_masks_known_pixels():
    a = [torch.ones(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)]
    b = [torch.zeros(1, 2, 4, 4), torch.full((1, 3, 2, 2), 2.0)]
    assert feature_matching_loss(a, b).item() == (1.0 + 4.0) / 2  # small integers and halves: exact
    assert FeatureMatchingLoss(weight=100)(a, b).item() == 250.0
    hole = torch.ones(1, 1, 8, 8)  # all missing: every error weighted by 1 - mask = 0
    assert feature_matching_loss(a, b, mask=hole).item() == 0.0
    with pytest.raises(ValueError, match="maps"):
        feature_matching_loss(a, b[:1])


def test_non_saturating_r1_needs_grad_and_mask_and_is_zero_without_grad():
    adv = NonSaturatingWithR1()
    real, mask = torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
    disc = nn.Conv2d(3, 1, 3, padding=1)
    with pytest.raises(ValueError, match="requires_grad"):
        adv.discriminator_loss(real, disc(real), disc(real), mask)
    real.requires_grad_(True)
    with pytest.raises(ValueError, match="mask"):
        adv.discriminator_loss(real, disc(real), disc(real), None)
    with torch.no_grad():
        terms = adv.discriminator_loss(real, disc(real), disc(real), mask)
    assert terms["r1"].item() == 0.0
    # all-known mask: a fake counts as real, so the fake term equals softplus(-D(fake))
    pred = disc(real)
    terms = adv.discriminator_loss(real, pred, pred.detach(), mask)
    # a mean of 64 positive terms: within n·ε of it, relatively
    assert terms["fake"].item() == pytest.approx(F.softplus(-pred).mean().item(), rel=pred.numel() * EPS32)
    assert_float32_close(terms["total"], terms["real"] + terms["r1"] + terms["fake"], terms=3)
    # one float32 product (and the weight's float32 rounding): within 2 ε
    assert terms["r1_raw"].item() > 0
    assert terms["r1"].item() == pytest.approx(1e-3 * terms["r1_raw"].item(), rel=2 * EPS32)
    with pytest.raises(ValueError, match="LaMa's rule"):
        NonSaturatingWithR1(use_unmasked_for_gen=False)


# ---------------------------------------------------------------------------------------------------------
# ResNetPL: the timm encoder against the CSAIL ResnetDilated written from its source


class CsailBottleneck(nn.Module):
    """semantic-segmentation-pytorch ``resnet.Bottleneck`` (stride on the 3×3 conv)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CsailResnetDilated(nn.Module):
    """``ResnetDilated(resnet50(), dilate_scale=8)`` of LaMa's ``models/ade20k``: deep stem, then
    ``_nostride_dilate`` on layer3 (2) and layer4 (4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64)
        self.conv2, self.bn2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = 128
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.layer3.apply(lambda m: self._nostride_dilate(m, 2))
        self.layer4.apply(lambda m: self._nostride_dilate(m, 4))

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        layers = [CsailBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [CsailBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @staticmethod
    def _nostride_dilate(m: nn.Module, dilate: int) -> None:
        if isinstance(m, nn.Conv2d):
            if m.stride == (2, 2):
                m.stride = (1, 1)
                if m.kernel_size == (3, 3):
                    m.dilation, m.padding = (dilate // 2,) * 2, (dilate // 2,) * 2
            elif m.kernel_size == (3, 3):
                m.dilation, m.padding = (dilate,) * 2, (dilate,) * 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.maxpool(F.relu(self.bn3(self.conv3(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


@pytest.fixture(scope="module")
def csail_encoder() -> CsailResnetDilated:
    torch.manual_seed(0)
    encoder = CsailResnetDilated()
    for m in encoder.modules():  # non-trivial eval-mode BatchNorm
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.2, 0.4)
            m.bias.data.uniform_(-0.1, 0.1)
    return encoder.eval()


def test_timm_encoder_is_lamas_resnet50dilated(csail_encoder):
    encoder = resnet50dilated()
    encoder.load_state_dict(ade20k_to_timm(csail_encoder.state_dict()), strict=True)
    encoder.eval()
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        ours, theirs = encoder_features(encoder, x), csail_encoder(x)
    assert [tuple(f.shape) for f in ours] == [
        (1, 256, 12, 10),
        (1, 512, 6, 5),
        (1, 1024, 6, 5),
        (1, 2048, 6, 5),
    ]
    for a, b in zip(ours, theirs, strict=True):  # the widest reduction: layer4's 3×3 convs over 512 channels
        assert_float32_close(a, b, terms=9 * 512)


def test_resnet_pl_loads_lamas_file_and_computes_the_sum_of_level_mses(csail_encoder, tmp_path, monkeypatch):
    folder, filename, _ = ADE20K_ENCODER
    assert (folder, filename) == ("ade20k/ade20k-resnet50dilated-ppm_deepsup", "encoder_epoch_20.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / folder).mkdir(parents=True)
    # an old checkpoint (before BatchNorm counted batches): no num_batches_tracked keys
    state = {k: v for k, v in csail_encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / folder / filename)
    loss = ResNetPL(weight=30.0)
    out = torch.rand(1, 3, 32, 32, requires_grad=True)
    gt = torch.rand(1, 3, 32, 32)
    value = loss(out=out, gt=gt, mask=None)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        feats = [csail_encoder((t - mean) / std) for t in (out, gt)]
    expected = 30.0 * sum(F.mse_loss(a, b) for a, b in zip(*feats, strict=True))
    # the largest reduction: a level's mean over its 2048·4² = 32768 squared differences
    assert_float32_close(value.detach(), expected, terms=max(f.numel() for f in feats[0]))
    value.backward()
    assert out.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())
    loss.train()
    assert not loss.encoder.training


def test_resnet_pl_missing_weights_is_a_one_line_error_naming_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    for kwargs, root in (({}, tmp_path / "home"), ({"weights_path": tmp_path / "w"}, tmp_path / "w")):
        with pytest.raises(MissingWeightsError) as error:
            ResNetPL(**kwargs)
        message = str(error.value)
        assert "\n" not in message and "encoder_epoch_20.pth" in message
        assert str(root / "ade20k" / "ade20k-resnet50dilated-ppm_deepsup") in message


def test_resnet_pl_without_pretrained_weights_warns_and_runs(caplog):
    with caplog.at_level(logging.WARNING, logger="diffir.losses.resnet_pl"):
        loss = ResNetPL(pretrained=False)
    assert "randomly initialised" in caplog.text
    x = torch.rand(2, 3, 24, 24)
    assert loss(out=x, gt=x).item() == 0.0
    assert loss(out=x, gt=x.flip(-1)).item() > 0.0


@pytest.mark.parametrize(
    "make", [lambda: PerceptualLoss(pretrained=False), lambda: ResNetPL(pretrained=False)]
)
def test_frozen_loss_networks_follow_the_loss_but_stay_out_of_checkpoints(make):
    """Their fixed pretrained weights (80-95 MB) would otherwise go into every training checkpoint."""
    parent = nn.ModuleDict({"loss": make()})
    assert parent.state_dict() == {} and list(parent.parameters()) == []
    network = next(v for v in vars(parent["loss"]).values() if isinstance(v, nn.Module))
    parent.to(torch.float64).train()
    assert all(p.dtype == torch.float64 for p in network.parameters())
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert parent["loss"](out=x, gt=x.flip(-1)).dtype == torch.float64
