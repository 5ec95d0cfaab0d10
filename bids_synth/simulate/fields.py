"""Smooth random fields: on grids (bias fields, velocity fields, textures) and as analytic
functions of position (random plane waves, evaluated at any warped coordinate)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bids_synth.simulate.filters import gaussian_blur


def smooth_field(
    shape,
    *,
    spacing: tuple[float, float, float],
    correlation_mm: float,
    generator: torch.Generator,
    channels: int = 1,
) -> torch.Tensor:
    """Zero-mean, unit-variance smooth Gaussian random field(s) on a grid, ``(channels, *shape)``.

    White noise on a lattice of pitch ``correlation_mm`` is upsampled 4× and Gaussian-smoothed (a
    smooth, isotropic interpolant), then trilinearly resampled to ``shape``. Created on the
    generator's device.
    """
    extent = [n * s for n, s in zip(shape, spacing)]
    coarse = [max(2, math.ceil(e / correlation_mm) + 2) for e in extent]
    device = generator.device
    noise = torch.randn(1, channels, *coarse, generator=generator, device=device)
    fine = F.interpolate(noise, size=[4 * n for n in coarse], mode="trilinear", align_corners=True)
    fine = torch.stack([gaussian_blur(channel, (2.0, 2.0, 2.0)) for channel in fine[0]])[None]
    field = F.interpolate(fine, size=list(shape), mode="trilinear", align_corners=True)[0]
    field = field - field.mean(dim=(1, 2, 3), keepdim=True)
    return field / field.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)


@dataclass(frozen=True)
class RandomWaves:
    """Gaussian random fields as sums of plane waves, ``n_f(x) = √(2/M) Σ_m w_mf cos(k_m·x + φ_m)``.

    ``F`` fields share the ``M`` waves through random unit-norm weight columns ``w`` (cheap: one
    cosine per wave), each of unit variance. Evaluated analytically at arbitrary points (mm), with
    gradients. With a fixed ``|k|`` the zero set is a labyrinth of spacing ``λ/2`` (cortical sulci).
    """

    wavevectors: np.ndarray  # (M, 3) rad/mm
    phases: np.ndarray  # (M,)
    weights: np.ndarray  # (M, F), columns of norm √M

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        n_waves: int,
        wavelength_mm: tuple[float, float],
        n_fields: int = 1,
    ) -> RandomWaves:
        """Random directions, wavelengths uniform in ``wavelength_mm``, uniform phases."""
        directions = rng.normal(size=(n_waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=(n_waves, 1))
        phases = rng.uniform(0, 2 * np.pi, n_waves)
        weights = rng.normal(size=(n_waves, n_fields)) if n_fields > 1 else np.ones((n_waves, 1))
        weights *= np.sqrt(n_waves) / np.linalg.norm(weights, axis=0, keepdims=True)
        return cls(2 * np.pi / wavelengths * directions, phases, weights)

    def _tensors(self, points: torch.Tensor):
        def tensor(array):
            return torch.as_tensor(array, dtype=points.dtype, device=points.device)

        k = tensor(self.wavevectors)
        scale = math.sqrt(2 / len(self.phases))
        return k @ points + tensor(self.phases)[:, None], k, tensor(self.weights) * scale

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Field values ``(F, N)`` at ``points`` given as coordinate rows ``(3, N)``."""
        arguments, _, weights = self._tensors(points)
        return weights.T @ torch.cos(arguments)

    def value_and_gradient(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``(N,)`` and gradients ``(3, N)`` (per mm) of the first field at ``points``
        ``(3, N)``."""
        arguments, k, weights = self._tensors(points)
        w = weights[:, 0]
        return w @ torch.cos(arguments), -(k * w[:, None]).T @ torch.sin(arguments)
