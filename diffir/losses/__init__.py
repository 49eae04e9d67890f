"""Losses, composable from config: each takes the step's tensors by keyword and returns a scalar.

A loss set is a mapping ``name -> loss module``; the total is the sum (each loss carries its ``weight``),
and each term is logged under its name. ``PixelLoss``, ``PriorLoss``, ``PerceptualLoss`` and ``ResNetPL``
follow that keyword protocol; the GAN primitives (``gan``: ``GANLoss``, ``NonSaturatingWithR1``, feature
matching) take discriminator outputs and are combined with a discriminator by the adversaries (``adversary``:
``BCEAdversary``, ``LamaAdversary``, and the discriminator's update).
"""

from .gan import FeatureMatchingLoss, GANLoss, NonSaturatingWithR1, feature_matching_loss
from .perceptual import PerceptualLoss, VGGFeatureExtractor
from .pixel import CRITERIA, PixelLoss
from .prior import PriorLoss, prior_kl
from .resnet_pl import ResNetPL

__all__ = [
    "CRITERIA",
    "FeatureMatchingLoss",
    "GANLoss",
    "NonSaturatingWithR1",
    "PerceptualLoss",
    "PixelLoss",
    "PriorLoss",
    "ResNetPL",
    "VGGFeatureExtractor",
    "feature_matching_loss",
    "prior_kl",
]
