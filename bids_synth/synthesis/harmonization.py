"""Intensity standardisation within a brain mask: Nyul landmarks, WhiteStripe, z-score.

Pure numpy. Every function maps a whole image (background included) with a transform fitted on the
voxels inside the mask, so the output stays on the input grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Nyul & Udupa (1999) landmarks: the 1st and 99th percentiles bound the intensity range of interest,
#: the deciles in between are matched piecewise linearly
NYUL_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
#: the standard scale the 1st and 99th percentiles are mapped to
NYUL_RANGE = (0.0, 100.0)
#: WhiteStripe half width, as a fraction of the brain's intensity quantiles (Shinohara 2014: 5 %)
WHITESTRIPE_WIDTH = 0.05


@dataclass
class NyulReference:
    """A standard histogram: landmark percentiles and where they sit on the standard scale."""

    percentiles: tuple[float, ...]
    landmarks: tuple[float, ...]  # standard-scale intensity of each percentile
    standard_range: tuple[float, float] = NYUL_RANGE
    images: list[dict] = field(default_factory=list)  # what it was learned from

    def __post_init__(self):
        self.percentiles = tuple(float(p) for p in self.percentiles)
        self.landmarks = tuple(float(s) for s in self.landmarks)
        self.standard_range = tuple(float(s) for s in self.standard_range)
        if len(self.percentiles) != len(self.landmarks) or len(self.percentiles) < 2:
            raise ValueError("a Nyul reference needs as many landmarks as percentiles (at least 2)")
        if np.any(np.diff(self.percentiles) <= 0) or np.any(np.diff(self.landmarks) <= 0):
            raise ValueError("Nyul percentiles and landmarks must be strictly increasing")


def masked_values(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The finite intensities inside the mask; ``ValueError`` when there are too few to fit."""
    values = np.asarray(image, dtype=np.float64)[np.asarray(mask) > 0]
    values = values[np.isfinite(values)]
    if values.size < 100:
        raise ValueError(f"the mask holds {values.size} voxels: too few to fit an intensity model")
    return values


def image_landmarks(values: np.ndarray, percentiles=NYUL_PERCENTILES) -> np.ndarray:
    """The intensities at the landmark percentiles, made strictly increasing (ties nudged apart)."""
    landmarks = np.percentile(values, percentiles)
    spread = max(float(landmarks[-1] - landmarks[0]), 1e-6)
    steps = np.maximum(np.diff(landmarks), spread * 1e-6)
    return np.concatenate([[landmarks[0]], landmarks[0] + np.cumsum(steps)])


def learn_nyul(
    image_landmark_sets: list[np.ndarray],
    percentiles=NYUL_PERCENTILES,
    standard_range=NYUL_RANGE,
    images: list[dict] | None = None,
) -> NyulReference:
    """Nyul training from each image's landmarks (:func:`image_landmarks`): map every image's outer
    landmarks linearly onto the standard range, then average the mapped landmarks over images."""
    if not image_landmark_sets:
        raise ValueError("a Nyul reference needs at least one image")
    low, high = standard_range
    mapped = [
        low + (landmarks - landmarks[0]) * (high - low) / (landmarks[-1] - landmarks[0])
        for landmarks in map(np.asarray, image_landmark_sets)
    ]
    return NyulReference(percentiles, tuple(np.mean(mapped, axis=0)), standard_range, images or [])


def apply_nyul(image: np.ndarray, mask: np.ndarray, reference: NyulReference) -> np.ndarray:
    """Piecewise-linear map of the image's landmarks (in the mask) onto the reference landmarks.

    Intensities beyond the outer landmarks continue along the first/last segment's slope.
    """
    source = image_landmarks(masked_values(image, mask), reference.percentiles)
    target = np.asarray(reference.landmarks)
    x = np.asarray(image, dtype=np.float64)
    out = np.interp(x, source, target)
    below, above = x < source[0], x > source[-1]
    low_slope = (target[1] - target[0]) / (source[1] - source[0])
    high_slope = (target[-1] - target[-2]) / (source[-1] - source[-2])
    out[below] = target[0] + (x[below] - source[0]) * low_slope
    out[above] = target[-1] + (x[above] - source[-1]) * high_slope
    return out.astype(np.float32)


def zscore(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(x − mean) / sd, mean and sd of the voxels in the mask."""
    values = masked_values(image, mask)
    sd = float(values.std())
    if sd <= 0:
        raise ValueError("the image is constant inside the mask")
    return ((np.asarray(image, dtype=np.float64) - values.mean()) / sd).astype(np.float32)


@dataclass(frozen=True)
class WhiteStripe:
    """The normal-appearing white-matter stripe: its histogram mode and intensity statistics."""

    mode: float
    mean: float
    sd: float
    quantiles: tuple[float, float]  # the stripe's bounds, as quantiles of the brain's intensities


def white_stripe(values: np.ndarray, *, last_mode: bool, width: float = WHITESTRIPE_WIDTH,
                 bins: int = 512) -> WhiteStripe:  # fmt: skip
    """Shinohara et al. (2014): find the WM mode of the smoothed brain histogram (the highest-
    intensity peak for T1w, the tallest for T2w-like contrasts) and take the voxels whose quantile
    lies within ``width`` of the mode's quantile."""
    low, high = np.percentile(values, [0.5, 99.5])
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    smooth = _gaussian_smooth(counts.astype(np.float64), sigma=bins / 100)
    peaks = (
        np.flatnonzero(
            (smooth[1:-1] >= smooth[:-2]) & (smooth[1:-1] > smooth[2:]) & (smooth[1:-1] > 0)
        )
        + 1
    )
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(smooth))])
    # a peak counts when it reaches a tenth of the tallest: the tail's ripples are not modes
    peaks = peaks[smooth[peaks] >= 0.1 * smooth[peaks].max()]
    peak = peaks[-1] if last_mode else peaks[np.argmax(smooth[peaks])]
    mode = float(centres[peak])
    q = float(np.mean(values <= mode))
    bounds = (max(q - width, 0.0), min(q + width, 1.0))
    lo, hi = np.quantile(values, bounds)
    stripe = values[(values >= lo) & (values <= hi)]
    sd = float(stripe.std())
    if sd <= 0:
        raise ValueError("the white stripe has no intensity spread")
    return WhiteStripe(mode, float(stripe.mean()), sd, bounds)


def apply_whitestripe(image: np.ndarray, mask: np.ndarray, *, last_mode: bool) -> tuple[np.ndarray, WhiteStripe]:  # fmt: skip
    """(x − μ_ws) / σ_ws with the white stripe's mean and sd (WM at 0, one stripe sd per unit)."""
    stripe = white_stripe(masked_values(image, mask), last_mode=last_mode)
    out = (np.asarray(image, dtype=np.float64) - stripe.mean) / stripe.sd
    return out.astype(np.float32), stripe


def _gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(int(3 * sigma), 1)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return np.convolve(np.pad(values, radius, mode="edge"), kernel / kernel.sum(), mode="valid")
