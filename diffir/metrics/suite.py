"""One metric accumulator shared by training-time validation and the evaluation script."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import distributed as dist
from torch import nn

from diffir.metrics.perceptual import FIDMetric, LPIPSMetric
from diffir.metrics.psnr_ssim import ImageLike, psnr, ssim

__all__ = ["METRIC_NAMES", "MetricSuite"]

METRIC_NAMES = ("psnr", "ssim", "lpips", "fid")


class MetricSuite(nn.Module):
    """Accumulate per-image PSNR / SSIM / LPIPS and set-level FID over batches of (prediction, GT) pairs.

    ``crop_border`` and ``test_y_channel`` apply to PSNR and SSIM only (BasicSR convention); LPIPS and
    FID always see the full RGB images. All metrics score the 8-bit images (see ``psnr_ssim``).

    The LPIPS / FID networks follow ``.to(device)`` but are deliberately not registered submodules:
    they are fixed pretrained weights that must not end up in model checkpoints, optimisers, DDP
    parameter sync, or be switched to train mode by a parent module.
    """

    def __init__(
        self,
        metrics: Sequence[str],
        crop_border: int = 0,
        test_y_channel: bool = False,
        lpips_net: str = "alex",
        lpips_pretrained_backbone: bool = True,
        fid_feature_extractor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        unknown = [m for m in metrics if m not in METRIC_NAMES]
        if unknown or not metrics:
            problem = f"unknown metric name(s) {unknown}" if unknown else "no metrics requested"
            raise ValueError(f"{problem}; valid names: {list(METRIC_NAMES)}")
        self.metrics = list(dict.fromkeys(metrics))
        self.crop_border = crop_border
        self.test_y_channel = test_y_channel
        # A plain dict, so nn.Module does not register the networks (see the class docstring).
        self._nets: dict[str, nn.Module] = {}
        if "lpips" in self.metrics:
            self._nets["lpips"] = LPIPSMetric(lpips_net, lpips_pretrained_backbone)
        if "fid" in self.metrics:
            self._nets["fid"] = FIDMetric(fid_feature_extractor)
        # Empty, non-persistent: moves with the suite and tells _apply where the hidden networks belong.
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)
        self._records: list[dict[str, str | float]] = []

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MetricSuite:
        """Move the hidden metric networks to wherever ``.to()`` / ``.cuda()`` moved the suite."""
        super()._apply(fn, recurse)
        for net in self._nets.values():
            net.to(self._device_probe.device)
        return self

    @torch.no_grad()
    def update(self, pred: ImageLike, gt: ImageLike, names: Sequence[str] | None = None) -> None:
        """Score one batch (``BCHW`` / ``CHW`` tensors in [0, 1], or a numpy uint8 ``HWC`` image)."""
        batch = pred.shape[0] if isinstance(pred, torch.Tensor) and pred.ndim == 4 else 1
        if names is None:
            names = [str(len(self._records) + i) for i in range(batch)]
        if len(names) != batch:
            raise ValueError(f"got {len(names)} names for a batch of {batch} images")
        per_metric: dict[str, list[float]] = {}
        for name, fn in (("psnr", psnr), ("ssim", ssim)):
            if name in self.metrics:
                values = fn(pred, gt, crop_border=self.crop_border, test_y_channel=self.test_y_channel)
                # float64: as_tensor of a Python float (a numpy image's score) would round it to float32
                per_metric[name] = torch.as_tensor(values, dtype=torch.float64).reshape(-1).tolist()
        if "lpips" in self._nets:
            per_metric["lpips"] = self._nets["lpips"](pred, gt).reshape(-1).tolist()
        if "fid" in self._nets:
            self._nets["fid"].update(pred, gt)
        for i, image_name in enumerate(names):
            self._records.append({"name": image_name, **{k: v[i] for k, v in per_metric.items()}})

    def compute(self) -> dict[str, float]:
        """Mean of each per-image metric over all images so far, plus FID over the whole set.

        Under ``torch.distributed`` (DDP validation, each process scoring its own shard) every process calls
        this: the per-image values of all processes are gathered first, so the means are exact (not an average
        of per-process averages), and FID's sums are reduced by torchmetrics.
        """
        records = self._gathered_records()
        if not records:
            raise RuntimeError("MetricSuite.compute() called before any update()")
        result: dict[str, float] = {}
        for name in self.metrics:
            if name == "fid":
                result[name] = self._nets["fid"].compute()
            else:
                result[name] = sum(float(r[name]) for r in records) / len(records)
        return result

    def _gathered_records(self) -> list[dict[str, str | float]]:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self._records
        shards: list[list[dict[str, str | float]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, self._records)
        return [record for shard in shards for record in shard or []]

    def per_image(self) -> list[dict[str, str | float]]:
        """One dict per image: ``name`` and its PSNR / SSIM / LPIPS (FID has no per-image value)."""
        return [dict(r) for r in self._records]

    def reset(self) -> None:
        """Start a new evaluation."""
        self._records = []
        if "fid" in self._nets:
            self._nets["fid"].reset()
