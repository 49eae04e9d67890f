"""Metrics against an independent implementation of BasicSR's definitions, plus LPIPS / FID / suite checks.

LPIPS and FID run offline: LPIPS with a randomly initialised trunk (the shipped linear layers are real),
FID with a small random CNN as the feature extractor. Their absolute values are meaningless; the tests
check the properties that must hold for any backbone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from numerics import EPS32, assert_float32_close
from PIL import Image
from scipy import ndimage
from scipy.signal.windows import gaussian
from skimage import data
from torch import nn

from diffir.metrics import METRIC_NAMES, FIDMetric, LPIPSMetric, MetricSuite, MissingWeightsError, psnr, ssim

# PSNR / SSIM and their reference run in float64, means of n values that err by n·ε: PSNR by 10/ln 10 dB per
# unit of relative MSE error, SSIM by 2n·ε (its variances' cancellation, 22 taps·255²/C2 ≈ 2.4e4 ε, adds less).
EPS64 = np.finfo(np.float64).eps
DB = 10 / np.log(10)


# ---------------------------------------------------------------------------------------------------------
# Independent reference: BasicSR's calculate_psnr / calculate_ssim written with numpy + scipy.


def ref_prepare(img: np.ndarray, crop_border: int, test_y_channel: bool) -> np.ndarray:
    """uint8 HWC -> float64 HWC, border-cropped, optionally the BT.601 luma (16..235) as one channel."""
    img = img.astype(np.float64)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        img = (img / 255.0 @ np.array([65.481, 128.553, 24.966]) + 16.0)[..., None]
    return img


def ref_psnr(pred: np.ndarray, gt: np.ndarray, crop_border: int, test_y_channel: bool) -> float:
    a, b = (ref_prepare(x, crop_border, test_y_channel) for x in (pred, gt))
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def ref_ssim(pred: np.ndarray, gt: np.ndarray, crop_border: int, test_y_channel: bool) -> float:
    a, b = (ref_prepare(x, crop_border, test_y_channel) for x in (pred, gt))
    g = gaussian(11, 1.5)
    g /= g.sum()

    def blur_valid(img: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(ndimage.correlate1d(img, g, axis=0), g, axis=1)[5:-5, 5:-5]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur_valid(x), blur_valid(y)
        vx, vy, cxy = blur_valid(x * x) - mx**2, blur_valid(y * y) - my**2, blur_valid(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(ssim_map.mean())
    return float(np.mean(values))


# ---------------------------------------------------------------------------------------------------------
# Test images: real photos and degraded copies.

PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee}


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float CHW in [0, 1]."""
    return torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """48 random 32x32 RGB crops of the three photos, float in [0, 1] (a small 'image set')."""
    rng = np.random.default_rng(0)
    out = []
    for load in PHOTOS.values():
        img = load()
        for _ in range(16):
            y, x = rng.integers(0, img.shape[0] - 32), rng.integers(0, img.shape[1] - 32)
            out.append(to_tensor(img[y : y + 32, x : x + 32]))
    return torch.stack(out)


def degrade(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (images + sigma / 255 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------
# PSNR / SSIM


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("degradation", ["jpeg", "noise"])
def test_psnr_ssim_match_the_reference_on_photos(photo: str, degradation: str) -> None:
    gt = PHOTOS[photo]()
    pred = jpeg(gt, 25) if degradation == "jpeg" else noisy(gt, 12)
    psnr_tol, ssim_tol = DB * pred.size * EPS64, 2 * pred.size * EPS64  # measured ≤ 4e-15
    for crop_border in (0, 4):
        for test_y in (False, True):
            expected_psnr = ref_psnr(pred, gt, crop_border, test_y)
            expected_ssim = ref_ssim(pred, gt, crop_border, test_y)
            assert 15 < expected_psnr < 45 and 0.3 < expected_ssim < 0.99  # a real, non-trivial degradation
            assert psnr(pred, gt, crop_border, test_y) == pytest.approx(expected_psnr, abs=psnr_tol)
            assert ssim(pred, gt, crop_border, test_y) == pytest.approx(expected_ssim, abs=ssim_tol)
    # float tensors off the 8-bit grid by < 0.5 level are rounded to the same 8-bit image
    jitter = (torch.rand(3, *gt.shape[:2], generator=torch.Generator().manual_seed(0)) - 0.5) * 0.98 / 255
    pred_t = to_tensor(pred).double() + jitter
    assert float(psnr(pred_t, to_tensor(gt), 4, True)) == pytest.approx(expected_psnr, abs=psnr_tol)
    assert float(ssim(pred_t, to_tensor(gt), 4, True)) == pytest.approx(expected_ssim, abs=ssim_tol)


def test_greyscale_images_are_scored_as_one_channel() -> None:
    gt = data.camera()[:200, :300]
    pred = noisy(gt, 10)
    psnr_tol, ssim_tol = DB * pred.size * EPS64, 2 * pred.size * EPS64
    for test_y in (False, True):  # Y of a single channel is the channel itself
        assert psnr(pred, gt, 2, test_y) == pytest.approx(
            ref_psnr(pred[..., None], gt[..., None], 2, False), abs=psnr_tol
        )
        assert ssim(pred, gt, 2, test_y) == pytest.approx(
            ref_ssim(pred[..., None], gt[..., None], 2, False), abs=ssim_tol
        )


def test_prediction_is_clamped_to_the_8bit_range() -> None:
    gt = to_tensor(data.coffee()[:64, :64])
    pred = gt.clone()
    pred[:, :8] = 1.7  # an overshooting network output scores as saturated white
    pred[:, 8:16] = -0.4
    clipped = gt.clone()
    clipped[:, :8] = 1.0
    clipped[:, 8:16] = 0.0
    assert torch.equal(psnr(pred, gt), psnr(clipped, gt))
    assert torch.equal(ssim(pred, gt), ssim(clipped, gt))


def test_batches_give_per_image_values_and_types_follow_the_input() -> None:
    gts = [PHOTOS[name]()[:128, :160] for name in ("astronaut", "coffee")]
    preds = [jpeg(gts[0], 20), noisy(gts[1], 20)]
    batch_pred = torch.stack([to_tensor(p) for p in preds])
    batch_gt = torch.stack([to_tensor(g) for g in gts])
    tolerances = {psnr: DB * preds[0].size * EPS64, ssim: 2 * preds[0].size * EPS64}
    for metric in (psnr, ssim):
        batched = metric(batch_pred, batch_gt, crop_border=3, test_y_channel=True)
        assert isinstance(batched, torch.Tensor) and batched.shape == (2,)
        for i in range(2):
            single_np = metric(preds[i], gts[i], crop_border=3, test_y_channel=True)
            single_chw = metric(batch_pred[i], batch_gt[i], crop_border=3, test_y_channel=True)
            assert isinstance(single_np, float)
            assert isinstance(single_chw, torch.Tensor) and single_chw.ndim == 0
            assert float(batched[i]) == pytest.approx(single_np, abs=tolerances[metric])
            assert float(single_chw) == pytest.approx(single_np, abs=tolerances[metric])


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    gt = data.chelsea()[:64, :64]
    assert psnr(gt, gt) == float("inf")
    assert ssim(gt, gt) == pytest.approx(1.0, abs=2 * gt.size * EPS64)


def test_bad_inputs_are_rejected() -> None:
    gt = data.chelsea()[:64, :64]
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(gt[:32], gt)
    with pytest.raises(TypeError, match="uint8"):
        psnr(gt / 255.0, gt)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(gt[:20, :20], gt[:20, :20], crop_border=5)


# ---------------------------------------------------------------------------------------------------------
# LPIPS


# The widest reduction of AlexNet-LPIPS: conv4's 3×3 over 384 channels (measured ≤ 1.5 ε·M across batch sizes)
LPIPS_TERMS = 9 * 384


@pytest.fixture(scope="module")
def lpips_random() -> LPIPSMetric:
    torch.manual_seed(0)
    return LPIPSMetric("alex", pretrained_backbone=False)


def test_lpips_of_identical_images_is_zero(lpips_random: LPIPSMetric, crops: torch.Tensor) -> None:
    assert torch.equal(lpips_random(crops[:4], crops[:4]), torch.zeros(4))


def test_lpips_does_not_depend_on_batch_size(lpips_random: LPIPSMetric, crops: torch.Tensor) -> None:
    pred, gt = degrade(crops[::12], 20), crops[::12]
    together = lpips_random(pred, gt)
    one_by_one = torch.stack([lpips_random(pred[i], gt[i]) for i in range(4)])
    assert together.shape == (4,) and one_by_one.shape == (4,)
    assert (together > 0).all()
    assert_float32_close(together, one_by_one, terms=LPIPS_TERMS)


def test_lpips_grows_with_degradation(lpips_random: LPIPSMetric, crops: torch.Tensor) -> None:
    gt = crops[::12]
    assert (lpips_random(degrade(gt, 40), gt) > lpips_random(degrade(gt, 5), gt)).all()


def test_lpips_feeds_8bit_images_scaled_to_minus_one_one(
    lpips_random: LPIPSMetric, crops: torch.Tensor
) -> None:
    gt = crops[:4]
    pred = degrade(gt, 20) + 0.3 / 255  # off the 8-bit grid: rounded like the saved PNG would be
    on_grid = (pred.clamp(0, 1) * 255).round() / 255
    expected = lpips_random.net(on_grid * 2 - 1, gt * 2 - 1).flatten()
    assert_float32_close(lpips_random(pred, gt), expected, terms=LPIPS_TERMS)


def test_lpips_stays_in_eval_mode(lpips_random: LPIPSMetric) -> None:
    lpips_random.train()
    assert not any(m.training for m in lpips_random.modules())


@pytest.mark.parametrize(
    ("net", "filename"), [("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")]
)
def test_lpips_missing_backbone_weights_raise_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net: str, filename: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        LPIPSMetric(net)
    message = str(error.value)
    assert filename in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "weights='DEFAULT'" in message and f"https://download.pytorch.org/models/{filename}" in message


def test_lpips_loads_the_backbone_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in AlexNet checkpoint where torchvision caches it: the trunk is random but real-sized, the
    # unused classifier is stored as broadcast scalars to keep the file tiny.
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.alexnet().state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn(shape, generator=generator)
        if k.startswith("features")
        else torch.zeros(1).expand(shape)
        for k, shape in shapes.items()
    }
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    metric = LPIPSMetric("alex")
    first_conv = next(metric.net.net.parameters())
    assert torch.equal(first_conv, state["features.0.weight"])


# ---------------------------------------------------------------------------------------------------------
# FID


class TinyFeatures(nn.Module):
    """A small random CNN standing in for Inception: float [0, 1] images -> 32-d features."""

    num_features = 32

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 100  # spread the features so FIDs are O(1), far above float noise


# Each feature sums 3×3·32 = 288 float32 products and pools 64 pixels; near zero the FID is stationary in
# the covariances, so that rounding moves it relatively (measured ≤ 22 ε across batch sizes).
FID_TERMS = 9 * 32 + 64


def fid_of(pred: torch.Tensor, gt: torch.Tensor, batch_size: int) -> float:
    metric = FIDMetric(TinyFeatures())
    for start in range(0, len(pred), batch_size):
        metric.update(pred[start : start + batch_size], gt[start : start + batch_size])
    return metric.compute()


def test_fid_of_identical_sets_is_zero(crops: torch.Tensor) -> None:
    # Measured: |FID| ~ 1e-7 (float rounding in the eigenvalues); noise of 4/255 already gives ~1e-2.
    assert abs(fid_of(crops, crops, 16)) < 1e-4


def test_fid_does_not_depend_on_batch_size(crops: torch.Tensor) -> None:
    pred = degrade(crops, 15)
    whole, in_sixes = fid_of(pred, crops, 48), fid_of(pred, crops, 6)
    assert whole > 0.1
    assert in_sixes == pytest.approx(whole, rel=FID_TERMS * EPS32)


def test_fid_grows_with_degradation(crops: torch.Tensor) -> None:
    assert fid_of(degrade(crops, 40), crops, 16) > fid_of(degrade(crops, 8), crops, 16) > 0


def test_fid_missing_inception_weights_raise_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        FIDMetric()
    message = str(error.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


# ---------------------------------------------------------------------------------------------------------
# MetricSuite


def test_suite_per_image_values_and_means_are_consistent(crops: torch.Tensor) -> None:
    torch.manual_seed(0)
    suite = MetricSuite(
        list(METRIC_NAMES),
        crop_border=2,
        test_y_channel=True,
        lpips_pretrained_backbone=False,
        fid_feature_extractor=TinyFeatures(),
    )
    gt = crops[:10]
    pred = degrade(gt, 12)
    names = [f"img{i}" for i in range(10)]
    suite.update(pred[:6], gt[:6], names[:6])
    suite.update(pred[6:], gt[6:], names[6:])
    rows = suite.per_image()
    assert [r["name"] for r in rows] == names
    assert all(set(r) == {"name", "psnr", "ssim", "lpips"} for r in rows)
    n = pred[0].numel()  # a batch of 6 against one image, float64
    psnr_tol, ssim_tol = DB * n * EPS64, 2 * n * EPS64
    for i, row in enumerate(rows):
        assert row["psnr"] == pytest.approx(float(psnr(pred[i], gt[i], 2, True)), abs=psnr_tol)
        assert row["ssim"] == pytest.approx(float(ssim(pred[i], gt[i], 2, True)), abs=ssim_tol)
    means = suite.compute()
    assert list(means) == list(METRIC_NAMES)
    for key in ("psnr", "ssim", "lpips"):
        assert means[key] == pytest.approx(np.mean([r[key] for r in rows]), abs=1e-12)
    assert means["fid"] == pytest.approx(fid_of(pred, gt, 10), rel=FID_TERMS * EPS32)

    suite.reset()
    assert suite.per_image() == []
    with pytest.raises(RuntimeError, match="before any update"):
        suite.compute()


def test_suite_accepts_numpy_images_and_default_names() -> None:
    suite = MetricSuite(["psnr", "ssim"])
    gt = data.astronaut()[:64, :64]
    suite.update(noisy(gt, 10), gt)
    suite.update(to_tensor(gt)[None], to_tensor(gt)[None])
    rows = suite.per_image()
    assert [r["name"] for r in rows] == ["0", "1"]
    # a numpy image's PSNR is a Python float that the suite stores through torch.as_tensor: rounded to float32
    assert rows[0]["psnr"] == pytest.approx(ref_psnr(noisy(gt, 10), gt, 0, False), rel=EPS32)
    assert rows[1]["psnr"] == float("inf")
    with pytest.raises(ValueError, match="2 names for a batch of 1"):
        suite.update(gt, gt, names=["a", "b"])
    assert len(suite.per_image()) == 2


def test_suite_rejects_unknown_metric_names() -> None:
    with pytest.raises(ValueError, match="niqe") as error:
        MetricSuite(["psnr", "niqe"])
    assert all(name in str(error.value) for name in METRIC_NAMES)
    with pytest.raises(ValueError, match="no metrics"):
        MetricSuite([])


def test_suite_networks_follow_to_but_stay_out_of_the_state_dict() -> None:
    suite = MetricSuite(
        ["lpips", "fid"], lpips_pretrained_backbone=False, fid_feature_extractor=TinyFeatures()
    )
    assert list(suite.state_dict()) == [] and list(suite.parameters()) == []
    suite.to("meta")
    nets = suite._nets.values()
    assert all(p.device.type == "meta" for net in nets for p in net.parameters())
