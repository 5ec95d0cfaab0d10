"""Ready-made mosaic rows: windowed images, mask outlines, difference maps, checkerboards."""

from __future__ import annotations

import numpy as np

from bids_synth.reports.mosaics import Layer, Row
from bids_synth.reports.volumes import Volume, robust_window, symmetric_window

HEAD_COLOR, BRAIN_COLOR, TISSUE_COLOR = "#2ecc40", "#ff4136", "#ffdc00"
BONE_WINDOW = (-500.0, 1500.0)  # HU: level 500, width 2000
DIFFERENCE_CMAP = "RdBu_r"


def inside(mask: Volume | None, like: Volume | None = None) -> np.ndarray | None:
    """The mask as booleans (on ``like``'s grid when given), None without a mask."""
    if mask is None:
        return None
    return (mask if like is None else mask.on_grid_of(like, order=0)).data > 0.5


def image(
    label: str,
    volume: Volume,
    mask: Volume | None = None,
    *,
    window=None,
    outlines: tuple[tuple[Volume, str], ...] = (),
    colorbar: str | None = None,
) -> Row:
    """``volume`` in grey, windowed by robust percentiles in ``mask``, with (volume, colour) outlines."""
    window = window or robust_window(volume.data, inside(mask, volume))
    layers = [Layer(volume, window=window)]
    layers += [Layer(outline, "contour", color=color) for outline, color in outlines]
    return Row(label, tuple(layers), colorbar)


def difference(
    label: str, minuend: Volume, subtrahend: Volume, mask: Volume | None, *, units: str, window=None
) -> Row:
    """``minuend − subtrahend`` on the minuend's grid in a diverging map (zero white) over
    ``window`` (default ±99th percentile of |difference|); transparent outside ``mask``."""
    region = inside(mask, minuend)
    delta = minuend.data - subtrahend.on_grid_of(minuend).data
    if region is not None:
        delta = np.where(region, delta, np.nan)
    window = window or symmetric_window(delta, region)
    return Row(
        label, (Layer(minuend.with_data(delta), window=window, cmap=DIFFERENCE_CMAP),), units
    )


def overlay(
    label: str,
    base: Volume,
    base_mask: Volume | None,
    top: Volume,
    *,
    window,
    threshold: float,
    cmap: str,
    units: str,
) -> Row:
    """``top`` in colour where it is ≥ ``threshold``, over ``base`` in grey."""
    return Row(
        label,
        (
            Layer(base, window=robust_window(base.data, inside(base_mask, base))),
            Layer(top, "overlay", window=window, cmap=cmap, alpha=0.75, threshold=threshold),
        ),
        colorbar=units,
    )


def checkerboard(
    label: str, first: Volume, second: Volume, mask: Volume | None, *, squares: int = 8
) -> Row:
    """Alternating cubes of two images (each scaled to [0, 1] by its own window), ``squares`` per
    field of view: edges that continue across square borders show good alignment."""
    second = second.on_grid_of(first)
    scaled = [_unit_scale(v, inside(mask, first)) for v in (first, second)]
    size = max(1, round(max(first.data.shape) / squares))
    parity = sum(np.indices(first.data.shape) // size) % 2
    return Row(label, (Layer(first.with_data(np.where(parity == 0, *scaled)), window=(0, 1)),))


def _unit_scale(volume: Volume, mask: np.ndarray | None) -> np.ndarray:
    low, high = robust_window(volume.data, mask)
    return np.clip((volume.data - low) / (high - low), 0, 1)
