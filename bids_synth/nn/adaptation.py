"""Test-time adaptation of a 2.5D denoiser to the one noisy image it is to denoise.

Stein's unbiased risk estimate (SURE) gives the mean squared error of a denoiser ``f`` from the
noisy image alone: for ``y = x + n``, ``n ~ N(0, σ²)`` i.i.d. over ``N`` voxels,
``E‖f(y) − x‖²/N = E[‖f(y) − y‖²/N − σ² + 2σ²·div f(y)/N]``. The divergence is estimated by Monte
Carlo (Ramani, Blu & Unser 2008): ``bᵀ(f(y + εb) − f(y))/ε`` with ``b ~ N(0, I)``. Fine-tuning a
trained denoiser on this estimate over slabs of the image itself (Soltanayev & Chun 2018) adapts
it to the image's own anatomy and texture with no clean data. Only the affine gains and biases
of the normalisation layers are tuned (GainTuning, Mohan et al. 2021): tuning every weight on one
image let the network drift into fine texture of its own where the image held little noise.
Steps run in float32: a difference of ``ε``-perturbed outputs does not survive bfloat16.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from bids_synth.nn.slabs import slab_stack

#: how an adaptation is named in bundles and sidecars
METHOD = "sure"


@dataclass(frozen=True)
class SureAdaptation:
    """Settings of :func:`sure_adapted`: Adam ``steps`` at learning rate ``lr`` on batches of
    ``batch_size`` slabs cropped to ``size``² in-plane, divergence step ``epsilon`` (normalised
    intensity units), random draws from ``seed``. The defaults were chosen on the noisy MNI 2009a
    T1: 100 steps at 3e-3 gain as much as 200 at 1e-3, in half the time."""

    steps: int = 100
    lr: float = 3e-3
    batch_size: int = 4
    size: int = 128
    epsilon: float = 1e-3
    seed: int = 0

    def as_dict(self) -> dict:
        """The settings as a bundle or sidecar records them, with the method's name."""
        return {"method": METHOD, **asdict(self)}

    @classmethod
    def from_dict(cls, settings: dict) -> SureAdaptation:
        """The settings a bundle declares (:meth:`as_dict`); unknown methods are refused."""
        fields = dict(settings)
        method = fields.pop("method", METHOD)
        if method != METHOD:
            raise ValueError(f"unknown adaptation method {method!r}; expected {METHOD!r}")
        return cls(**fields)


def sure_loss(
    network: nn.Module,
    source: torch.Tensor,
    mask: torch.Tensor,
    sigma: float,
    epsilon: float,
    *,
    centre: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """SURE of the mean squared error of ``network`` on ``(B, slices, H, W)`` noisy ``source``
    slabs, over their centre slices inside ``mask`` ``(B, 1, H, W)``."""
    probe = torch.randn(source.shape, generator=generator).to(source.device)
    clean = network(source)
    perturbed = network(source + epsilon * probe)
    noisy = source[:, centre : centre + 1]
    voxels = mask.sum().clamp_min(1.0)
    residual = ((clean - noisy).square() * mask).sum() / voxels
    divergence = (probe[:, centre : centre + 1] * (perturbed - clean) * mask).sum() / epsilon
    return residual - sigma**2 + 2 * sigma**2 * divergence / voxels


def normalisation_gains(network: nn.Module) -> list[nn.Parameter]:
    """The affine gains and biases of ``network``'s normalisation layers."""
    norms = (_InstanceNorm, _BatchNorm, nn.GroupNorm)
    return [
        parameter
        for module in network.modules()
        if isinstance(module, norms)
        for parameter in module.parameters(recurse=False)
    ]


def sure_adapted(
    network: nn.Module,
    volume: torch.Tensor,
    mask: torch.Tensor,
    sigma: float,
    *,
    slices: int,
    settings: SureAdaptation = SureAdaptation(),
    multiple: int = 16,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict]:
    """A copy of the 2D ``network`` whose :func:`normalisation_gains` are tuned on
    :func:`sure_loss` over slabs of one normalised
    ``(1, X, Y, Z)`` noisy ``volume`` of noise σ ``sigma`` (same units), in its boolean
    ``(X, Y, Z)`` ``mask``; returns it in eval mode and an info dict (settings, σ, the mean SURE
    of the first and last tenth of the steps, seconds). Slabs are taken along a random axis at
    centres inside the mask's extent, cropped to ``settings.size`` around random points of the
    mask and padded to a multiple of ``multiple``; the steps run on ``device``. ``network``
    itself is untouched."""
    started = time.perf_counter()
    adapted = copy.deepcopy(network).float().to(device).train()
    gains = normalisation_gains(adapted)
    if not gains:
        raise ValueError("the network has no normalisation gains to adapt")
    for parameter in adapted.parameters():
        parameter.requires_grad_(False)
    for parameter in gains:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(gains, lr=settings.lr)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    inside = np.argwhere(mask.numpy())
    masks = mask[None].float()
    losses = []
    for _ in range(settings.steps):
        axis = int(rng.integers(3))
        points = inside[rng.integers(len(inside), size=settings.batch_size)]
        source, region = _crops(volume, masks, axis, points, slices, settings.size, multiple)
        loss = sure_loss(
            adapted,
            source.to(device),
            region.to(device),
            sigma,
            settings.epsilon,
            centre=slices // 2,
            generator=generator,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tenth = max(len(losses) // 10, 1)
    info = {
        **settings.as_dict(),
        "sigma": sigma,
        "sure_first": float(np.mean(losses[:tenth])) if losses else None,
        "sure_last": float(np.mean(losses[-tenth:])) if losses else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return adapted.eval(), info


def _crops(
    volume: torch.Tensor,
    masks: torch.Tensor,
    axis: int,
    points: np.ndarray,
    slices: int,
    size: int,
    multiple: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slabs along ``axis`` centred on ``points`` (voxel indices), cropped to ``size``² around
    them (inside the plane; smaller planes whole) and padded to a multiple: ``(B, slices, H, W)``
    and their masks."""
    plane = [a for a in range(3) if a != axis]
    sources, regions = [], []
    for point in points:
        source = slab_stack(volume, axis, [int(point[axis])], slices)
        region = slab_stack(masks, axis, [int(point[axis])], 1)
        window = []
        for dim, a in zip((2, 3), plane):
            n = source.shape[dim]
            start = int(np.clip(point[a] - size // 2, 0, max(n - size, 0)))
            window.append((dim, start, min(size, n)))
        for dim, start, length in window:
            source, region = source.narrow(dim, start, length), region.narrow(dim, start, length)
        sources.append(_padded(source, multiple, "replicate"))
        regions.append(_padded(region, multiple, "constant"))
    return torch.cat(sources), torch.cat(regions)


def _padded(batch: torch.Tensor, multiple: int, mode: str) -> torch.Tensor:
    """``batch`` padded at the end of both in-plane axes to a multiple of ``multiple``."""
    height, width = batch.shape[2:]
    pad = (0, -width % multiple, 0, -height % multiple)
    return F.pad(batch, pad, mode=mode) if any(pad) else batch
