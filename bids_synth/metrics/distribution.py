"""Distances between intensity distributions (harmonization)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from bids_synth.metrics.image import as_mask


def intensity_wasserstein(image_a, image_b, mask_a=None, mask_b=None) -> float:
    """Wasserstein-1 (earth mover's) distance between the masked intensity distributions.

    W1 = ∫ |F_a(t) − F_b(t)| dt with F the empirical CDFs of x_a[m_a] and x_b[m_b]; computed exactly
    from the voxel values (no binning), in intensity units. The two images need not share a grid.
    """
    a = np.asarray(image_a, dtype=np.float64)
    b = np.asarray(image_b, dtype=np.float64)
    return float(
        stats.wasserstein_distance(a[as_mask(mask_a, a.shape)], b[as_mask(mask_b, b.shape)])
    )
