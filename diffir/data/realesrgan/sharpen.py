"""Unsharp masking with a soft edge mask (BasicSR ``img_process_util.USMSharp``): the sharpened GT targets.

DiffIR-RealSR V2 blurs the USM-sharpened GT in the first degradation and compares some losses with it
(docs/method.md §4.2).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor, nn


class USMSharp(nn.Module):
    """Unsharp masking with a soft edge mask (BasicSR ``USMSharp``), used to sharpen GT targets.

    The Gaussian is ``cv2.getGaussianKernel(radius, sigma)`` (``radius`` made odd: 51 by default, σ = 8). The
    official code filters with the 2-D outer product ``kernel`` after a reflect pad; here the same linear map
    is applied as ``A_H · img · A_Wᵀ``, with the 1-D kernel and the reflect padding folded into the matrices
    (equal up to float rounding, and ~30x faster than a 51x51 convolution). Images need H, W > radius // 2.
    """

    def __init__(self, radius: int = 50, sigma: float = 0) -> None:
        super().__init__()
        if radius % 2 == 0:
            radius += 1
        self.radius = radius
        g = cv2.getGaussianKernel(radius, sigma)
        self.register_buffer(
            "kernel", torch.from_numpy(np.dot(g, g.T)).float().unsqueeze(0), persistent=False
        )
        self.register_buffer("kernel1d", torch.from_numpy(g[:, 0]), persistent=False)

    def _blur_matrix(self, n: int, like: Tensor) -> Tensor:
        """(n, n) matrix of the 1-D blur with reflect padding (``dcb|abcd|cba``), built in float64."""
        r = self.radius // 2
        if r >= n:
            raise ValueError(f"USMSharp(radius={self.radius}) needs images larger than {r} px, got {n}")
        padded = torch.arange(-r, n + r, device=like.device).abs()
        source = torch.where(padded > n - 1, 2 * (n - 1) - padded, padded)  # padded position -> pixel
        rows = torch.arange(n, device=like.device)[:, None].expand(n, self.radius)
        taps = source[rows + torch.arange(self.radius, device=like.device)]
        matrix = torch.zeros(n, n, dtype=torch.float64, device=like.device)
        matrix.index_put_((rows, taps), self.kernel1d.double().expand(n, -1), accumulate=True)
        return matrix.to(like.dtype)

    def blur(self, img: Tensor) -> Tensor:
        """``filter2d(img, kernel)``: the Gaussian blur with reflect padding."""
        h, w = img.shape[-2:]
        return self._blur_matrix(h, img) @ img @ self._blur_matrix(w, img).T

    def forward(self, img: Tensor, weight: float = 0.5, threshold: float = 10) -> Tensor:
        """``soft · clip(img + weight·(img − blur)) + (1 − soft) · img``, soft = blurred (|img − blur|·255 >
        threshold)."""
        residual = img - self.blur(img)
        soft_mask = self.blur((torch.abs(residual) * 255 > threshold).to(img.dtype))
        sharp = torch.clip(img + weight * residual, 0, 1)
        return soft_mask * sharp + (1 - soft_mask) * img
