"""Random spatial transforms: affine plus a smooth diffeomorphism from a stationary velocity field.

A draw samples its anatomy at ``y = A·(x + u(x)) + c`` for every output-grid point ``x`` (mm,
grid centred on the origin): ``u`` is the displacement of ``φ = exp(v)``, integrated by scaling
and squaring (``φ = (id + v/2^N)∘…∘(id + v/2^N)``, ``N`` compositions) on a coarse grid and
trilinearly upsampled; ``A`` a random rotation/scaling/shear; ``c`` the source's head centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bids_synth.simulate.fields import smooth_field
from bids_synth.simulate.grids import apply_affine, sample


def random_affine(
    rng: np.random.Generator,
    *,
    rotation_deg: float = 8.0,
    scaling: float = 0.06,
    shear: float = 0.03,
) -> np.ndarray:
    """A random 3×3 matrix: rotations ~U(±rotation_deg) per axis, log-scales ~N(0, scaling)."""
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, 3))
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rotation = rotation @ r
    shear_matrix = np.eye(3) + np.triu(rng.uniform(-shear, shear, (3, 3)), 1)
    return rotation @ shear_matrix @ np.diag(np.exp(rng.normal(0, scaling, 3)))


def integrate_velocity(
    velocity: torch.Tensor, spacing: tuple[float, float, float], *, steps: int = 6
) -> torch.Tensor:
    """Displacement (mm) of ``exp(v)`` by scaling and squaring; ``velocity`` is ``(3, D, H, W)`` mm."""
    size = torch.tensor(velocity.shape[1:], dtype=velocity.dtype, device=velocity.device)
    step = torch.tensor(spacing, dtype=velocity.dtype, device=velocity.device)
    to_normalised = (2 / ((size - 1).clamp(min=1) * step)).view(3, 1, 1, 1)
    axes = [torch.linspace(-1, 1, int(n), device=velocity.device) for n in velocity.shape[1:]]
    identity = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    displacement = velocity / 2**steps
    for _ in range(steps):  # u ← u + u∘(id + u)
        grid = (identity + displacement * to_normalised).permute(1, 2, 3, 0).flip(-1)[None]
        displacement = (
            displacement
            + F.grid_sample(displacement[None], grid, align_corners=True, padding_mode="border")[0]
        )
    return displacement


def jacobian_determinant(
    displacement: torch.Tensor, spacing: tuple[float, float, float]
) -> torch.Tensor:
    """``det(I + ∇u)`` by central differences, shape ``(D, H, W)``."""
    gradients = [torch.gradient(displacement[c], spacing=list(spacing)) for c in range(3)]
    jac = torch.stack([torch.stack(row) for row in gradients]) + torch.eye(3).to(displacement).view(
        3, 3, 1, 1, 1
    )
    return torch.linalg.det(jac.permute(2, 3, 4, 0, 1))


@dataclass(frozen=True)
class SpatialTransform:
    """Maps output-grid world points to source (label-map) points, ``y = A·(x + u(x)) + c``."""

    matrix: np.ndarray  # A, 3×3
    centre: tuple[float, float, float]  # c, source head centre (mm)
    displacement: torch.Tensor | None  # u on a coarse grid, (3, d, h, w) mm, or None
    coarse_affine: np.ndarray | None  # affine of that coarse grid

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        generator: torch.Generator,
        *,
        extent_mm,
        centre=(0.0, 0.0, 0.0),
        deform_mm: float = 3.0,
        correlation_mm: float = 40.0,
        coarse_mm: float = 4.0,
    ) -> SpatialTransform:
        """A random transform over a field of view of ``extent_mm`` (three lengths).

        ``deform_mm`` is the standard deviation of each velocity component; 0 gives a pure affine.
        """
        matrix = random_affine(rng)
        if deform_mm <= 0:
            return cls(matrix, tuple(centre), None, None)
        shape = tuple(max(4, int(np.ceil(e / coarse_mm)) + 1) for e in extent_mm)
        spacing = (coarse_mm,) * 3
        velocity = deform_mm * smooth_field(
            shape, spacing=spacing, correlation_mm=correlation_mm, generator=generator, channels=3
        )
        affine = np.diag([coarse_mm] * 3 + [1.0])
        affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * coarse_mm
        return cls(matrix, tuple(centre), integrate_velocity(velocity, spacing), affine)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Source coordinates of world ``points`` ``(..., 3)``."""
        if self.displacement is not None:
            u = sample(self.displacement.to(points.device), self.coarse_affine, points)
            points = points + u.movedim(0, -1)
        affine = np.eye(4)
        affine[:3, :3], affine[:3, 3] = self.matrix, self.centre
        return apply_affine(affine, points)

    @property
    def volume_scale(self) -> float:
        """Mean linear scale factor ``|det A|^(1/3)`` (source mm per output mm)."""
        return float(abs(np.linalg.det(self.matrix)) ** (1 / 3))

    def to_json(self) -> dict:
        summary = {
            "affine_matrix": np.round(self.matrix, 6).tolist(),
            "source_centre_mm": list(self.centre),
            "max_displacement_mm": 0.0,
            "min_jacobian": 1.0,
        }
        if self.displacement is not None:
            spacing = tuple(float(s) for s in np.diag(self.coarse_affine)[:3])
            summary["max_displacement_mm"] = round(float(self.displacement.norm(dim=0).max()), 3)
            summary["min_jacobian"] = round(
                float(jacobian_determinant(self.displacement, spacing).min()), 4
            )
        return summary
