"""Alignment quality of two images of possibly different contrasts on one voxel grid."""

from __future__ import annotations

import numpy as np

from bids_synth.metrics.image import as_mask

CLIP_PERCENTILES = (0.5, 99.5)


def registration_quality(reference, moving, mask=None, *, bins: int = 32) -> float:
    """Normalised mutual information of the masked intensities, in [0, 1].

    NMI = 2·I(A;B) / (H(A) + H(B)), with I(A;B) = H(A) + H(B) − H(A,B) and H the Shannon entropies
    of the joint and marginal ``bins``×``bins`` histograms of the two images inside the mask, each
    image first clipped to its 0.5–99.5th percentiles. 1 when one image is a function of the other
    (perfect alignment of matching tissue), 0 for independent images; misalignment lowers it. It
    needs no shared intensity scale, so it suits T1w↔T2w and MR↔CT. Compare values of one modality
    pair across participants, not across pairs.
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(moving, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    m = as_mask(mask, x.shape)
    joint = (
        np.bincount(
            _bin_index(x[m], bins) * bins + _bin_index(y[m], bins), minlength=bins * bins
        ).reshape(bins, bins)
        / m.sum()
    )
    h_x, h_y = _entropy(joint.sum(axis=1)), _entropy(joint.sum(axis=0))
    if h_x + h_y == 0:
        return 0.0  # both images constant in the mask: no information to align
    return float(2 * (h_x + h_y - _entropy(joint)) / (h_x + h_y))


def _bin_index(values: np.ndarray, bins: int) -> np.ndarray:
    low, high = np.percentile(values, CLIP_PERCENTILES)
    if high <= low:
        return np.zeros(values.shape, dtype=np.int64)
    return np.clip(((values - low) / (high - low) * bins).astype(np.int64), 0, bins - 1)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
