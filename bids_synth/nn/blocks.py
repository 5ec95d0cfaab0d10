"""Building blocks shared by the networks: dimension-generic convolutions, norms and conv blocks.

Every block takes ``dims`` (2 or 3) so the same code builds the 3D networks and the 2D networks
used by the 2.5D variant.
"""

from __future__ import annotations

from torch import nn

NORMS = ("instance", "batch", "group", "none")


def conv(
    dims: int, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, *, bias: bool = True
) -> nn.Module:
    """A 'same'-padded convolution (for odd ``kernel``) in ``dims`` spatial dimensions."""
    cls = nn.Conv3d if dims == 3 else nn.Conv2d
    return cls(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=bias)


def up_conv(dims: int, in_ch: int, out_ch: int) -> nn.Module:
    """A transposed convolution that doubles the spatial size."""
    cls = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
    return cls(in_ch, out_ch, kernel_size=2, stride=2)


def norm(dims: int, kind: str, channels: int) -> nn.Module:
    """A normalisation layer: ``instance`` (affine), ``batch``, ``group`` (8 groups or fewer) or ``none``."""
    if kind == "instance":
        return (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels, affine=True)
    if kind == "batch":
        return (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


class ConvBlock(nn.Sequential):
    """Two (conv → norm → LeakyReLU) layers; the first may be strided to downsample."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, *, norm_kind: str, stride: int = 1):
        super().__init__(
            conv(dims, in_ch, out_ch, stride=stride, bias=norm_kind == "none"),
            norm(dims, norm_kind, out_ch),
            nn.LeakyReLU(0.01, inplace=True),
            conv(dims, out_ch, out_ch, bias=norm_kind == "none"),
            norm(dims, norm_kind, out_ch),
            nn.LeakyReLU(0.01, inplace=True),
        )


class ResBlock(nn.Module):
    """A :class:`ConvBlock` whose input is added back through a 1×1 projection (residual unit)."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, *, norm_kind: str, stride: int = 1):
        super().__init__()
        self.body = ConvBlock(dims, in_ch, out_ch, norm_kind=norm_kind, stride=stride)
        same = in_ch == out_ch and stride == 1
        self.skip = nn.Identity() if same else conv(dims, in_ch, out_ch, kernel=1, stride=stride)

    def forward(self, x):
        return self.body(x) + self.skip(x)
