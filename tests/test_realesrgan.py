"""Real-ESRGAN second-order degradation: the samplers follow the official distributions, sizes per scale,
determinism in the generator, the training-pair pool and its exact resume.

The deterministic pieces are checked against the official code's vectors in ``tests/parity/degradations.py``.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from numerics import assert_float32_close, float32_tolerance

from diffir.data import CleanCrop, DiffJPEG, RealESRGANDegradation
from diffir.data.realesrgan import (
    KERNEL_FAMILIES,
    KernelSpec,
    gaussian_noise,
    poisson_noise,
    sample_blur_kernel,
)

OFFICIAL_KERNEL_PROB = dict(zip(KERNEL_FAMILIES, (0.45, 0.25, 0.12, 0.03, 0.12, 0.03), strict=True))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small tensors: one thread avoids thread barriers on the shared CPU."""


def assert_frequency(count: int, n: int, p: float, what: str) -> None:
    """``count`` successes of ``n`` draws agree with probability ``p`` within 4.5 binomial standard errors."""
    tol = 4.5 * math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) <= tol, f"{what}: frequency {count / n:.4f}, expected {p} ± {tol:.4f}"


def assert_uniform_range(values, lo: float, hi: float, what: str) -> None:
    """All values inside [lo, hi] and both ends reached to within 5% of the range (uniform sampling error for
    the hundreds of draws used here is far below that)."""
    values = np.asarray(values, np.float64)
    assert values.size >= 100, f"{what}: only {values.size} draws"
    assert values.min() >= lo and values.max() <= hi, (
        f"{what}: [{values.min()}, {values.max()}] not in [{lo}, {hi}]"
    )
    slack = 0.05 * (hi - lo)
    assert values.min() < lo + slack and values.max() > hi - slack, (
        f"{what}: draws span [{values.min():.3f}, {values.max():.3f}], expected about [{lo}, {hi}]"
    )


def make_degradation(scale: int = 2, **kwargs) -> RealESRGANDegradation:
    kwargs.setdefault("gt_size", 32)
    kwargs.setdefault("queue_size", 4)
    return RealESRGANDegradation(scale=scale, **kwargs)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gt_batch(seed: int, batch: int = 2, size: int = 80) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=gen(10_000 + seed))


# ----- samplers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage, sigma_max", [(0, 3.0), (1, 1.5)])
def test_blur_kernels_follow_official_distribution(stage, sigma_max):
    """Kernel 1 / kernel 2: sinc with p 0.1, otherwise the six families with [0.45, 0.25, 0.12, 0.03, 0.12,
    0.03]; sizes 7..21 uniform; σ ∈ [0.2, σ_max], θ ∈ [-π, π], β_g ∈ [0.5, 4], β_p ∈ [1, 2] (β = 1 half the
    time for plateaus, BasicSR's split draw); sinc ω_c ∈ [π/3, π] below size 13, [π/5, π] from 13."""
    opts = make_degradation().kernel_opts[stage]
    rng = np.random.default_rng(stage)
    n = 12_000
    specs = [sample_blur_kernel(rng, (7, 9, 11, 13, 15, 17, 19, 21), **opts) for _ in range(n)]
    by_family: dict[str, list[KernelSpec]] = {}
    for spec in specs:
        by_family.setdefault(spec.family, []).append(spec)

    assert set(by_family) == {*KERNEL_FAMILIES, "sinc"}
    assert_frequency(len(by_family["sinc"]), n, 0.1, "sinc")
    for family, p in OFFICIAL_KERNEL_PROB.items():
        assert_frequency(len(by_family[family]), n, 0.9 * p, family)
    for size in range(7, 22, 2):
        assert_frequency(sum(s.kernel_size == size for s in specs), n, 1 / 8, f"size {size}")

    blur = [s for s in specs if s.family != "sinc"]
    assert_uniform_range([s.sig_x for s in blur], 0.2, sigma_max, "sigma_x")
    aniso = [s for s in blur if s.family.endswith("aniso")]
    assert_uniform_range([s.sig_y for s in aniso], 0.2, sigma_max, "sigma_y")
    assert_uniform_range([s.theta for s in aniso], -math.pi, math.pi, "theta")
    iso = [s for s in blur if not s.family.endswith("aniso")]
    assert all(s.sig_y == s.sig_x and s.theta == 0 for s in iso)

    generalized = [s.beta for s in blur if s.family.startswith("generalized")]
    assert_uniform_range(generalized, 0.5, 4.0, "beta_g")
    assert_frequency(sum(b < 1 for b in generalized), len(generalized), 0.5, "beta_g < 1")
    plateau = [s.beta for s in blur if s.family.startswith("plateau")]
    assert_uniform_range(plateau, 1.0, 2.0, "beta_p")
    assert_frequency(sum(b == 1 for b in plateau), len(plateau), 0.5, "beta_p == 1")
    assert all(s.beta == 1 for s in blur if s.family in ("iso", "aniso"))

    sinc = by_family["sinc"]
    assert_uniform_range([s.cutoff for s in sinc if s.kernel_size < 13], math.pi / 3, math.pi, "small sinc")
    assert_uniform_range([s.cutoff for s in sinc if s.kernel_size >= 13], math.pi / 5, math.pi, "large sinc")


def test_rendered_kernels_are_normalised_and_padded():
    rng = np.random.default_rng(0)
    opts = make_degradation().kernel_opts[0]
    for _ in range(200):
        spec = sample_blur_kernel(rng, (7, 9, 11, 13, 15, 17, 19, 21), **opts)
        kernel = spec.render(21)
        assert kernel.shape == (21, 21) and kernel.dtype == np.float64
        assert abs(kernel.sum() - 1) < 1e-9
        pad = (21 - spec.kernel_size) // 2
        if pad:
            assert not kernel[:pad].any() and not kernel[:, -pad:].any()
    pulse = KernelSpec("pulse", 21).render(21)
    assert pulse[10, 10] == 1 and pulse.sum() == 1


def test_batch_parameters_follow_official_distribution():
    """Resize up/down/keep [0.2, 0.7, 0.1] over [0.15, 1.5] then [0.3, 0.4, 0.3] over [0.3, 1.2], modes
    area/bilinear/bicubic uniform; Gaussian p 0.5 (σ [1, 30] then [1, 25]) else Poisson (scale [0.05, 3] then
    [0.05, 2.5]); grey p 0.4; JPEG [30, 95]; second blur p 0.8; final order p 0.5; final sinc p 0.8."""
    deg = make_degradation()
    n = 2000
    params = [deg.sample_params((1, 3, 80, 80), gen(seed)) for seed in range(n)]

    for stage, probs, (lo, hi), sigma_hi, poisson_hi in (
        ("1", (0.2, 0.7, 0.1), (0.15, 1.5), 30.0, 3.0),
        ("2", (0.3, 0.4, 0.3), (0.3, 1.2), 25.0, 2.5),
    ):
        resizes = [getattr(p, f"resize{stage}") for p in params]
        for direction, prob in zip(("up", "down", "keep"), probs, strict=True):
            assert_frequency(
                sum(r.direction == direction for r in resizes), n, prob, f"resize{stage} {direction}"
            )
        assert_uniform_range([r.scale for r in resizes if r.direction == "up"], 1.0, hi, f"resize{stage} up")
        assert_uniform_range(
            [r.scale for r in resizes if r.direction == "down"], lo, 1.0, f"resize{stage} down"
        )
        assert all(r.scale == 1 for r in resizes if r.direction == "keep")
        for mode in ("area", "bilinear", "bicubic"):
            assert_frequency(sum(r.mode == mode for r in resizes), n, 1 / 3, f"resize{stage} {mode}")

        noises = [getattr(p, f"noise{stage}") for p in params]
        gaussian = [x for x in noises if x.kind == "gaussian"]
        assert_frequency(len(gaussian), n, 0.5, f"gaussian noise {stage}")
        assert_uniform_range(np.concatenate([x.level for x in gaussian]), 1.0, sigma_hi, f"sigma {stage}")
        poisson = [x.level for x in noises if x.kind == "poisson"]
        assert_uniform_range(np.concatenate(poisson), 0.05, poisson_hi, f"poisson scale {stage}")
        assert_frequency(int(sum(x.gray.sum() for x in noises)), n, 0.4, f"grey noise {stage}")

    assert_uniform_range(np.concatenate([p.jpeg1 for p in params]), 30, 95, "jpeg quality 1")
    assert_uniform_range(np.concatenate([p.jpeg2 for p in params]), 30, 95, "jpeg quality 2")
    assert_frequency(sum(p.second_blur for p in params), n, 0.8, "second blur")
    assert_frequency(sum(p.sinc_then_jpeg for p in params), n, 0.5, "[resize + sinc] before JPEG")
    final = [p.final_sinc[0] for p in params]
    assert_frequency(sum(k.family == "sinc" for k in final), n, 0.8, "final sinc")
    assert_uniform_range(
        [k.cutoff for k in final if k.family == "sinc"], math.pi / 3, math.pi, "final sinc cutoff"
    )
    assert all(k.family == "pulse" for k in final if k.family != "sinc")


def test_grey_gaussian_noise_is_one_field_shared_by_the_batch():
    """The official trap: one (H, W) grey field for all grey samples, scaled by each sample's σ."""
    img = torch.full((3, 3, 16, 16), 0.5)
    sigma = torch.tensor([10.0, 20.0, 5.0])
    noise = gaussian_noise(img, sigma, torch.tensor([1.0, 1.0, 0.0]), gen(0))
    assert torch.equal(noise[0, 0], noise[0, 1]) and torch.equal(noise[0, 0], noise[0, 2])
    assert_float32_close(noise[0] / 10, noise[1] / 20, terms=6)  # × σ, / 255, / σ: three roundings a side
    assert not torch.equal(noise[2, 0], noise[2, 1])  # colour sample: independent channels
    assert 3.5 < noise[2].std().item() * 255 < 6.5


def test_poisson_noise_grey_samples_share_channels():
    img = torch.rand(2, 3, 16, 16, generator=gen(1))
    noise = poisson_noise(img, torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), gen(2))
    assert torch.equal(noise[1, 0], noise[1, 1]) and torch.equal(noise[1, 0], noise[1, 2])
    assert not torch.equal(noise[0, 0], noise[0, 1])


def test_differentiable_jpeg_passes_gradients():
    """``differentiable=True`` rounds with DiffJPEG's ``round(x) + (x - round(x))³``, so gradients flow."""
    img = torch.rand(1, 3, 16, 16, generator=gen(3), requires_grad=True)
    jpeg = DiffJPEG(differentiable=True)
    jpeg(img, 50).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    pre = jpeg.coefficients(img.detach(), 1.0)
    for soft, hard in zip(jpeg.compress(img.detach(), 1.0), pre, strict=True):
        # the same formula on the same coefficients: the same bits
        torch.testing.assert_close(soft, hard.round() + (hard - hard.round()) ** 3, rtol=0, atol=0)
        assert not torch.equal(soft, hard.round())
    for exact, hard in zip(DiffJPEG(differentiable=False).compress(img.detach(), 1.0), pre, strict=True):
        assert torch.equal(exact, hard.round())


# ----- the pipeline --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_output_sizes_and_8bit_lq(scale):
    deg = make_degradation(scale).eval()
    gt = gt_batch(0)
    out = deg(gt, gen(5))
    assert out["lq"].shape == (2, 3, 32 // scale, 32 // scale)  # x1 keeps the GT size
    assert out["gt"].shape == out["gt_usm"].shape == (2, 3, 32, 32)
    lq = out["lq"]
    assert lq.min() >= 0 and lq.max() <= 1
    # on the 8-bit grid: k/255 and ×255 are two float32 roundings of values ≤ 255
    torch.testing.assert_close(lq * 255, (lq * 255).round(), rtol=0, atol=float32_tolerance(2, 255.0))
    # The GT is a crop of the input on the LQ grid, and gt_usm is its sharpened version.
    hits = [
        (top, left)
        for top in range(0, 80 - 32 + 1, scale)
        for left in range(0, 80 - 32 + 1, scale)
        if torch.equal(gt[:, :, top : top + 32, left : left + 32], out["gt"])
    ]
    assert len(hits) == 1
    torch.testing.assert_close(out["gt_usm"], deg.usm(out["gt"]), rtol=0, atol=0)  # the same computation


def test_same_generator_seed_same_lq_and_different_seed_different_lq():
    gt = gt_batch(1)
    a = make_degradation().eval()(gt, gen(7))
    b = make_degradation().eval()(gt, gen(7))
    c = make_degradation().eval()(gt, gen(8))
    for key in ("lq", "gt", "gt_usm"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["lq"], c["lq"])


def test_blur_usm_gt_blurs_the_sharpened_gt():
    """RealSR V2: the first blur is applied to the USM-sharpened GT; everything else is unchanged."""
    gt = gt_batch(2)
    plain, v2 = make_degradation(), make_degradation(blur_usm_gt=True)
    params = plain.sample_params(gt.shape, gen(9))
    lq_v2 = v2.degrade(gt, params, gen(10))
    assert torch.equal(lq_v2, plain.degrade(plain.usm(gt), params, gen(10)))
    assert not torch.equal(lq_v2, plain.degrade(gt, params, gen(10)))


def test_too_small_gt_and_bad_queue_size_are_rejected():
    with pytest.raises(ValueError, match="sides >= 74"):
        make_degradation(scale=2)(torch.rand(2, 3, 64, 64), gen(0))
    with pytest.raises(ValueError, match="multiple of the batch size 3"):
        make_degradation(queue_size=4)(torch.rand(3, 3, 80, 80), gen(0))
    with pytest.raises(ValueError, match="gt_size=30 must be a multiple of scale=4"):
        RealESRGANDegradation(scale=4, gt_size=30)


def test_training_pair_pool():
    """Filling: each batch is returned as is and stored. Full: the pool is shuffled, its first B pairs are
    handed out and replaced by the new batch, so outputs are earlier pairs, never the current batch."""
    deg = make_degradation(queue_size=4).train()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handed_out = 0
    for step in range(8):
        gt = gt_batch(step)
        fresh = make_degradation(queue_size=0).eval()(gt, gen(step))  # the same batch without a pool
        out = deg(gt, gen(step))
        current = list(zip(fresh["lq"], fresh["gt"], strict=True))
        if step < 2:
            assert torch.equal(out["lq"], fresh["lq"]) and torch.equal(out["gt"], fresh["gt"])
            assert deg.queue_ptr == 2 * (step + 1)
        else:
            for lq, gt_crop in zip(out["lq"], out["gt"], strict=True):
                matches = [
                    i for i, (q, g) in enumerate(seen) if torch.equal(q, lq) and torch.equal(g, gt_crop)
                ]
                assert len(matches) == 1, f"step {step}: output pair is not one earlier pooled pair"
                handed_out += 1
            assert not any(torch.equal(out["gt"][0], g) for _, g in current)
        seen += current
        torch.testing.assert_close(out["gt_usm"], deg.usm(out["gt"]), rtol=0, atol=0)  # the same computation
    assert handed_out == 12 and deg.queue_ptr == 4
    # Evaluation mode bypasses the pool.
    deg.eval()
    gt = gt_batch(99)
    assert torch.equal(deg(gt, gen(99))["gt"], make_degradation(queue_size=0).eval()(gt, gen(99))["gt"])


def test_resume_repeats_the_uninterrupted_run():
    """k batches, save (the pool is extra state), fresh module, load, continue == the uninterrupted run."""
    steps, k = 6, 3
    uninterrupted = make_degradation(queue_size=4).train()
    expected = [uninterrupted(gt_batch(s), gen(100 + s)) for s in range(steps)]

    first = make_degradation(queue_size=4).train()
    for s in range(k):
        first(gt_batch(s), gen(100 + s))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_degradation(queue_size=4).train()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.queue_ptr == 4
    for s in range(k, steps):
        out = resumed(gt_batch(s), gen(100 + s))
        for key in ("lq", "gt", "gt_usm"):
            assert torch.equal(out[key], expected[s][key]), f"step {s}: {key} differs after resume"

    # Without the saved pool the continuation differs (the state matters).
    cold = make_degradation(queue_size=4).train()
    assert not torch.equal(cold(gt_batch(k), gen(100 + k))["gt"], expected[k]["gt"])


def test_empty_pool_state_round_trip():
    deg = make_degradation()
    state = deg.state_dict()
    fresh = make_degradation()
    fresh.load_state_dict(state)
    assert fresh.queue_ptr == 0 and fresh.queue_lq is None


def test_clean_crop_hands_the_gt():
    gt = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)
    out = CleanCrop(scale=4)(gt, 0)
    assert out["lq"] is gt and CleanCrop(scale=4).scale == 4
