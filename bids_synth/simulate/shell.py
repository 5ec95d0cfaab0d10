"""Skulls and scalps of other thicknesses: a draw's head stretched along its depth below the brain.

A file label source has one skull and one scalp (the MNI 2009a heads borrow the TPM's): every
draw of it has the same layers, only deformed a little. A draw with a shell stretch reads each
point outside the brain from a point nearer to the brain along the outward normal of the brain's
surface: the labels at depth ``d`` come from depth ``d / s``, so the skull, the scalp and the fat
between them are ``s`` times as thick. ``s`` is a smooth random field (log-normal, correlated
over :data:`SHELL_CORRELATION_MM`), so one head is thicker over the occiput and thinner at the
temples, another the other way round. Only the first :data:`SHELL_DEPTH_MM` below the brain's
surface (the vault's skull and scalp) stretch; deeper points (face, neck) move with them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SHELL_CORRELATION_MM = 40.0
SHELL_DEPTH_MM = 20.0
#: the stretch never makes a layer thinner or thicker than these factors
SHELL_SCALE_LIMITS = (0.6, 1.6)
_WAVES = 16  # random Fourier features of the field


def shell_scale(points: torch.Tensor, rng: np.random.Generator, sd: float) -> torch.Tensor:
    """The stretch factor at world ``points`` (``(..., 3)`` mm): ``exp(sd · g)`` of a smooth
    unit-variance random field ``g`` (random Fourier features), within
    :data:`SHELL_SCALE_LIMITS`."""
    frequencies = rng.normal(0.0, 1.0 / SHELL_CORRELATION_MM, (_WAVES, 3))
    phases = rng.uniform(0.0, 2 * math.pi, _WAVES)
    omega = torch.as_tensor(frequencies, dtype=points.dtype, device=points.device)
    phase = torch.as_tensor(phases, dtype=points.dtype, device=points.device)
    field = torch.cos(points @ omega.T + phase).sum(dim=-1) * math.sqrt(2.0 / _WAVES)
    return torch.exp(sd * field).clamp(*SHELL_SCALE_LIMITS)


def stretched_points(
    points: torch.Tensor, depth_mm: torch.Tensor, normal: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Where the labels of ``points`` are read: ``depth_mm`` (below the brain's surface, 0 inside
    the brain) shrunk to ``depth_mm / scale`` along the unit outward ``normal`` (deeper than
    :data:`SHELL_DEPTH_MM`, shifted as much as that depth)."""
    return points - normal * (depth_mm.clamp(max=SHELL_DEPTH_MM) * (1 - 1 / scale))[..., None]
