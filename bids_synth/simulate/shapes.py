"""Approximate signed distance functions (mm, negative inside) and their partial-volume fractions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Ellipsoid:
    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """First-order signed distance ``(r − 1)·r / |(x − c)/a²|`` with ``r = |(x − c)/a|``,
        at ``points`` given as coordinate rows ``(3, N)``."""
        r2 = torch.zeros_like(points[0])
        g2 = torch.zeros_like(points[0])
        for row, c, a in zip(points, self.centre, self.semi_axes):
            q = (row - c) / a
            r2.addcmul_(q, q)
            g2.addcmul_(q, q, value=1 / a**2)
        r = r2.sqrt()
        return (r - 1) * r / g2.sqrt().clamp(min=1e-6)

    def overlaps(self, lo: np.ndarray, hi: np.ndarray, margin: float) -> bool:
        """Whether the box ``[lo, hi]`` comes within ``margin`` mm of the bounding box."""
        c, a = np.asarray(self.centre), np.asarray(self.semi_axes) + margin
        return bool(np.all(lo <= c + a) and np.all(hi >= c - a))

    def scaled(self, factor: np.ndarray | float, about=(0.0, 0.0, 0.0)) -> Ellipsoid:
        """The ellipsoid scaled by ``factor`` (scalar or per axis) about ``about``."""
        factor = np.broadcast_to(np.asarray(factor, dtype=float), (3,))
        centre = np.asarray(about) + (np.asarray(self.centre) - np.asarray(about)) * factor
        return Ellipsoid(tuple(centre), tuple(np.asarray(self.semi_axes) * factor))


def union(*sdfs: torch.Tensor) -> torch.Tensor:
    return torch.stack(sdfs).amin(dim=0)


def intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection of two sets; outside both, the corner distance ``√(a² + b²)``."""
    corner = torch.sqrt(a.clamp(min=0) ** 2 + b.clamp(min=0) ** 2)
    return torch.where((a > 0) & (b > 0), corner, torch.maximum(a, b))


def slab(distance_from_plane: torch.Tensor, half_width: float) -> torch.Tensor:
    """A slab of half-width ``half_width`` around a surface given its (unsigned) distance."""
    return distance_from_plane.abs() - half_width


def coverage(sdf: torch.Tensor, voxel_mm: float) -> torch.Tensor:
    """Partial-volume fraction of a voxel of size ``voxel_mm`` covered by the set ``sdf < 0``.

    A linear ramp ``clamp(½ − d/h, 0, 1)``: exact for a plane cutting a cube along an axis.
    """
    return (0.5 - sdf / voxel_mm).clamp(0, 1)
