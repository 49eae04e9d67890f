"""Image-restoration metrics with the field's conventions (BasicSR PSNR/SSIM, LPIPS v0.1, FID)."""

from diffir.metrics.perceptual import FIDMetric, LPIPSMetric
from diffir.metrics.psnr_ssim import psnr, rgb_to_y, ssim, to_8bit_values
from diffir.metrics.suite import METRIC_NAMES, MetricSuite
from diffir.metrics.weights import MissingWeightsError, hub_checkpoints_dir, require_hub_checkpoint

__all__ = [
    "METRIC_NAMES",
    "FIDMetric",
    "LPIPSMetric",
    "MetricSuite",
    "MissingWeightsError",
    "hub_checkpoints_dir",
    "psnr",
    "require_hub_checkpoint",
    "rgb_to_y",
    "ssim",
    "to_8bit_values",
]
