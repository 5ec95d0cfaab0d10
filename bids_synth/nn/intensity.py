"""Intensity normalisation declared by a bundle, and its inverse (pure numpy).

A normalisation is a linear map ``(x - offset) / scale``; the bundle declares how it is found:

* input methods: ``percentile-scale`` (divide by the foreground's ``percentile``-th percentile,
  as the generative head model normalises MR), ``percentile`` (``low``/``high`` percentiles of the
  foreground map to 0 and 1), ``zscore`` (foreground mean and standard deviation), ``scale``
  (fixed ``offset``/``scale``, e.g. HU/1000 for CT), ``none``;
* output methods: ``scale`` (fixed, e.g. ``{"method": "scale", "scale": 1000}`` → HU) or ``input``
  (the first input channel's map: the output is in the input's units, as for denoising).

The foreground is a given mask (the head mask: where the head model takes its statistics), else the
voxels above the volume's minimum (background is usually its minimum).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

INPUT_METHODS = ("percentile-scale", "percentile", "zscore", "scale", "none")
OUTPUT_METHODS = ("scale", "input")


class LinearMap(NamedTuple):
    offset: float
    scale: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.offset) / self.scale).astype(np.float32)

    def invert(self, x: np.ndarray) -> np.ndarray:
        return (x * self.scale + self.offset).astype(np.float32)


def fit_input_map(
    volume: np.ndarray, spec: dict, foreground: np.ndarray | None = None
) -> LinearMap:
    """The map that normalises ``volume`` (one channel) according to the input ``spec``, with
    statistics inside ``foreground`` when given."""
    method = spec.get("method", "none")
    if method == "none":
        return LinearMap(0.0, 1.0)
    if method == "scale":
        return LinearMap(float(spec.get("offset", 0.0)), float(spec["scale"]))
    inside = volume > volume.min() if foreground is None else foreground > 0
    values = volume[inside] if inside.any() else volume.ravel()
    if method == "percentile-scale":
        return LinearMap(0.0, float(max(np.percentile(values, spec.get("percentile", 99.5)), 1e-6)))
    if method == "percentile":
        low, high = np.percentile(values, [spec.get("low", 0.5), spec.get("high", 99.5)])
        return LinearMap(float(low), float(max(high - low, 1e-6)))
    if method == "zscore":
        return LinearMap(float(values.mean()), float(max(values.std(), 1e-6)))
    raise ValueError(f"unknown input normalisation {method!r}; expected one of {INPUT_METHODS}")


def output_map(spec: dict, input_map: LinearMap) -> LinearMap:
    """The map between network output and physical units declared by the output ``spec``."""
    method = spec.get("method", "input")
    if method == "scale":
        return LinearMap(float(spec.get("offset", 0.0)), float(spec["scale"]))
    if method == "input":
        return input_map
    raise ValueError(f"unknown output normalisation {method!r}; expected one of {OUTPUT_METHODS}")


def normalize_channels(
    volumes: np.ndarray, spec: dict, foreground: np.ndarray | None = None
) -> tuple[np.ndarray, list[LinearMap]]:
    """Normalise each channel of a ``(C, *spatial)`` array (statistics inside ``foreground`` when
    given); return the array and the maps used."""
    maps = [fit_input_map(channel, spec, foreground) for channel in volumes]
    return np.stack([m.apply(channel) for m, channel in zip(maps, volumes)]), maps
