"""3D PatchGAN discriminator (pix2pix), also the critic of WGAN-GP when built with ``norm='none'``."""

from __future__ import annotations

import torch
from torch import nn

from bids_synth.nn.blocks import norm as make_norm


class PatchGAN(nn.Module):
    """Maps a volume to a grid of real/fake scores, one per overlapping receptive-field patch.

    ``layers`` strided 4×4×4 convolutions (width doubling up to 8×) then two stride-1 layers; with
    the defaults each score sees a 70-voxel-wide patch. Inputs need at least 2 ** (layers + 2)
    voxels per axis.
    """

    def __init__(
        self, *, in_channels: int = 2, width: int = 32, layers: int = 3, norm: str = "instance"
    ):
        super().__init__()
        modules: list[nn.Module] = [
            nn.Conv3d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = width
        for index in range(1, layers + 1):
            out = width * min(2**index, 8)
            stride = 2 if index < layers else 1
            modules += [
                nn.Conv3d(channels, out, 4, stride=stride, padding=1, bias=norm == "none"),
                make_norm(3, norm, out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        modules.append(nn.Conv3d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
