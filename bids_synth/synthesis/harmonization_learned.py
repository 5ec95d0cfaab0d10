"""Learned harmonization of one session: a bundle's prediction inside the head's bounding box."""

from __future__ import annotations

import numpy as np


def harmonize_session(
    bundle, channels: list[np.ndarray], affine: np.ndarray, head: np.ndarray, *, device: str
) -> tuple[np.ndarray, dict]:
    """The bundle's harmonized image of ``channels`` (one grid, ``affine``) in the target site's
    units: predicted on the head's bounding box only (air costs no windows), normalised with
    statistics inside ``head`` (as the head model normalises its training images), ≥ 0, 0 outside
    ``head``. Returns the image and :func:`predict_on_grid`'s info."""
    from bids_synth.synthesis.bundle_inference import predict_on_grid

    predicted, info = predict_on_grid(bundle, channels, affine, device=device, mask=head)
    return np.where(head, np.maximum(predicted, 0), 0).astype(np.float32), info
