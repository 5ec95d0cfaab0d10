"""RED-CNN style residual encoder-decoder generator (the generator of RED-WGAN denoising).

Unpadded 3×3×3 convolutions shrink the volume layer by layer; transposed convolutions grow it
back, and residual shortcuts add encoder features (and finally the input) to the decoder. Any input
larger than ``2 * depth`` voxels per axis works: the output has the input's shape.
"""

from __future__ import annotations

import torch
from torch import nn


class REDNet(nn.Module):
    """``depth`` conv layers then ``depth`` deconv layers with a shortcut every two layers."""

    def __init__(
        self, *, in_channels: int = 1, out_channels: int = 1, width: int = 32, depth: int = 4
    ):
        super().__init__()
        if depth < 2 or depth % 2:
            raise ValueError(f"RED depth must be an even number >= 2, got {depth}")
        self.encoder = nn.ModuleList(
            nn.Conv3d(in_channels if i == 0 else width, width, 3) for i in range(depth)
        )
        self.decoder = nn.ModuleList(
            nn.ConvTranspose3d(width, out_channels if i == depth - 1 else width, 3)
            for i in range(depth)
        )
        self.act = nn.ReLU()
        self.input_shortcut = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcuts = [x]
        h = x
        for i, layer in enumerate(self.encoder):
            h = self.act(layer(h))
            if i % 2 == 1 and i < len(self.encoder) - 1:
                shortcuts.append(h)
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            last = i == len(self.decoder) - 1
            if i % 2 == 1:  # depth is even, so the last layer gets the input shortcut
                skip = shortcuts.pop()
                if not last or self.input_shortcut:
                    h = h + skip
            if not last:
                h = self.act(h)
        return h
