"""``build_network(name, **kwargs)``: networks by name, so a bundle can store name + kwargs."""

from __future__ import annotations

from torch import nn

from bids_synth.nn.discriminator import PatchGAN
from bids_synth.nn.red import REDNet
from bids_synth.nn.unet import SlabNet, UNet

ARCHITECTURES = ("unet", "resunet", "red", "patchgan")


def build_network(name: str, **kwargs) -> nn.Module:
    """Build a network from its architecture name and keyword arguments.

    * ``unet`` / ``resunet``: :class:`UNet` kwargs (``residual`` is set by the name); add
      ``slices=K`` (odd) for the 2.5D variant, a 2D U-Net reading K adjacent slices as channels.
    * ``red``: :class:`REDNet` kwargs.
    * ``patchgan``: :class:`PatchGAN` kwargs.
    """
    if name in ("unet", "resunet"):
        slices = kwargs.pop("slices", None)
        kwargs["residual"] = name == "resunet"
        if slices is None:
            return UNet(**kwargs)
        in_channels = kwargs.pop("in_channels", 1)
        net2d = UNet(in_channels=in_channels * slices, dims=2, **kwargs)
        return SlabNet(net2d, slices=slices, in_channels=in_channels)
    if name == "red":
        return REDNet(**kwargs)
    if name == "patchgan":
        return PatchGAN(**kwargs)
    raise ValueError(f"unknown architecture {name!r}; expected one of {ARCHITECTURES}")
