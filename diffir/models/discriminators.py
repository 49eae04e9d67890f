"""Discriminators of the adversarial stages, with the official parameter names so official weights load.

* :class:`UNetDiscriminatorSN` — Real-ESRGAN's spectral-normalised U-Net (DiffIR-SRGAN / DiffIR-RealSR
  ``network_d``): one logit per pixel.
* :class:`NLayerDiscriminator` — LaMa's pix2pixHD patch discriminator (DiffIR-inpainting): logits plus the
  intermediate activations that feature matching compares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

__all__ = ["NLayerDiscriminator", "UNetDiscriminatorSN"]


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (BasicSR ``UNetDiscriminatorSN``).

    Uses the classic ``torch.nn.utils.spectral_norm`` hook, whose state-dict keys are the official ones
    (``convk.weight_orig`` / ``weight_u`` / ``weight_v``) and whose semantics are the official ones: in train
    mode every forward runs one power iteration and updates ``u`` and ``v``; eval mode reuses them. Input
    height and width must be divisible by 8. Returns ``(B, 1, H, W)`` logits.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        # downsample
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        # upsample
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        # extra convolutions
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(
                f"UNetDiscriminatorSN needs height and width divisible by 8, got {tuple(x.shape[-2:])}"
            )

        def lrelu(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, negative_slope=0.2)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = lrelu(self.conv0(x))
        x1 = lrelu(self.conv1(x0))
        x2 = lrelu(self.conv2(x1))
        x3 = lrelu(self.conv3(x2))
        x4 = lrelu(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = lrelu(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = lrelu(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = lrelu(self.conv7(x6))
        out = lrelu(self.conv8(out))
        return self.conv9(out)


class NLayerDiscriminator(nn.Module):
    """LaMa's pix2pixHD patch discriminator (``saicinpainting/training/modules/pix2pixhd.py``).

    ``model0``: 4×4 stride-2 conv + LeakyReLU 0.2; ``model1..model{n_layers-1}``: 4×4 stride-2 conv +
    BatchNorm + LeakyReLU (channels doubling up to 512); ``model{n_layers}``: the same at stride 1;
    ``model{n_layers+1}``: 4×4 conv to one logit map. All convs pad by 2. ``forward`` returns the logits and
    the ``n_layers + 1`` intermediate activations used by feature matching. DiffIR-inpainting uses
    ``input_nc=3, ndf=64, n_layers=4``; LaMa trains it in train mode (BatchNorm on batch statistics).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 4) -> None:
        super().__init__()
        self.n_layers = n_layers
        kw, padw = 4, 2
        sequence = [[nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            sequence.append(
                [
                    nn.Conv2d(nf_prev, nf, kw, stride=stride, padding=padw),
                    nn.BatchNorm2d(nf),
                    nn.LeakyReLU(0.2, True),
                ]
            )
        sequence.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        for n, layers in enumerate(sequence):
            self.add_module(f"model{n}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        acts = [x]
        for n in range(self.n_layers + 2):
            acts.append(getattr(self, f"model{n}")(acts[-1]))
        return acts[-1], acts[1:-1]
