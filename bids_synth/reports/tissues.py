"""Rough tissue classes of the T1w, for outlines and per-tissue histograms (not a segmentation)."""

from __future__ import annotations

from scipy import ndimage

from bids_synth.metrics import intensity_classes
from bids_synth.reports.session import SessionFiles
from bids_synth.reports.volumes import Volume

TISSUES = ("CSF", "GM", "WM")  # labels 1, 2, 3: T1w intensity classes in the brain, darkest first
SMOOTHING_VOXELS = 0.7


def t1w_tissues(files: SessionFiles) -> Volume | None:
    """Labels 1–3 (:data:`TISSUES`) of a 3-class intensity k-means of the lightly smoothed T1w in
    the brain mask, 0 elsewhere, on the T1w grid; None without a T1w or a brain mask."""
    brain = files.mask_volume("brain")
    if files.t1w is None or brain is None or not brain.data.any():
        return None
    t1w = files.volume(files.t1w)
    smoothed = ndimage.gaussian_filter(t1w.data, SMOOTHING_VOXELS)
    return t1w.with_data(intensity_classes(smoothed, brain.on_grid_of(t1w, order=0).data > 0.5))
