"""Overlap of tissue label maps, and a simple intensity tissue classifier to feed it."""

from __future__ import annotations

import numpy as np

from bids_synth.metrics.image import as_mask


def dice_per_label(reference, prediction, labels=None) -> dict[int, float]:
    """Dice coefficient of every label: D_l = 2|A_l ∩ B_l| / (|A_l| + |B_l|).

    ``labels`` defaults to the non-zero labels present in either map (0 is background). A label
    absent from both maps scores NaN (undefined), which :func:`mean_dice` ignores.
    """
    a, b = np.asarray(reference), np.asarray(prediction)
    if a.shape != b.shape:
        raise ValueError(f"label map shapes differ: {a.shape} vs {b.shape}")
    if labels is None:
        labels = np.setdiff1d(np.union1d(np.unique(a), np.unique(b)), [0])
    scores = {}
    for label in labels:
        in_a, in_b = a == label, b == label
        total = int(in_a.sum() + in_b.sum())
        scores[int(label)] = 2 * int((in_a & in_b).sum()) / total if total else float("nan")
    return scores


def mean_dice(scores: dict[int, float]) -> float:
    """Unweighted mean of the defined per-label Dice scores (NaN when none is defined)."""
    values = [v for v in scores.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def intensity_classes(image, mask=None, n_classes: int = 3, iterations: int = 50) -> np.ndarray:
    """Label map 1..K of a 1D k-means on the masked intensities (0 outside the mask).

    Centres start at the (k − ½)/K quantiles and follow Lloyd's iterations; labels are ordered by
    increasing centre intensity, so two images of the same contrast get comparable labels (e.g.
    CSF/GM/WM on a T1w brain). A stand-in for a downstream tissue segmentation when none is given.
    """
    x = np.asarray(image, dtype=np.float64)
    m = as_mask(mask, x.shape)
    values = x[m]
    centres = np.quantile(values, (np.arange(n_classes) + 0.5) / n_classes)
    for _ in range(iterations):
        nearest = np.abs(values[:, None] - centres[None, :]).argmin(axis=1)
        updated = np.array(
            [
                values[nearest == k].mean() if (nearest == k).any() else centres[k]
                for k in range(n_classes)
            ]
        )
        if np.allclose(updated, centres):
            break
        centres = updated
    order = np.argsort(centres)
    nearest = np.abs(values[:, None] - centres[order][None, :]).argmin(axis=1)
    labels = np.zeros(x.shape, dtype=np.uint8)
    labels[m] = nearest + 1
    return labels
