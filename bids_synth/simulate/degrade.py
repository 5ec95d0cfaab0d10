"""Acquisition degradations: receive bias, point-spread function and sampling, noise.

The order follows the physics: the coil sensitivity multiplies the object, the PSF blurs it,
the scanner samples it on its own grid, and thermal noise is added to the complex samples
(magnitude images are Rician: ``M = |S + n₁ + i·n₂|``, ``n ~ N(0, σ²)``).
"""

from __future__ import annotations

import numpy as np
import torch

from bids_synth.simulate.fields import smooth_field
from bids_synth.simulate.filters import FWHM_PER_SIGMA, box_kernel, convolve_axis, gaussian_kernel
from bids_synth.simulate.grids import resample
from bids_synth.simulate.scanner import Acquisition


def bias_field(
    shape, *, spacing, strength: float, generator: torch.Generator, correlation_mm: float = 90.0
) -> torch.Tensor:
    """Smooth multiplicative field ``exp(strength·n(x))`` (geometric mean 1 over the grid)."""
    if strength <= 0:
        return torch.ones(shape, device=generator.device)
    field = smooth_field(shape, spacing=spacing, correlation_mm=correlation_mm, generator=generator)
    return torch.exp(strength * field[0])


def psf_kernel(width_mm: float, spacing_mm: float, profile: str, *, device="cpu") -> torch.Tensor:
    """1D PSF sampled on the grid: Gaussian of FWHM ``width_mm`` or a box ``width_mm`` wide."""
    if width_mm <= spacing_mm * 1.01:
        return torch.ones(1, device=device)
    if profile == "gaussian":
        return gaussian_kernel(width_mm / FWHM_PER_SIGMA / spacing_mm, device=device)
    if profile == "rect":
        return box_kernel(width_mm / spacing_mm, device=device)
    raise ValueError(f"unknown slice profile {profile!r}")


def apply_psf(image: torch.Tensor, spacing, acquisition: Acquisition) -> torch.Tensor:
    """Blur a ``(D, H, W)`` image on a grid of ``spacing`` by the acquisition's PSF."""
    for axis in range(3):
        if axis == acquisition.slice_axis:
            kernel = psf_kernel(
                acquisition.slice_thickness_mm,
                spacing[axis],
                acquisition.slice_profile,
                device=image.device,
            )
        else:
            kernel = psf_kernel(
                acquisition.voxel_mm[axis], spacing[axis], "gaussian", device=image.device
            )
        image = convolve_axis(image, kernel, axis)
    return image


def acquisition_grid(shape, affine: np.ndarray, acquisition: Acquisition):
    """Shape and affine of the scanner's grid covering the same field of view, same centre."""
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    extent = np.asarray(shape) * spacing
    step = np.asarray(acquisition.voxel_mm, dtype=float)
    new_shape = tuple(int(n) for n in np.maximum(1, np.floor(extent / step + 1e-6)))
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    direction = affine[:3, :3] / spacing
    new_affine = np.eye(4)
    new_affine[:3, :3] = direction * step
    new_affine[:3, 3] = centre - new_affine[:3, :3] @ ((np.asarray(new_shape) - 1) / 2)
    return new_shape, new_affine


def sample_acquisition(image: torch.Tensor, affine: np.ndarray, acquisition: Acquisition):
    """PSF-blur ``image`` and sample it on the acquisition grid → ``(acquired, acquired_affine)``."""
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    blurred = apply_psf(image, spacing, acquisition)
    shape, new_affine = acquisition_grid(image.shape, affine, acquisition)
    if shape == tuple(image.shape) and np.allclose(new_affine, affine):
        return blurred, affine
    return resample(blurred, affine, shape, new_affine), new_affine


def rician_noise(signal: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma``."""
    if sigma <= 0:
        return signal
    real = signal + sigma * torch.randn(signal.shape, generator=generator, device=signal.device)
    imaginary = sigma * torch.randn(signal.shape, generator=generator, device=signal.device)
    return torch.sqrt(real**2 + imaginary**2)


def ct_noise(
    shape, *, sigma_hu: float, grain_voxels: float, generator: torch.Generator
) -> torch.Tensor:
    """Correlated Gaussian CT noise of standard deviation ``sigma_hu`` (grain: blur σ in voxels)."""
    noise = torch.randn(shape, generator=generator, device=generator.device)
    if grain_voxels > 0:
        kernel = gaussian_kernel(grain_voxels, device=noise.device)
        for axis in range(3):
            noise = convolve_axis(noise, kernel, axis)
        noise = noise / noise.std()
    return sigma_hu * noise
