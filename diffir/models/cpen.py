"""CPEN: the compact IR prior extraction network (paper §3.1, Fig. 2; docs/method.md §1.3).

CPEN_S1 sees the LQ and the GT (both pixel-unshuffled to a common resolution, LQ part first) and CPEN_S2
sees the LQ only; both map to one IPR vector ``z ∈ R^{4·n_feats}`` per image (a global average pool, so
the prior describes the whole image).
"""

from __future__ import annotations

import torch
from torch import nn


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace=True)


class ResBlock(nn.Module):
    """EDSR residual block: conv3×3, LeakyReLU(0.1), conv3×3, plus the input (no BN, no res-scale)."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1), _lrelu(), nn.Conv2d(n_feats, n_feats, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class CPEN(nn.Module):
    """Prior extractor. ``gt_unshuffle=None`` makes the stage-2 variant (LQ only).

    Args (no defaults but the input channels: the layout comes from ``build_model``'s task, the widths from
    the preset, ``conf/model/arch/<task>/``):
        lq_unshuffle: pixel-unshuffle factor applied to the LQ (SR ×4: 1, ×2: 2, ×1 / deblur / inpainting: 4).
        gt_unshuffle: pixel-unshuffle factor applied to the RGB GT (4 in every official variant), or None.
        n_feats, n_encoder_res: trunk width (64 in every official variant) and residual blocks.
        lq_channels: channels of the network input (3, or 4 for inpainting's masked image + mask).

    ``channels_last`` (a run-time switch, default on) runs the trunk on channels-last maps (faster on CPU).
    """

    channels_last: bool = True

    def __init__(
        self,
        *,
        lq_unshuffle: int,
        gt_unshuffle: int | None,
        n_feats: int,
        n_encoder_res: int,
        lq_channels: int = 3,
    ) -> None:
        super().__init__()
        self.lq_unshuffle = lq_unshuffle
        self.gt_unshuffle = gt_unshuffle
        in_channels = lq_channels * lq_unshuffle**2 + (3 * gt_unshuffle**2 if gt_unshuffle else 0)
        self.in_channels = in_channels
        self.E = nn.Sequential(
            nn.Conv2d(in_channels, n_feats, 3, padding=1),
            _lrelu(),
            *(ResBlock(n_feats) for _ in range(n_encoder_res)),
            nn.Conv2d(n_feats, n_feats * 2, 3, padding=1),
            _lrelu(),
            nn.Conv2d(n_feats * 2, n_feats * 2, 3, padding=1),
            _lrelu(),
            nn.Conv2d(n_feats * 2, n_feats * 4, 3, padding=1),
            _lrelu(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(
            nn.Linear(n_feats * 4, n_feats * 4), _lrelu(), nn.Linear(n_feats * 4, n_feats * 4), _lrelu()
        )
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def is_stage1(self) -> bool:
        return self.gt_unshuffle is not None

    def network_input(self, lq: torch.Tensor, gt: torch.Tensor | None = None) -> torch.Tensor:
        """The pixel-unshuffled (LQ[, GT]) stack the trunk ``E`` sees, LQ part first."""
        parts = [nn.functional.pixel_unshuffle(lq, self.lq_unshuffle)]
        if self.is_stage1:
            if gt is None:
                raise ValueError("CPEN_S1 extracts the prior from the LQ *and* the GT: pass gt")
            parts.append(nn.functional.pixel_unshuffle(gt, self.gt_unshuffle))
        return torch.cat(parts, dim=1)

    @property
    def ipr_dim(self) -> int:
        """Length of the prior vector (4·n_feats)."""
        return self.mlp[-2].out_features

    @property
    def receptive_radius(self) -> int:
        """How far (in trunk-input pixels) a feature before the global pool sees: one per 3×3 conv."""
        return sum(1 for m in self.E.modules() if isinstance(m, nn.Conv2d))

    def forward(self, lq: torch.Tensor, gt: torch.Tensor | None = None) -> torch.Tensor:
        """Return the IPR (B, 4·n_feats) of ``lq`` (and ``gt`` for the stage-1 variant)."""
        x = self.network_input(lq, gt)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.mlp(self.E(x).flatten(1))
