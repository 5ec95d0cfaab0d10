"""U-Net and residual U-Net generators, in 3D or as 2.5D (a 2D U-Net fed slabs of slices)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bids_synth.nn.blocks import ConvBlock, ResBlock, conv, up_conv


class UNet(nn.Module):
    """U-Net with strided-convolution downsampling and transposed-convolution upsampling.

    ``channels`` gives the width of each level (its length is the depth); ``residual=True`` uses
    residual units (the residual U-Net). ``identity_channel`` adds that input channel to the
    output (global residual learning: the network predicts a correction, e.g. a denoiser the
    negative noise). Spatial sizes must be multiples of ``2 ** (depth - 1)``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        norm: str = "instance",
        residual: bool = False,
        dims: int = 3,
        identity_channel: int | None = None,
    ):
        super().__init__()
        if identity_channel is not None and not 0 <= identity_channel < in_channels:
            raise ValueError(f"identity_channel {identity_channel} is not an input channel")
        self.identity_channel = identity_channel
        block = ResBlock if residual else ConvBlock
        widths = list(channels)
        self.down = nn.ModuleList(
            block(dims, c_in, c_out, norm_kind=norm, stride=1 if level == 0 else 2)
            for level, (c_in, c_out) in enumerate(zip([in_channels, *widths[:-1]], widths))
        )
        self.up = nn.ModuleList(
            up_conv(dims, c_deep, c_skip) for c_deep, c_skip in zip(widths[:0:-1], widths[-2::-1])
        )
        self.merge = nn.ModuleList(block(dims, 2 * c, c, norm_kind=norm) for c in widths[-2::-1])
        self.head = conv(dims, widths[0], out_channels, kernel=1)
        if identity_channel is not None:  # starts as the identity
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(size % self.multiple for size in x.shape[2:]):
            raise ValueError(
                f"U-Net input size {tuple(x.shape[2:])} is not a multiple of {self.multiple}"
            )
        skips = []
        y = x
        for block in self.down:
            y = block(y)
            skips.append(y)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            y = merge(torch.cat([up(y), skip], dim=1))
        y = self.head(y)
        if self.identity_channel is None:
            return y
        channel = self.identity_channel
        return y.float() + x[:, channel : channel + 1].float()  # the sum in full precision


class SlabNet(nn.Module):
    """2.5D wrapper: a 2D network predicts each slice from ``slices`` adjacent slices given as channels.

    Takes and returns 3D tensors ``(B, C, X, Y, Z)`` so training and sliding-window inference treat
    it like any 3D network; slices are taken along the last axis, edges replicate the end slices.
    """

    def __init__(self, net2d: nn.Module, *, slices: int, in_channels: int):
        super().__init__()
        if slices < 1 or slices % 2 == 0:
            raise ValueError(f"2.5D slab must be an odd number of slices, got {slices}")
        self.net2d = net2d
        self.slices = slices
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, nx, ny, nz = x.shape
        half = self.slices // 2
        padded = F.pad(x, (half, half, 0, 0, 0, 0), mode="replicate") if half else x
        slabs = padded.unfold(4, self.slices, 1)  # (B, C, X, Y, Z, slices)
        slabs = slabs.permute(0, 4, 1, 5, 2, 3).reshape(b * nz, c * self.slices, nx, ny)
        out = self.net2d(slabs)
        return out.reshape(b, nz, -1, nx, ny).permute(0, 2, 3, 4, 1)
