"""Volumes for display: reoriented to RAS, cut at world coordinates, windowed by percentiles.

Every image is brought to the closest canonical (RAS+) orientation, so voxel axis 0 runs left→right,
1 posterior→anterior and 2 inferior→superior. :meth:`Volume.plane` returns 2D arrays for
``imshow(..., origin="lower")`` in the neurological convention: the subject's right on the right
of axial and coronal views, anterior at the top of axial views and on the right of sagittal views,
superior at the top of coronal and sagittal views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_synth.resampling import resample_onto

SAGITTAL, CORONAL, AXIAL = 0, 1, 2
PLANE_NAMES = {SAGITTAL: "sagittal", CORONAL: "coronal", AXIAL: "axial"}
#: (horizontal, vertical) voxel axes shown in the plane normal to each axis
PLANE_AXES = {SAGITTAL: (1, 2), CORONAL: (0, 2), AXIAL: (0, 1)}
#: labels of the (left, right) screen sides of each plane
SIDE_LABELS = {SAGITTAL: ("P", "A"), CORONAL: ("L", "R"), AXIAL: ("L", "R")}


@dataclass(frozen=True)
class Volume:
    """A 3D image in RAS+ voxel order with its affine."""

    data: np.ndarray
    affine: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> Volume:
        image = nib.load(str(path))
        if len(image.shape) == 4 and image.shape[3] == 1:
            image = image.slicer[..., 0]
        canonical = nib.as_closest_canonical(image)
        return cls(np.asarray(canonical.dataobj, dtype=np.float32), canonical.affine)

    @property
    def zooms(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def with_data(self, data: np.ndarray) -> Volume:
        return Volume(np.asarray(data, dtype=np.float32), self.affine)

    def same_grid(self, other: Volume) -> bool:
        return self.data.shape == other.data.shape and np.allclose(
            self.affine, other.affine, atol=1e-3
        )

    def on_grid_of(self, target: Volume, *, order: int = 1, fill: float = 0.0) -> Volume:
        """This image resampled onto ``target``'s grid through the two affines."""
        if self.same_grid(target):
            return self
        return target.with_data(
            resample_onto(
                self.data, self.affine, target.data.shape, target.affine, order=order, cval=fill
            )
        )

    def world(self, axis: int, index: float) -> float:
        """World coordinate (mm) along ``axis`` of voxel plane ``index`` through the centre."""
        voxel = (np.array(self.data.shape) - 1) / 2
        voxel[axis] = index
        return float((self.affine @ np.append(voxel, 1))[axis])

    def index(self, axis: int, mm: float) -> int:
        """Voxel plane along ``axis`` nearest to world coordinate ``mm`` (clipped to the volume)."""
        centre = self.affine @ np.append((np.array(self.data.shape) - 1) / 2, 1)
        centre[axis] = mm
        voxel = np.linalg.solve(self.affine, centre)[axis]
        return int(np.clip(round(voxel), 0, self.data.shape[axis] - 1))

    def plane(self, axis: int, mm: float) -> np.ndarray:
        """The slice normal to ``axis`` at ``mm``, rows = vertical axis, for ``origin="lower"``."""
        cut = [slice(None)] * 3
        cut[axis] = self.index(axis, mm)
        return self.data[tuple(cut)].T

    def extent(self, axis: int) -> tuple[float, float, float, float]:
        """``imshow`` extent (left, right, bottom, top) in mm of the plane normal to ``axis``."""
        horizontal, vertical = PLANE_AXES[axis]
        return (*self._span(horizontal), *self._span(vertical))

    def _span(self, axis: int) -> tuple[float, float]:
        low, high = self.world(axis, -0.5), self.world(axis, self.data.shape[axis] - 0.5)
        return (min(low, high), max(low, high))


def robust_window(
    data: np.ndarray, mask: np.ndarray | None = None, percentiles=(0.5, 99.5)
) -> tuple[float, float]:
    """Display range: the given percentiles of the voxels in ``mask`` (else above the minimum)."""
    values = data[mask] if mask is not None and mask.any() else data[data > data.min()]
    if values.size == 0:
        values = data.ravel()
    low, high = np.percentile(values, percentiles)
    return (float(low), float(high if high > low else low + 1))


def symmetric_window(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Range ±the 99th percentile of |data| in ``mask``, for difference maps."""
    values = np.abs(data[mask] if mask is not None and mask.any() else data)
    limit = float(np.percentile(values, 99)) or 1.0
    return (-limit, limit)


def cut_positions(volume: Volume, mask: np.ndarray | None, count: int) -> dict[int, list[float]]:
    """``count`` evenly spaced world coordinates per axis inside the mask's bounding box."""
    inside = mask if mask is not None and mask.any() else np.ones(volume.data.shape, bool)
    cuts = {}
    for axis in (SAGITTAL, CORONAL, AXIAL):
        other = tuple(a for a in range(3) if a != axis)
        indices = np.flatnonzero(inside.any(axis=other))
        first, last = indices[0], indices[-1]
        margin = 0.12 * (last - first)
        positions = np.linspace(first + margin, last - margin, count)
        cuts[axis] = [volume.world(axis, index) for index in positions]
    return cuts
