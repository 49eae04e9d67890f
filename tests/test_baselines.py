"""The pixel-space baselines (SR3, image-conditioned DDPM, GDP): every check of docs/baselines.md §6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import assert_float32_close, float32_tolerance

from diffir.baselines import (
    GDP,
    SR3,
    BicubicDown,
    BlindBlur,
    BlindScaleOffset,
    BlockMean,
    Blur,
    ConditionalDDPM,
    DDPMPrior,
    GDPGuidance,
    Mask,
    NoiseSchedule,
    Sampler,
    build_pixel_diffusion,
    gaussian_kernel,
    sample_noise_level,
    space_timesteps,
    task_operator,
)
from diffir.baselines.adm import ADMUNet
from diffir.baselines.unet import UNet, unet_preset
from diffir.data import apply_kernel, imresize
from diffir.summary import summarize

pytestmark = pytest.mark.usefixtures("one_thread")

EPS64 = torch.finfo(torch.float64).eps  # the schedules and the closed forms below are float64
DDPM = NoiseSchedule.linear(1000, 1e-4, 0.02)
SR3_TRAIN = NoiseSchedule.linear(2000, 1e-6, 1e-2)


# --- 1. schedules -----------------------------------------------------------------------------------------
def test_schedules_match_reference_values() -> None:
    ac = DDPM.alphas_cumprod  # ac[t-1] = ᾱ_t
    for t, value in {1: 0.9999, 10: 0.998105, 100: 0.897018, 500: 0.0785872, 1000: 4.03583e-5}.items():
        assert ac[t - 1].item() == pytest.approx(value, rel=2e-6)
    assert DDPM.betas.sum().item() == pytest.approx(10.05, abs=1e-9)
    for t, value in {1: 0.999999, 100: 0.9754425, 1000: 0.0817838, 2000: 4.38598e-5}.items():
        assert SR3_TRAIN.alphas_cumprod[t - 1].item() == pytest.approx(value, rel=2e-6)
    palette_test = NoiseSchedule.linear(1000, 1e-4, 0.09)
    assert palette_test.alphas_cumprod[-1].item() == pytest.approx(6.60e-21, rel=5e-3)
    sr3_infer = NoiseSchedule.linear(100, 1e-4, 0.2)
    assert sr3_infer.alphas_cumprod[-1].item() == pytest.approx(2.13997e-5, rel=2e-5)


# --- 2. noise level ---------------------------------------------------------------------------------------
def test_sr3_noise_level_is_uniform_within_its_interval() -> None:
    torch.manual_seed(0)
    n = 100_000
    gamma, t = sample_noise_level(SR3_TRAIN, n)
    lo, hi = SR3_TRAIN.alphas_cumprod[t - 1], SR3_TRAIN.alphas_cumprod_prev[t - 1]
    assert ((gamma >= lo) & (gamma <= hi)).all()
    assert gamma.min() > 4.386e-5 and gamma.max() <= 1
    counts = torch.bincount(t - 1, minlength=2000).float().reshape(20, 100).sum(1)  # 20 bins of 100 steps
    assert (counts - n / 20).abs().max() < 5 * math.sqrt(n / 20)  # uniform t
    assert t.min() == 1 and t.max() == 2000
    # the position inside the interval is uniform too (mean 1/2)
    assert ((gamma - lo) / (hi - lo)).mean().item() == pytest.approx(0.5, abs=0.005)


def test_jsr3_sqrt_gamma_bounds() -> None:
    sqrt_ac = SR3_TRAIN.alphas_cumprod.sqrt()
    sqrt_prev = SR3_TRAIN.alphas_cumprod_prev.sqrt()
    bounds = {1: (0.9999995, 1.0), 1000: (0.2859787, 0.2866960), 2000: (0.00662267, 0.00665604)}
    for t, (lo, hi) in bounds.items():
        assert sqrt_ac[t - 1].item() == pytest.approx(lo, rel=2e-6)
        assert sqrt_prev[t - 1].item() == pytest.approx(hi, rel=2e-6)
    torch.manual_seed(1)
    gamma, t = sample_noise_level(SR3_TRAIN, 10_000, sqrt=True)
    root = gamma.sqrt()
    assert ((root >= sqrt_ac[t - 1] - 1e-12) & (root <= sqrt_prev[t - 1] + 1e-12)).all()


# --- 3. strides -------------------------------------------------------------------------------------------
def test_strides_and_respacing() -> None:
    assert space_timesteps(1000, "ddim20") == list(range(0, 1000, 50))
    hundred = space_timesteps(1000, 100)
    assert hundred[:3] == [0, 10, 20] and hundred[-3:] == [979, 989, 999] and len(hundred) == 100
    assert space_timesteps(1000, 25)[:5] == [0, 42, 83, 125, 166]
    assert space_timesteps(1000, 25)[-3:] == [916, 957, 999]
    respaced = DDPM.respace(space_timesteps(1000, "ddim20"))
    assert respaced.betas[0].item() == pytest.approx(1e-4, rel=1e-9)
    assert respaced.betas[1].item() == pytest.approx(0.0299515, rel=1e-6)
    assert respaced.betas[19].item() == pytest.approx(0.6076078, rel=1e-6)
    # each respaced ᾱ is a product of ≤ 20 ratios ᾱ_t/ᾱ_s, two float64 roundings each (measured ≤ 0.7 ε)
    torch.testing.assert_close(respaced.alphas_cumprod, DDPM.alphas_cumprod[::50], rtol=40 * EPS64, atol=0)


# --- 4. identities ----------------------------------------------------------------------------------------
def test_posterior_identities() -> None:
    t = torch.tensor([500])
    x0, eps = torch.full((1, 1), 0.3, dtype=torch.float64), torch.full((1, 1), -1.2, dtype=torch.float64)
    x_t = DDPM.q_sample(x0, t, eps)
    posterior = DDPM.posterior_mean(x0, x_t, t).item()
    assert posterior == pytest.approx(-1.06148277, abs=1e-8)
    assert DDPM.eps_mean(x_t, t, eps).item() == pytest.approx(posterior, abs=1e-12)
    assert DDPM.ddim_mean(x0, x_t, t, eta=1.0).item() == pytest.approx(posterior, abs=1e-12)
    assert DDPM.ddim_sigma(t, 1.0, x_t).item() ** 2 == pytest.approx(0.0100513358, rel=1e-8)
    assert DDPM.posterior_variance[500].item() == pytest.approx(0.0100513358, rel=1e-8)
    # an oracle ε gives x̂_0 = x_0 at every step
    steps = torch.arange(1000)
    x0s, noise = torch.randn(1000, 3, dtype=torch.float64), torch.randn(1000, 3, dtype=torch.float64)
    x_t = DDPM.q_sample(x0s, steps, noise)
    # x̂_0 = (x_t − √(1−ᾱ)·ε)/√ᾱ divides x_t's float64 roundings by √ᾱ (down to 0.0064): a few ε of
    # |x_t|/√ᾱ (≤ 332 here; measured 28 ε·max |x_0|)
    amplified = (x_t.abs() / DDPM.alphas_cumprod.sqrt()[:, None]).max().item()
    torch.testing.assert_close(DDPM.predict_x0(x_t, steps, noise), x0s, rtol=0, atol=16 * EPS64 * amplified)


def test_ddpm_and_ddim_samplers_run_seeded_and_stay_in_range() -> None:
    schedule = DDPM.respace(space_timesteps(1000, 10))
    calls = []

    def eps_fn(x: torch.Tensor, i: int) -> torch.Tensor:
        calls.append(i)
        return torch.randn(x.shape, generator=torch.Generator().manual_seed(i)) * 3

    for kind, eta in (("ddpm", 1.0), ("ddim", 0.0), ("ddim", 0.5)):
        a = Sampler(schedule, kind, eta).sample(eps_fn, (2, 3, 8, 8), torch.Generator().manual_seed(0))
        b = Sampler(schedule, kind, eta).sample(eps_fn, (2, 3, 8, 8), torch.Generator().manual_seed(0))
        assert torch.equal(a, b) and a.abs().max() <= 1 + 1e-6 and torch.isfinite(a).all()
    assert calls[:10] == list(range(9, -1, -1))  # S = 10 network evaluations, from the noisiest step


# --- 5. shapes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task,cond", [("sr", 3), ("deblur", 3), ("inpainting", 4)])
def test_shapes_of_the_conditional_models(task: str, cond: int) -> None:
    torch.manual_seed(0)
    model = SR3(task=task, scale=4, unet={"preset": "xs"})
    assert model.unet.in_channels == 3 + cond
    scale = 4 if task == "sr" else 1
    lq = torch.rand(2, 4 if task == "inpainting" else 3, 16 // scale, 16 // scale)
    out = model.unet(torch.randn(2, 3 + cond, 16, 16), torch.rand(2, 1))
    assert out.shape == (2, 3, 16, 16)
    assert model.loss(torch.rand(2, 3, 16, 16), lq).ndim == 0
    # any size: odd sides are padded to the U-Net's multiple and cropped back
    odd = torch.rand(1, lq.shape[1], 5, 7)
    restored = model.restore(odd, torch.Generator().manual_seed(0), steps=3)
    assert restored.shape == (1, 3, 5 * scale, 7 * scale) and restored.min() >= 0 and restored.max() <= 1


def test_gdp_shapes_and_no_gradient_into_the_network() -> None:
    torch.manual_seed(0)
    prior = DDPMPrior(unet={"preset": "xs"})
    gt = torch.rand(1, 3, 20, 12)
    y = BicubicDown(4)(gt)
    assert y.shape == (1, 3, 5, 3)  # y stays at its own size
    gdp = GDP(prior, task="sr", steps=5)
    x, guidance = gdp.restore(y, BicubicDown(4), (20, 12), torch.Generator().manual_seed(0))
    assert x.shape == (1, 3, 20, 12) and torch.isfinite(x).all()
    assert all(p.grad is None for p in prior.parameters())
    assert math.isfinite(guidance.last_mse)
    # 2000 · 3·64² / 196608: a few float64 roundings at most
    assert gdp.effective_scale((64, 64)) == pytest.approx(125.0, rel=4 * EPS64)


# --- 6. parameter counts and MACs -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "preset,in_ch,emb_act,params,gmac",
    [
        ("s", 6, False, 3_026_979, 1.119),
        ("s", 7, False, 3_027_267, 1.120),
        ("s", 3, True, 3_026_115, 1.116),
        ("xs", 6, False, 661_619, 0.415),
    ],
)
def test_named_presets_have_the_reference_counts(
    preset: str, in_ch: int, emb_act: bool, params: int, gmac: float
) -> None:
    net = UNet(in_channels=in_ch, emb_act=emb_act, **unet_preset(preset)).eval()
    assert sum(p.numel() for p in net.parameters()) == params
    macs = summarize(net, (torch.rand(1, in_ch, 64, 64), torch.rand(1)))["macs"]
    assert macs / 1e9 == pytest.approx(gmac, abs=6e-4)


@pytest.mark.parametrize(
    "preset,in_ch,emb_act,params,size,gmac",
    [
        ("s", 6, False, 3_026_979, 256, 18.914),
        ("s", 3, True, 3_026_115, 256, 18.858),
        ("jsr3_16_128", 6, False, 97_807_491, 128, 46.18),
        ("jsr3_64_512", 6, False, 155_334_339, 512, 623.1),
        ("sr3_paper_16_128", 6, False, 514_987_139, 128, 239.9),
        ("sr3_paper_64_256", 6, False, 564_761_219, 256, 772.0),
        ("jsr3_ddpm_16_128", 6, True, 26_451_587, 128, 15.65),
    ],
)
def test_published_size_presets_have_the_reference_counts(
    preset: str, in_ch: int, emb_act: bool, params: int, size: int, gmac: float
) -> None:
    """Built and counted on the meta device (shapes only): the FLOP counter needs no real tensors."""
    with torch.device("meta"):
        net = UNet(in_channels=in_ch, emb_act=emb_act, **unet_preset(preset))
        macs = summarize(net, (torch.rand(1, in_ch, size, size), torch.rand(1)))["macs"]
    assert sum(p.numel() for p in net.parameters()) == params
    assert macs / 1e9 == pytest.approx(gmac, rel=6e-4)


def test_gdp_imagenet_prior_has_the_reference_counts() -> None:
    with torch.device("meta"):
        adm = ADMUNet()
        macs = summarize(adm, (torch.rand(1, 3, 256, 256), torch.zeros(1)))["macs"]
    assert sum(p.numel() for p in adm.parameters()) == 552_814_086
    assert macs / 1e9 == pytest.approx(1119.8, rel=1e-4)


def test_adm_unet_runs_on_real_tensors() -> None:
    torch.manual_seed(0)
    adm = ADMUNet(image_size=16, channels=32, mults=(1, 2), num_blocks=1, attn_res=(8,), head_channels=16)
    out = adm(torch.randn(2, 3, 16, 16), torch.tensor([3, 700]))
    assert out.shape == (2, 6, 16, 16) and torch.isfinite(out).all()


def test_unet_rejects_bad_sizes_and_groups() -> None:
    with pytest.raises(ValueError, match="groups=12 must divide channels=16"):
        UNet(**unet_preset("xs", groups=12))
    with pytest.raises(ValueError, match="multiple of 4"):
        UNet(**unet_preset("xs"))(torch.rand(1, 6, 10, 12), torch.rand(1))


# --- 7. GDP toy guidance ----------------------------------------------------------------------------------
def _guided_mse(operator, x_gt: torch.Tensor, x0_hat01: torch.Tensor, s: float) -> tuple[float, float]:
    y = operator(x_gt)
    guidance = GDPGuidance(operator, y, s)
    z = x0_hat01 * 2 - 1
    before = guidance.mse(z).item()
    after = guidance.mse(z + guidance(z, z, 0)).item()
    return before, after


def test_gdp_guidance_on_a_projection_scales_the_residual_exactly() -> None:
    torch.manual_seed(0)
    x_gt, x0 = torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.rand(1, 3, 8, 8, dtype=torch.float64)
    n = 192
    for s, factor in ((n / 2, 0.5625), (n, 0.25), (2 * n, 0.0)):
        before, after = _guided_mse(BlockMean(4), x_gt, x0, s)
        # the MSEs are float64 means of n squared residuals of magnitude ≤ before (measured ≤ 1.1 ε·before)
        assert after == pytest.approx(factor * before, abs=n * EPS64 * before)


def test_gdp_guidance_with_a_valid_blur_falls_below_4n_and_rises_far_above() -> None:
    """r' = (I − (s/2N)·DDᵀ) r with ‖DDᵀ‖ ≤ 1: the MSE falls for s < 4N (N = 3·24² = 1728); far above, the
    low frequencies (eigenvalues near 1) overshoot and a smooth residual grows."""
    torch.manual_seed(0)
    blur = Blur(gaussian_kernel(9, 2.0).double(), padding="valid")
    x_gt = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    x0 = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert blur(x_gt).shape == (1, 3, 24, 24)
    before, small = _guided_mse(blur, x_gt, x0, 93.8)
    _, medium = _guided_mse(blur, x_gt, x0, 3072)
    _, near_limit = _guided_mse(blur, x_gt, x0, 4 * 1728 - 1)
    assert medium < small < before and near_limit < before
    smooth = x_gt + 0.05 + 0.01 * torch.rand(1, 3, 32, 32, dtype=torch.float64)
    before, after = _guided_mse(blur, x_gt, smooth, 12288)
    assert after > 2 * before


def test_gdp_xt_takes_the_gradient_at_x_t() -> None:
    torch.manual_seed(0)
    y, z = torch.rand(1, 3, 2, 2), torch.rand(1, 3, 8, 8) * 2 - 1
    at_x0 = GDPGuidance(BlockMean(4), BlockMean(4)(y.repeat_interleave(4, -1).repeat_interleave(4, -2)), 50.0)
    at_xt = GDPGuidance(at_x0.operator, at_x0.y, 50.0, mode="xt")
    assert torch.equal(at_xt(torch.zeros_like(z), z, 0), at_x0(z, torch.zeros_like(z), 0))
    with pytest.raises(ValueError, match="'x0' or 'xt'"):
        GDPGuidance(at_x0.operator, y, 1.0, mode="v1")


def test_gdp_blind_update_lowers_the_mse_and_barely_moves_m() -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 3, 8, 8, generator=gen)
    x_gt = torch.rand(1, 3, 8, 8, generator=gen)
    op = BlindScaleOffset((8, 8))
    with torch.no_grad():
        op.f.fill_(0.5)
        op.M.zero_()
    y = 0.3 * x_gt + 0.05
    guidance = GDPGuidance(op, y, scale=0.0)
    z = x0 * 2 - 1
    values, n = [], 192
    for _ in range(3):
        residual = (op(x0) - y).detach()
        m_before = op.M.detach().clone()
        guidance(z, z, 0)
        values.append(guidance.last_mse)
        assert (op.M - m_before).abs().max() <= 6 * residual.abs().max() / n + 1e-9
    after = ((op(x0) - y) ** 2).mean().item()
    assert values[0] > values[1] > values[2] > after


def test_blind_blur_kernel_fits_a_known_blur_during_guidance() -> None:
    """The unknown-kernel variant (GoPro): with x̂_0 right, the lr-1 updates of the kernel lower the mse."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24)
    y = Blur(gaussian_kernel(9, 2.0))(x)
    op, _ = task_operator("deblur", y, kernel=None)
    assert isinstance(op, BlindBlur) and op.kernel[15, 15] > 0.9
    # two float32 sums of the 31² = 961 positive entries (the normalisation and this one), each within n·ε of 1
    assert op.kernel.sum().item() == pytest.approx(1.0, abs=float32_tolerance(2 * op.kernel.numel(), 1.0))
    guidance = GDPGuidance(op, y, scale=0.0)
    z = x * 2 - 1
    values = []
    for _ in range(5):
        guidance(z, z, 0)
        values.append(guidance.last_mse)
    assert all(b < a for a, b in zip(values, values[1:], strict=False))
    known, y_known = task_operator("deblur", y, kernel=gaussian_kernel(9, 2.0))
    assert isinstance(known, Blur) and torch.equal(y_known, y)
    with pytest.raises(ValueError, match="needs the mask"):
        task_operator("inpainting", torch.rand(1, 4, 8, 8))


def test_gdp_condition_mean_adam_lines_are_a_no_op() -> None:
    """GDP's literal ``condition_mean`` (an Adam step on the mean under no_grad) returns exactly μ + g."""
    torch.manual_seed(0)
    mu, grad = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)

    def literal_condition_mean(p_mean: torch.Tensor) -> torch.Tensor:
        optimizer = torch.optim.Adam([p_mean], lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0)
        new_mean = p_mean.float()
        for _ in range(1):
            new_mean = p_mean.float() + grad.float()
            new_mean.requires_grad_(True)
            optimizer.zero_grad()
            new_mean.backward(torch.ones_like(new_mean))
            optimizer.step()
        return new_mean

    with torch.no_grad():
        out = literal_condition_mean(mu.clone())
    assert torch.equal(out.detach(), mu + grad)


# --- operators --------------------------------------------------------------------------------------------
def test_bicubic_operator_is_the_matlab_resize_as_a_linear_map() -> None:
    x = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    # float64, each output sums 16 antialiased taps per axis, two passes, of inputs ≤ 1 (measured ≤ 1.5 ε)
    torch.testing.assert_close(BicubicDown(4)(x), imresize(x, 0.25), rtol=0, atol=32 * EPS64)
    with pytest.raises(ValueError, match="not a multiple of the SR scale 4"):
        BicubicDown(4)(torch.rand(1, 3, 10, 8))


def test_blur_operator_matches_the_project_blur_and_mask_zeroes_holes() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((20, 18, 3)).astype(np.float32)
    kernel = rng.random((7, 7)).astype(np.float32)
    kernel /= kernel.sum()
    ours = Blur(kernel)(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    # each output sums the 7×7 = 49 taps (measured ≤ 1.5 ε·M)
    assert_float32_close(torch.from_numpy(ours), torch.from_numpy(apply_kernel(img, kernel)), terms=49)
    mask = (torch.rand(1, 1, 8, 8) > 0.5).float()
    assert torch.equal(Mask(mask)(torch.ones(1, 3, 8, 8)), (1 - mask).expand(1, 3, 8, 8))


# --- 10. smoke + checkpoints ------------------------------------------------------------------------------
def test_sr3_training_lowers_the_loss_and_samples_stay_in_range() -> None:
    torch.manual_seed(0)
    model = SR3(unet={"preset": "xs"})
    gt = torch.rand(4, 3, 16, 16)
    lq = imresize(gt, 0.25)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = model.loss(gt, lq)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert 0.6 < np.mean(losses[:3]) < 1.0  # E|ε| = 0.798 at the start
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    out = model.restore(lq[:1], torch.Generator().manual_seed(0), steps=10)
    assert out.min() >= 0 and out.max() <= 1


def test_methods_rebuild_from_their_config() -> None:
    for model in (
        SR3(unet={"preset": "xs"}, level="sqrt_gamma", steps=7),
        ConditionalDDPM(task="deblur", unet={"preset": "xs"}, sampler="ddpm", steps=20),
        DDPMPrior(unet={"preset": "xs"}),
    ):
        rebuilt = build_pixel_diffusion(model.config())
        rebuilt.load_state_dict(model.state_dict(), strict=True)
        assert type(rebuilt) is type(model) and rebuilt.config() == model.config()


def test_cddpm_sampler_options() -> None:
    model = ConditionalDDPM(unet={"preset": "xs"})
    sampler, taus = model.sampler()
    assert sampler.kind == "ddim" and sampler.steps == 50 and taus[:3] == [0.0, 20.0, 40.0]
    sampler, taus = model.sampler(sampler="ddpm")
    assert sampler.steps == 1000 and taus[-1] == 999.0
    sampler, _ = model.sampler(sampler="ddim", steps=30)  # 1000 is not a multiple of 30: the "N" spacing
    assert sampler.steps == 30
    with pytest.raises(ValueError, match="sampler must be one of"):
        model.sampler(sampler="euler")
