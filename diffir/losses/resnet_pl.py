"""LaMa's ResNetPL: a perceptual loss on the features of a scene-segmentation encoder (ADE20k).

The encoder is CSAIL's ``resnet50dilated`` (semantic-segmentation-pytorch, as LaMa vendors it): a ResNet-50
with a deep 3×3 stem (64-64-128 channels), max-pool, the ``v1.5`` bottleneck (stride on the 3×3 conv) and
the last two stages dilated (2, 4) instead of strided, so the output stride is 8. That is exactly timm's
``ResNet(Bottleneck, (3, 4, 6, 3), stem_type="deep", stem_width=64, output_stride=8)``; only the stem's
parameter names differ, which :func:`ade20k_to_timm` maps.

LaMa reads ``$TORCH_HOME/ade20k/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth``
(``ModelBuilder.get_encoder``); so does :class:`ResNetPL` (``weights_path`` replaces ``$TORCH_HOME``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.resnet import Bottleneck, ResNet

from diffir.metrics.weights import require_hub_checkpoint

from .frozen import FrozenNetworkLoss
from .perceptual import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "ADE20K_ENCODER",
    "ResNetPL",
    "ade20k_encoder_file",
    "ade20k_to_timm",
    "encoder_features",
    "resnet50dilated",
]

log = logging.getLogger(__name__)

# (folder relative to the weights root, file name, URL) of the encoder LaMa's ResNetPL loads.
ADE20K_ENCODER = (
    "ade20k/ade20k-resnet50dilated-ppm_deepsup",
    "encoder_epoch_20.pth",
    "http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth",
)

# CSAIL stem names -> timm deep-stem names; the four stages have the same names in both.
_STEM_KEYS = {
    "conv1.": "conv1.0.",
    "bn1.": "conv1.1.",
    "conv2.": "conv1.3.",
    "bn2.": "conv1.4.",
    "conv3.": "conv1.6.",
    "bn3.": "bn1.",
}


def resnet50dilated() -> ResNet:
    """The ADE20k ``resnet50dilated`` encoder as a timm ResNet (no classifier head), randomly initialised."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        num_classes=0,
        global_pool="",
        stem_type="deep",
        stem_width=64,
        output_stride=8,
    )


def ade20k_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an ADE20k ``encoder_epoch_20.pth`` state dict (CSAIL ``ResnetDilated``) to timm's names."""
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in _STEM_KEYS if key.startswith(p)), None)
        renamed[_STEM_KEYS[prefix] + key[len(prefix) :] if prefix else key] = value
    return renamed


def ade20k_encoder_file(weights_path: str | Path | None = None) -> Path:
    """LaMa's encoder file under ``weights_path`` (default ``$TORCH_HOME``), or a one-line
    :class:`~diffir.metrics.weights.MissingWeightsError` naming it and its folder."""
    folder, filename, url = ADE20K_ENCODER
    root = Path(weights_path) if weights_path is not None else Path(torch.hub.get_dir()).parent
    directory = root / folder
    return require_hub_checkpoint(
        filename,
        url=url,
        how_to=f"wget -P {directory} {url}",
        what="ResNetPL (LaMa's ADE20k resnet50dilated encoder)",
        directory=directory,
    )


def encoder_features(encoder: ResNet, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of the four stages (LaMa's ``return_feature_maps=True``): strides 4, 8, 8, 8."""
    x = encoder.maxpool(encoder.act1(encoder.bn1(encoder.conv1(x))))
    features = []
    for stage in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
        x = stage(x)
        features.append(x)
    return features


class ResNetPL(FrozenNetworkLoss):
    """``weight · Σ_levels MSE(φ_l(norm(out)), φ_l(norm(gt)))`` over the four encoder stages (LaMa ResNetPL;
    DiffIR-inpainting: weight 30). Inputs are in [0, 1] and ImageNet-normalised. The encoder is frozen and
    kept in eval mode. ``pretrained=False`` (random encoder, with a warning) is for tests and smoke runs.
    """

    def __init__(
        self, weight: float = 30.0, pretrained: bool = True, weights_path: str | Path | None = None
    ) -> None:
        super().__init__()
        self.weight = weight
        path = ade20k_encoder_file(weights_path) if pretrained else None  # fail before building the net
        self.hold("encoder", resnet50dilated())
        if path is not None:
            self.encoder.load_state_dict(
                ade20k_to_timm(torch.load(path, map_location="cpu", weights_only=True))
            )
        else:
            log.warning(
                "ResNetPL uses a randomly initialised encoder (pretrained=False): its values are meaningless, "
                "use this only for tests and smoke runs"
            )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, *, out: torch.Tensor, gt: torch.Tensor, **_) -> torch.Tensor:
        pred_feats = encoder_features(self.encoder, (out - self.mean) / self.std)
        gt_feats = encoder_features(self.encoder, (gt - self.mean) / self.std)
        return (
            torch.stack([F.mse_loss(p, t) for p, t in zip(pred_feats, gt_feats, strict=True)]).sum()
            * self.weight
        )
