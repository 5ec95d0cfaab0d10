"""Voxel grids in world millimetres (RAS+) and resampling between them with ``grid_sample``.

Volumes are torch tensors indexed ``[..., i, j, k]``; the 4×4 ``affine`` maps ``(i, j, k, 1)`` to
world ``(x, y, z, 1)`` in mm, exactly as a NIfTI affine does for the same array.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_spacing(spacing: float | tuple[float, float, float]) -> tuple[float, float, float]:
    """``spacing`` as three positive floats (one per voxel axis)."""
    values = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(v) for v in spacing)
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"spacing must be one or three positive numbers, got {spacing!r}")
    return values


def centred_affine(shape: tuple[int, int, int], spacing) -> np.ndarray:
    """Axis-aligned RAS+ affine of a grid whose centre is the world origin."""
    spacing = np.asarray(as_spacing(spacing))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * spacing
    return affine


def grid_points(shape, affine: np.ndarray, *, device="cpu") -> torch.Tensor:
    """World coordinates (mm) of every voxel centre, shape ``(*shape, 3)``, float32."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return apply_affine(affine, index)


def apply_affine(affine: np.ndarray, points: torch.Tensor) -> torch.Tensor:
    """Apply a 4×4 affine to points of shape ``(..., 3)``."""
    matrix = torch.as_tensor(affine, dtype=points.dtype, device=points.device)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def sample(
    volume: torch.Tensor,
    affine: np.ndarray,
    points: torch.Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> torch.Tensor:
    """Interpolate ``volume`` (``(C, D, H, W)`` or ``(D, H, W)``) at world ``points`` (``(..., 3)``).

    Returns ``(C, *points.shape[:-1])`` (or ``points.shape[:-1]`` for a 3D volume); trilinear by
    default, ``padding_mode`` as in :func:`torch.nn.functional.grid_sample`.
    """
    squeeze = volume.ndim == 3
    channels = volume[None] if squeeze else volume
    index = apply_affine(np.linalg.inv(affine), points.to(volume.device))
    size = torch.tensor(channels.shape[1:], dtype=index.dtype, device=index.device)
    normalised = (2 * index / (size - 1).clamp(min=1) - 1).flip(-1)  # grid_sample wants (k, j, i)
    out_shape = points.shape[:-1]
    grid = normalised.reshape(1, 1, 1, -1, 3)
    values = F.grid_sample(
        channels[None].float(), grid, mode=mode, padding_mode=padding_mode, align_corners=True
    )
    values = values.reshape(channels.shape[0], *out_shape)
    return values[0] if squeeze else values


def resample(
    volume: torch.Tensor,
    affine: np.ndarray,
    shape,
    target_affine: np.ndarray,
    *,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> torch.Tensor:
    """``volume`` resampled onto the grid ``(shape, target_affine)``."""
    points = grid_points(shape, target_affine, device=volume.device)
    return sample(volume, affine, points, mode=mode, padding_mode=padding_mode)
