"""Parity checks of the Real-ESRGAN degradation pieces (reference README §6): kernels, filter2d, USM
sharpening, Gaussian / Poisson noise, DiffJPEG, and the pipeline's default options.

Every parameter (sizes, qualities, kernel sizes, seeds) is read from the reference file, so hidden files with
other configurations are checked the same way.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from numerics import assert_float32_close
from torch.testing import assert_close
from torchvision.transforms.functional import rgb_to_grayscale

from diffir.config import compose_config
from diffir.data.realesrgan import (
    DiffJPEG,
    RealESRGANDegradation,
    USMSharp,
    add_gaussian_noise,
    add_poisson_noise,
    bivariate_gaussian_kernel,
    circular_lowpass_kernel,
    filter2d,
    gaussian_noise,
    generalized_gaussian_kernel,
    jpeg_quality_to_factor,
    plateau_kernel,
    poisson_levels,
    poisson_noise,
)


def _exact(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    mismatches = int((actual != expected).sum())
    assert mismatches == 0, f"{what}: {mismatches} of {expected.numel()} values differ (must be exact)"


def _kernel_check(make: Callable[..., np.ndarray], *names: str) -> Callable[[dict], None]:
    """Check of a kernel kind: float64 against ``kernel`` at 1e-12 (we compute in float64, as the official
    code), the float32 cast handed to the pipeline against ``kernel_float32`` at 1e-6."""

    def check(ref: dict) -> None:
        params = ref["params"]
        kernel = make(*(params[name] for name in names))
        assert kernel.dtype == np.float64, f"{ref['case']}: kernel dtype {kernel.dtype}, expected float64"
        assert_close(torch.from_numpy(kernel), ref["kernel"], rtol=0, atol=1e-12)
        assert_close(torch.from_numpy(kernel).float(), ref["kernel_float32"], rtol=0, atol=1e-6)

    return check


def check_filter2d(ref: dict) -> None:
    out = filter2d(ref["img"], ref["kernel"])
    # each output pixel sums k*k products
    assert_float32_close(out, ref["output"], terms=ref["kernel"][0].numel(), msg="filter2d output")


def check_usm_sharp(ref: dict) -> None:
    args = ref["args"]
    usm = USMSharp(radius=args["radius"], sigma=args["sigma"])
    assert usm.radius == args["effective_kernel_size"]
    assert_close(usm.kernel, ref["kernel"], rtol=0, atol=1e-9)
    img, threshold = ref["img"], args["forward_threshold"]
    blur = usm.blur(img)
    terms = usm.kernel.numel()  # each blurred pixel sums k*k products
    assert_float32_close(blur, ref["blur"], terms=terms, msg="usm blur")
    # The hard mask is exact: the reference keeps |residual|*255 at least threshold_margin from the threshold.
    _exact((torch.abs(img - blur) * 255 > threshold).float(), ref["mask"], "usm mask")
    assert_float32_close(usm.blur(ref["mask"]), ref["soft_mask"], terms=terms, msg="usm soft mask")
    out = usm(img, weight=args["forward_weight"], threshold=threshold)
    assert_float32_close(out, ref["output"], terms=2 * terms, msg="usm output")  # two blurs feed it


def _seeded(ref: dict) -> torch.Generator:
    return torch.Generator().manual_seed(int(ref["torch_manual_seed"]))


def check_gaussian_noise(ref: dict) -> None:
    img, sigma, gray = ref["img"], ref["sigma"], ref["gray_noise"]
    b, c, h, w = img.shape
    any_gray = bool(gray.sum() > 0)
    assert ("randn_gray" in ref) == any_gray, "randn_gray is stored exactly when a sample is grey"
    # The stored draws are the official ones in the documented order (grey field first, shared by the batch).
    # torch.randn computes Box-Muller (log, sqrt, cos) vectorised on AVX2 CPUs and scalar elsewhere: the same
    # sequence, each value within a few ulps (8 eps of the draws' magnitude).
    g = _seeded(ref)
    if any_gray:
        assert_float32_close(
            torch.randn(h, w, generator=g), ref["randn_gray"], terms=8, msg="randn_gray draw"
        )
    assert_float32_close(torch.randn(b, c, h, w, generator=g), ref["randn_color"], terms=8, msg="randn_color")
    # Our functions draw the same numbers from a generator in that state and combine them as the official
    # code does (a draw times sigma/255, mixed with the grey field and added: a few more roundings).
    noise = gaussian_noise(img, sigma, gray, _seeded(ref))
    assert_float32_close(noise, ref["noise"], terms=16, msg="noise")
    output = add_gaussian_noise(img, sigma, gray, _seeded(ref))
    assert_float32_close(output, ref["output"], terms=16, msg="output")


def check_poisson_noise(ref: dict) -> None:
    img, scale, gray = ref["img"], ref["scale"], ref["gray_noise"]
    any_gray = bool(gray.sum() > 0)
    img_rounded, vals = poisson_levels(img)
    _exact(img_rounded, ref["img_rounded"], "img_rounded")
    _exact(vals.flatten(), ref["vals_color"], "vals_color")
    _exact(img_rounded * vals, ref["poisson_rate_color"], "poisson_rate_color")
    g = _seeded(ref)
    if any_gray:
        img_gray = rgb_to_grayscale(img, num_output_channels=1)
        assert_close(img_gray, ref["img_gray"], rtol=0, atol=1e-6)
        gray_rounded, vals_gray = poisson_levels(img_gray)
        _exact(gray_rounded, ref["img_gray_rounded"], "img_gray_rounded")
        _exact(vals_gray.flatten(), ref["vals_gray"], "vals_gray")
        _exact(gray_rounded * vals_gray, ref["poisson_rate_gray"], "poisson_rate_gray")
        _exact(torch.poisson(gray_rounded * vals_gray, generator=g), ref["poisson_draws_gray"], "grey draws")
    _exact(torch.poisson(img_rounded * vals, generator=g), ref["poisson_draws_color"], "colour draws")
    assert_close(poisson_noise(img, scale, gray, _seeded(ref)), ref["noise"], rtol=0, atol=1e-6)
    assert_close(add_poisson_noise(img, scale, gray, _seeded(ref)), ref["output"], rtol=0, atol=1e-6)


def check_diffjpeg(ref: dict) -> None:
    jpeg = DiffJPEG(**ref["args"])
    img, quality = ref["img"], ref["quality"]
    assert isinstance(quality, torch.Tensor) == bool(ref["quality_is_tensor"])
    factor = jpeg_quality_to_factor(quality)
    assert_close(
        torch.as_tensor(factor, dtype=torch.float32), torch.as_tensor(ref["factor"]), rtol=0, atol=1e-6
    )
    h, w = img.shape[-2:]
    ph, pw = ref["padded_hw"]
    assert (ph, pw) == (math.ceil(h / 16) * 16, math.ceil(w / 16) * 16)
    padded = F.pad(img, (0, pw - w, 0, ph - h))
    pre = jpeg.coefficients(padded, factor)
    quantized = jpeg.compress(padded, factor)
    terms = 3 * 64  # a coefficient: an 8x8 DCT of a 3-term colour conversion
    for name, pre_c, q_c in zip(("y", "cb", "cr"), pre, quantized, strict=True):
        want = ref[f"{name}_pre_rounding"]
        assert_float32_close(pre_c, want, terms=terms, msg=f"{name}_pre_rounding")
        # the rounding is exact where ours lies on the reference's side of every k + 0.5 boundary (the
        # reference keeps each coefficient >= 1.6e-3 from one)
        margin = ((want - want.floor()) - 0.5).abs()
        assert ((pre_c - want).abs() < margin).all(), f"{name}: a coefficient crosses a rounding boundary"
        _exact(q_c, ref[f"{name}_quantized"], f"{name}_quantized")
    out = jpeg(img, quality.clone() if isinstance(quality, torch.Tensor) else quality)
    # the inverse: dequantise, 64-term IDCT, 3-term colour conversion, upsampled chroma
    assert_float32_close(out, ref["output"], terms=terms, msg="diffjpeg output")
    if isinstance(quality, torch.Tensor):  # unlike the official code, the quality tensor is not overwritten
        q = quality.clone()
        jpeg(img, q)
        _exact(q, quality, "quality after DiffJPEG")


# Options of the official yml that the degradation does not implement (owned by the training config).
NOT_DEGRADATION_OPTIONS = {
    "scale",  # a required argument, set by the task config
    "l1_gt_usm",  # which GT the losses use (V1 / V2): the training module's choice
    "percep_gt_usm",
    "gan_gt_usm",
    "use_hflip",  # loader augmentation
    "use_rot",
}


def check_degradation_options(ref: dict) -> None:
    """``RealESRGANDegradation``'s keyword defaults are the official options (one source of truth)."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(RealESRGANDegradation).parameters.items()
        if p.default is not inspect.Parameter.empty
    }

    def norm(value):
        return [norm(v) for v in value] if isinstance(value, list | tuple) else value

    checked = set()
    for section in ("model_options", "dataset_options"):
        for key, value in ref[section].items():
            if key in NOT_DEGRADATION_OPTIONS:
                continue
            if key in ("blur_kernel_size", "blur_kernel_size2"):  # kernels are padded to this size
                assert max(defaults["kernel_sizes"]) == value, f"{section}.{key}={value}"
                continue
            assert key in defaults, f"{section}.{key} has no RealESRGANDegradation argument"
            assert norm(defaults[key]) == norm(value), (
                f"{section}.{key}: default {defaults[key]!r} != {value!r}"
            )
            checked.add(key)
    assert checked, "no option compared"
    assert inspect.signature(RealESRGANDegradation).parameters["scale"].default is inspect.Parameter.empty
    check_adversarial_recipe(ref)


USM_FLAGS = {"l1_gt_usm": "l1", "percep_gt_usm": "perceptual", "gan_gt_usm": "gan"}


def check_adversarial_recipe(ref: dict) -> None:
    """The same official file's GAN-stage settings are what ``task=realsr adversarial=realsr_v1|v2`` composes:
    discriminator, GAN and perceptual losses, one D step per G step, and the USM flags of the matching preset."""
    flags = {USM_FLAGS[k] for k, v in ref["model_options"].items() if k in USM_FLAGS and v}
    preset = "realsr_v2" if flags else "realsr_v1"
    cfg = compose_config(["task=realsr", "stage=2", f"adversarial={preset}"])
    adversary = cfg.gan.adversary
    network_d = {k: v for k, v in ref["network_d"].items() if k != "type"}
    assert ref["network_d"]["type"] == "UNetDiscriminatorSN" and adversary.discriminator._target_.endswith(
        ".UNetDiscriminatorSN"
    )
    assert {k: adversary.discriminator[k] for k in network_d} == network_d
    gan = {k: v for k, v in ref["gan_opt"].items() if k != "type"}
    assert {k: adversary.gan_loss[k] for k in gan} == gan
    assert (ref["net_d_iters"], ref["net_d_init_iters"]) == (1, 0)  # what the training step implements
    assert ref["pixel_opt"] == {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}
    assert cfg.losses.l1.criterion == "l1" and cfg.losses.l1.weight == 1.0
    spec = cfg.losses.perceptual
    arguments = {
        name: p.default
        for name, p in inspect.signature(get_class(spec._target_)).parameters.items()
        if p.default is not inspect.Parameter.empty
    } | {k: v for k, v in spec.items() if k != "_target_"}
    options = {k: v for k, v in ref["perceptual_opt"].items() if k != "type"}
    layer_weights = instantiate(spec, pretrained=False).layer_weights  # None in the signature: BasicSR's
    assert dict(layer_weights) == options.pop("layer_weights")
    for key, value in options.items():
        assert arguments[key] == value, f"perceptual_opt.{key}: {arguments[key]!r} != {value!r}"
    # V2 also feeds the sharpened GT to the teacher (docs/method.md §3.2); the flags name the rest
    assert set(cfg.gt_usm) - {"teacher"} == flags, f"{preset}: gt_usm={list(cfg.gt_usm)}, official {flags}"


CHECKS: dict[str, Callable[[dict], None]] = {
    "kernel_bivariate_gaussian": _kernel_check(
        bivariate_gaussian_kernel, "kernel_size", "sig_x", "sig_y", "theta", "isotropic"
    ),
    "kernel_generalized_gaussian": _kernel_check(
        generalized_gaussian_kernel, "kernel_size", "sig_x", "sig_y", "theta", "beta", "isotropic"
    ),
    "kernel_plateau": _kernel_check(
        plateau_kernel, "kernel_size", "sig_x", "sig_y", "theta", "beta", "isotropic"
    ),
    "kernel_sinc": _kernel_check(circular_lowpass_kernel, "cutoff", "kernel_size", "pad_to"),
    "filter2d": check_filter2d,
    "usm_sharp": check_usm_sharp,
    "add_gaussian_noise_pt": check_gaussian_noise,
    "add_poisson_noise_pt": check_poisson_noise,
    "diffjpeg": check_diffjpeg,
    "degradation_options": check_degradation_options,
}
