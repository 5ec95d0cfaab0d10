"""Edge sharpness: how steep intensity edges are, for super-resolution and denoising outputs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bids_synth.metrics.image import as_mask


def gradient_magnitude(image, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """|∇I| by central differences in intensity per mm: √Σ_a (∂I/∂x_a)²."""
    gradients = np.gradient(np.asarray(image, dtype=np.float64), *spacing)
    return np.sqrt(sum(g**2 for g in gradients))


def edge_mask(
    reference, mask=None, *, quantile: float = 0.9, spacing=(1.0, 1.0, 1.0)
) -> np.ndarray:
    """Edge voxels of the reference: |∇x| > 0 and at or above its ``quantile`` inside the mask.

    The mask is first eroded by one voxel so that its border (e.g. head/air) is not counted as a
    tissue edge; flat voxels never count, even when more than ``1 − quantile`` of them are flat.
    """
    m = ndimage.binary_erosion(as_mask(mask, np.shape(reference)))
    if not m.any():
        raise ValueError("mask vanishes after a one-voxel erosion")
    magnitude = gradient_magnitude(reference, spacing)
    return m & (magnitude > 0) & (magnitude >= np.quantile(magnitude[m], quantile))


def mean_edge_gradient(image, edges, spacing=(1.0, 1.0, 1.0)) -> float:
    """Sharpness S = Σ|∇I|·e / Σe: mean gradient magnitude over the edge voxels e.

    Blurring spreads an edge over more voxels and lowers S; compare a prediction with its reference
    on the same edges (:func:`edge_mask` of the reference), e.g. as the ratio S_pred / S_ref. Noise
    raises S too (central differences of white noise of std σ have an RMS magnitude of σ·√(3/2) per
    voxel), so compare images of similar noise level.
    """
    e = as_mask(edges, np.shape(image))
    return float(gradient_magnitude(image, spacing)[e].mean())
