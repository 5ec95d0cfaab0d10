"""Resampling an image onto another voxel grid through the two affines (the package's one resampler)."""

from __future__ import annotations

import numpy as np


def resample_onto(
    data: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, ...],
    target_affine: np.ndarray,
    *,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """``data`` (voxel → world ``affine``) sampled on the grid ``shape`` / ``target_affine``.

    Spline interpolation of ``order`` (0: nearest neighbour), ``cval`` outside ``data``, as
    ``nibabel.processing.resample_from_to``; the result keeps ``data``'s dtype.
    """
    from scipy.ndimage import affine_transform

    voxel_map = np.linalg.inv(affine).dot(target_affine)
    return affine_transform(
        data,
        voxel_map[:3, :3],
        voxel_map[:3, 3],
        tuple(shape),
        order=order,
        mode="constant",
        cval=cval,
    )
