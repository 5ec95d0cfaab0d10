"""PatchGAN discriminator (pix2pix; 3D, or 2D for slab models), also the critic of WGAN-GP when
built with ``norm='none'``."""

from __future__ import annotations

import torch
from torch import nn

from bids_synth.nn.blocks import norm as make_norm


class PatchGAN(nn.Module):
    """Maps a volume (``dims`` 3) or a slice (``dims`` 2) to a grid of real/fake scores, one per
    overlapping receptive-field patch.

    ``layers`` strided 4-wide convolutions (width doubling up to 8×) then two stride-1 layers; with
    the defaults each score sees a 70-voxel-wide patch. Inputs need at least 2 ** (layers + 2)
    voxels per axis.
    """

    def __init__(
        self,
        *,
        in_channels: int = 2,
        width: int = 32,
        layers: int = 3,
        norm: str = "instance",
        dims: int = 3,
    ):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        modules: list[nn.Module] = [
            conv(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = width
        for index in range(1, layers + 1):
            out = width * min(2**index, 8)
            stride = 2 if index < layers else 1
            modules += [
                conv(channels, out, 4, stride=stride, padding=1, bias=norm == "none"),
                make_norm(dims, norm, out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        modules.append(conv(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
