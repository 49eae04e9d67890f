"""LPIPS (``lpips`` package, v0.1) and FID (torchmetrics / torch-fidelity Inception) for restoration.

Both score the 8-bit images an evaluation script would save (inputs are clamped and rounded like PSNR's),
which is what the SISR, RealSR and inpainting protocols measure. Backbone weights are never downloaded:
a missing cache file raises :class:`~diffir.metrics.weights.MissingWeightsError` with instructions, and
tests can use random backbones (``pretrained_backbone=False``, ``feature_extractor=...``).
"""

from __future__ import annotations

import warnings

import lpips
import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image.fid import FrechetInceptionDistance

from diffir.metrics.psnr_ssim import ImageLike, to_8bit_values
from diffir.metrics.weights import require_hub_checkpoint

__all__ = ["FIDMetric", "LPIPSMetric"]

# torchvision ImageNet weights lpips loads for its trunks: net -> (cache file, torchvision constructor).
_LPIPS_BACKBONES = {"alex": ("alexnet-owt-7be5be79.pth", "alexnet"), "vgg": ("vgg16-397923af.pth", "vgg16")}

# torch-fidelity's copy of the TF FID Inception weights; pytorch-fid ships the same file under another name.
_FID_WEIGHTS = URL_INCEPTION_V3.rsplit("/", 1)[-1]
_FID_WEIGHTS_ALT = "pt_inception-2015-12-05-6726825d.pth"


class LPIPSMetric(nn.Module):
    """Per-image LPIPS distance (lower is better) between predictions and references in [0, 1].

    ``net='alex'`` is the SISR protocol, ``'vgg'`` the RealSR and inpainting one. The linear calibration
    layers ship with ``lpips``; the ImageNet trunk comes from the torch hub cache, or is randomly
    initialised when ``pretrained_backbone=False`` (for offline tests only: values are then meaningless).
    """

    def __init__(self, net: str = "alex", pretrained_backbone: bool = True) -> None:
        super().__init__()
        if net not in _LPIPS_BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; valid: {sorted(_LPIPS_BACKBONES)}")
        if pretrained_backbone:
            filename, constructor = _LPIPS_BACKBONES[net]
            require_hub_checkpoint(
                filename,
                url=f"https://download.pytorch.org/models/{filename}",
                how_to=f"python -c \"import torchvision; torchvision.models.{constructor}(weights='DEFAULT')\"",
                what=f"LPIPS (net={net!r})",
            )
        with warnings.catch_warnings():  # lpips uses torchvision's deprecated ``pretrained=`` argument
            warnings.simplefilter("ignore", UserWarning)
            self.net = lpips.LPIPS(pretrained=True, net=net, pnet_rand=not pretrained_backbone, verbose=False)
        self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> LPIPSMetric:
        """Stay in eval mode (the linear layers have dropout), whatever the parent module does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, pred: ImageLike, gt: ImageLike) -> torch.Tensor:
        """LPIPS of ``CHW`` (0-d result) or ``BCHW`` (``(B,)`` result) images; also numpy uint8 ``HWC``."""
        x, batched = to_8bit_values(pred)
        y, _ = to_8bit_values(gt)
        if x.shape != y.shape:
            raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        param = next(self.net.parameters())
        x, y = (t.to(device=param.device, dtype=param.dtype) / 127.5 - 1.0 for t in (x, y))
        values = self.net(x, y).flatten()
        return values if batched else values[0]


class FIDMetric(nn.Module):
    """Fréchet Inception Distance between the set of predictions and the set of references.

    Default: the standard TF-ported FID Inception (pool3, 2048-d) through torchmetrics, fed uint8 images
    and resized to 299 with TF1-style bilinear interpolation (torch-fidelity's original-FID mode; needs
    the weights in the torch hub cache). ``feature_extractor`` replaces it with any module mapping float
    ``(B, 3, H, W)`` images in [0, 1] to ``(B, d)`` features (``num_features`` attribute optional).
    """

    def __init__(self, feature_extractor: nn.Module | None = None) -> None:
        super().__init__()
        self._uint8_input = feature_extractor is None
        if feature_extractor is None:
            weights = require_hub_checkpoint(
                _FID_WEIGHTS,
                url=URL_INCEPTION_V3,
                how_to=(
                    'python -c "from torchmetrics.image.fid import FrechetInceptionDistance as F; '
                    'F(feature=2048)"'
                ),
                what="FID (Inception-v3, pt_inception-2015-12-05)",
                alternatives=(_FID_WEIGHTS_ALT,),
            )
            self.fid = FrechetInceptionDistance(
                feature=2048, normalize=False, feature_extractor_weights_path=str(weights), antialias=False
            )
        else:
            self.fid = FrechetInceptionDistance(feature=feature_extractor, normalize=True)

    @torch.no_grad()
    def update(self, pred: ImageLike, gt: ImageLike) -> None:
        """Add a batch: ``pred`` to the generated set and ``gt`` to the reference set."""
        for images, real in ((gt, True), (pred, False)):
            x, _ = to_8bit_values(images)
            x = x.to(torch.uint8) if self._uint8_input else (x / 255.0).float()
            self.fid.update(x.to(self.fid.device), real=real)

    def compute(self) -> float:
        """FID over everything added since the last reset (needs at least two images per set)."""
        return float(self.fid.compute())

    def reset(self) -> None:
        """Forget both sets."""
        self.fid.reset()
