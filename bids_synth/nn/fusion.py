"""Inference-only rewrites of a network that keep its output (to float rounding) and save time.

* convolution → batch norm (eval): the norm is folded into the convolution's weights;
* instance norm → LeakyReLU: one module computing the statistics with ``var_mean`` and applying
  scale, shift and activation in two passes, also fast in channels-last layout (PyTorch's instance
  norm copies channels-last tensors to contiguous ones and back).

The caller's network is never modified: :func:`optimize_for_inference` works on a copy.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval


class InstanceNormLeakyReLU(nn.Module):
    """Affine instance normalisation followed by LeakyReLU, for inference."""

    def __init__(self, norm: _InstanceNorm, negative_slope: float):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:  # autocast: PyTorch's norm works in fp32, no gain here
            normalized = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
            return F.leaky_relu_(normalized, self.negative_slope)
        var, mean = torch.var_mean(x, dim=tuple(range(2, x.dim())), keepdim=True, correction=0)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.weight is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            weight = self.weight.view(shape)
            scale, shift = scale * weight, shift * weight + self.bias.view(shape)
        return F.leaky_relu_(torch.addcmul(shift, x, scale), self.negative_slope)


def _fuse_sequence(modules: list[nn.Module]) -> list[nn.Module]:
    fused: list[nn.Module] = []
    for module in modules:
        previous = fused[-1] if fused else None
        if (
            isinstance(module, _BatchNorm)
            and isinstance(previous, (nn.Conv2d, nn.Conv3d))
            and module.track_running_stats
        ):
            fused[-1] = fuse_conv_bn_eval(previous, module)
        elif (
            isinstance(module, nn.LeakyReLU)
            and isinstance(previous, _InstanceNorm)
            and not previous.track_running_stats
        ):
            fused[-1] = InstanceNormLeakyReLU(previous, module.negative_slope)
        else:
            fused.append(module)
    return fused


def _fuse(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            setattr(module, name, nn.Sequential(*_fuse_sequence(list(child))))
        _fuse(getattr(module, name))


@torch.no_grad()
def optimize_for_inference(network: nn.Module) -> nn.Module:
    """An eval-mode copy of ``network`` with the fusions above applied."""
    optimized = copy.deepcopy(network).eval()
    _fuse(optimized)
    return optimized
