"""Separable 1D filtering of volumes along one axis (PSFs, reconstruction kernels, smoothing)."""

from __future__ import annotations

import math

import torch

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))  # ≈ 2.3548


def gaussian_kernel(sigma: float, *, device="cpu") -> torch.Tensor:
    """Normalised Gaussian kernel of standard deviation ``sigma`` (in samples), ±4σ wide."""
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def box_kernel(width: float, *, device="cpu") -> torch.Tensor:
    """Normalised boxcar of ``width`` samples; the two edge taps carry the fractional remainder."""
    half = width / 2
    radius = math.ceil(half - 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = (half + 0.5 - x.abs()).clamp(0, 1)
    return kernel / kernel.sum()


def convolve_axis(volume: torch.Tensor, kernel: torch.Tensor, axis: int) -> torch.Tensor:
    """Convolve a ``(D, H, W)`` volume with a symmetric odd 1D ``kernel`` along ``axis``; edges
    are replicated. A sum of shifted copies: fast for the short kernels used here."""
    if kernel.numel() == 1:
        return volume
    moved = volume.movedim(axis, 0)
    pad = kernel.numel() // 2
    n = moved.shape[0]
    padded = torch.cat(
        [moved[:1].expand(pad, *moved.shape[1:]), moved, moved[-1:].expand(pad, *moved.shape[1:])]
    )
    out = torch.zeros_like(moved)
    for tap, weight in enumerate(kernel.tolist()):
        out.add_(padded[tap : tap + n], alpha=weight)
    return out.movedim(0, axis)


def gaussian_blur(volume: torch.Tensor, sigmas: tuple[float, float, float]) -> torch.Tensor:
    """Separable Gaussian blur of a ``(D, H, W)`` volume; ``sigmas`` in voxels, 0 skips an axis."""
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            volume = convolve_axis(volume, gaussian_kernel(sigma, device=volume.device), axis)
    return volume
