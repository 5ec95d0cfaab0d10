"""Anatomical plausibility of a head: how thick its skull is over the vertex.

Arrays are in RAS+ voxel order (the third axis points up, e.g. after
``nibabel.as_closest_canonical``) with ``voxel_mm`` the voxel size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: rays start this far below the top of the head
RAY_ORIGIN_BELOW_VERTEX_MM = 60.0
#: rays point up at least this steeply (degrees above the axial plane)
MIN_ELEVATION_DEG = 35
RAY_STEP_MM = 0.25


def skull_thickness_mm(bone: np.ndarray, head: np.ndarray, voxel_mm) -> dict[str, float]:
    """Bone length along upward rays through the calvarium: median and quartiles (mm).

    The rays leave from the head's centre :data:`RAY_ORIGIN_BELOW_VERTEX_MM` below its top, every
    5° of elevation from :data:`MIN_ELEVATION_DEG` up and every 10° of azimuth, and count the
    ``bone`` voxels they cross (rays that cross none are left out; NaN when none crosses any).
    Oblique crossings make it longer than the skull's normal thickness, the same way for every
    head it is applied to.
    """
    voxel_mm = np.asarray(voxel_mm, dtype=float)
    rows = np.nonzero(head.reshape(-1, head.shape[2]).sum(axis=0))[0]
    level = int(round(rows.max() - RAY_ORIGIN_BELOW_VERTEX_MM / voxel_mm[2]))
    level = max(level, int(rows.min()))
    origin = np.array([*ndimage.center_of_mass(head[:, :, level]), level]) * voxel_mm
    steps = np.arange(0.0, np.linalg.norm(np.array(bone.shape) * voxel_mm), RAY_STEP_MM)
    lengths = []
    for elevation in np.radians(np.arange(MIN_ELEVATION_DEG, 91, 5)):
        azimuths = [0.0] if elevation == np.radians(90) else np.radians(np.arange(0, 360, 10))
        for azimuth in azimuths:
            direction = np.array(
                [
                    np.cos(elevation) * np.cos(azimuth),
                    np.cos(elevation) * np.sin(azimuth),
                    np.sin(elevation),
                ]
            )
            index = np.round((origin + steps[:, None] * direction) / voxel_mm).astype(int)
            inside = np.all((index >= 0) & (index < bone.shape), axis=1)
            crossed = bone[tuple(index[inside].T)].sum() * RAY_STEP_MM
            if crossed:
                lengths.append(crossed)
    if not lengths:
        return {"median": float("nan"), "p25": float("nan"), "p75": float("nan"), "rays": 0}
    p25, median, p75 = np.percentile(lengths, [25, 50, 75])
    return {"median": float(median), "p25": float(p25), "p75": float(p75), "rays": len(lengths)}
