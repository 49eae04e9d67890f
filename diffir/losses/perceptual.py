"""BasicSR's perceptual (and style) loss on torchvision VGG features, as DiffIR's GAN stages use it.

The ImageNet VGG weights are read from the torch hub cache under torchvision's file name
(``vgg19-dcbb9e9d.pth``); nothing is downloaded. ``pretrained=False`` builds a random VGG for tests and smoke
runs, with a logged warning, since the loss is then meaningless.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

from diffir.metrics.weights import require_hub_checkpoint

from .frozen import FrozenNetworkLoss
from .pixel import CRITERIA

__all__ = ["DEFAULT_LAYER_WEIGHTS", "PerceptualLoss", "VGGFeatureExtractor", "vgg_layer_names"]

log = logging.getLogger(__name__)

# DiffIR-SRGAN / DiffIR-RealSR ``perceptual_opt``: features before ReLU.
DEFAULT_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}

_VGG_CFGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_layer_names(features: nn.Sequential) -> list[str]:
    """BasicSR's names of the layers of a torchvision VGG ``features``: conv1_1, (bn1_1,) relu1_1, ..., pool1."""
    names, block, index = [], 1, 1
    for layer in features:
        if isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 1
        elif isinstance(layer, nn.Conv2d):
            names.append(f"conv{block}_{index}")
        elif isinstance(layer, nn.BatchNorm2d):
            names.append(f"bn{block}_{index}")
        else:  # the ReLU closes a conv(-bn)-relu unit
            names.append(f"relu{block}_{index}")
            index += 1
    return names


def _vgg_features(vgg_type: str, pretrained: bool) -> nn.Sequential:
    """torchvision's ``vgg*.features`` (``_bn`` variants too), with the cached ImageNet weights or random."""
    base = vgg_type.removesuffix("_bn")
    if base not in _VGG_CFGS:
        valid = [f"{name}{bn}" for name in _VGG_CFGS for bn in ("", "_bn")]
        raise ValueError(f"unknown vgg_type {vgg_type!r}; valid: {valid}")
    features = tv_vgg.make_layers(tv_vgg.cfgs[_VGG_CFGS[base]], batch_norm=vgg_type.endswith("_bn"))
    if not pretrained:
        log.warning(
            "PerceptualLoss uses a randomly initialised %s (pretrained=False): its values are meaningless, "
            "use this only for tests and smoke runs",
            vgg_type,
        )
        return features
    weights_enum = getattr(tv_vgg, f"{vgg_type.upper()}_Weights").IMAGENET1K_V1
    path = require_hub_checkpoint(
        weights_enum.url.rsplit("/", 1)[-1],
        url=weights_enum.url,
        how_to=f"python -c \"import torchvision; torchvision.models.{vgg_type}(weights='DEFAULT')\"",
        what=f"The perceptual loss ({vgg_type})",
    )
    state = torch.load(path, map_location="cpu", weights_only=True)
    features.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    )
    return features


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG features at the named layers (BasicSR ``VGGFeatureExtractor``).

    ``conv*`` names tap *before* the ReLU; each tap is cloned because torchvision's ReLUs are in place.
    ``range_norm`` maps [-1, 1] inputs to [0, 1]; ``use_input_norm`` then applies ImageNet mean / std.
    The network is cut after the deepest requested layer and always stays in eval mode.
    """

    def __init__(
        self,
        layer_name_list: Sequence[str],
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        range_norm: bool = False,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        features = _vgg_features(vgg_type, pretrained)
        names = vgg_layer_names(features)
        unknown = [name for name in layer_name_list if name not in names]
        if unknown:
            raise ValueError(f"unknown {vgg_type} layer names {unknown}; valid: {names}")
        last = max(names.index(name) for name in layer_name_list)
        self.features = features[: last + 1]
        self.names = names[: last + 1]
        self.layer_name_list = list(layer_name_list)
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Stay in eval mode (BN variants), whatever the parent module does."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out = {}
        for name, layer in zip(self.names, self.features, strict=True):
            x = layer(x)
            if name in self.layer_name_list:
                out[name] = x.clone()
        return out


class PerceptualLoss(FrozenNetworkLoss):
    """BasicSR ``PerceptualLoss``: Σ_k w_k · d(φ_k(out), φ_k(gt)) × ``perceptual_weight``, plus the same
    on Gram matrices × ``style_weight``; ``d`` is the mean L1 / MSE (``criterion`` l1 / l2) or the Frobenius
    norm of the difference (``fro``). A zero weight switches its term off.

    Called like the other losses: ``loss(out=..., gt=...)`` returns the scalar sum of the active terms.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        range_norm: bool = False,
        perceptual_weight: float = 1.0,
        style_weight: float = 0.0,
        criterion: str = "l1",
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        if criterion not in (*CRITERIA, "fro"):
            raise ValueError(f"perceptual criterion must be one of {[*CRITERIA, 'fro']}, got {criterion!r}")
        if perceptual_weight <= 0 and style_weight <= 0:
            raise ValueError("PerceptualLoss needs perceptual_weight > 0 or style_weight > 0")
        self.layer_weights = dict(DEFAULT_LAYER_WEIGHTS if layer_weights is None else layer_weights)
        self.perceptual_weight, self.style_weight, self.criterion = perceptual_weight, style_weight, criterion
        self.hold(
            "vgg",
            VGGFeatureExtractor(list(self.layer_weights), vgg_type, use_input_norm, range_norm, pretrained),
        )

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The criterion between two feature maps (or Gram matrices)."""
        if self.criterion == "fro":
            return torch.norm(a - b, p="fro")
        return CRITERIA[self.criterion](a, b)

    @staticmethod
    def gram(x: torch.Tensor) -> torch.Tensor:
        """Gram matrix of ``(n, c, h, w)`` features, normalised by ``c·h·w``."""
        n, c, h, w = x.shape
        f = x.reshape(n, c, h * w)
        return f.bmm(f.transpose(1, 2)) / (c * h * w)

    def terms(self, out: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(perceptual, style)`` as BasicSR returns them (``None`` for a term whose weight is 0)."""
        x_features, gt_features = self.vgg(out), self.vgg(gt.detach())
        percep = style = None
        if self.perceptual_weight > 0:
            percep = sum(
                self.distance(x_features[k], gt_features[k]) * self.layer_weights[k] for k in x_features
            )
            percep = percep * self.perceptual_weight
        if self.style_weight > 0:
            style = sum(
                self.distance(self.gram(x_features[k]), self.gram(gt_features[k])) * self.layer_weights[k]
                for k in x_features
            )
            style = style * self.style_weight
        return percep, style

    def forward(self, *, out: torch.Tensor, gt: torch.Tensor, **_) -> torch.Tensor:
        return sum(term for term in self.terms(out, gt) if term is not None)
