"""Learned harmonization of one session: a bundle's prediction inside the head's bounding box."""

from __future__ import annotations

import numpy as np

HEAD_MARGIN_VOXELS = 4  # context kept around the head's bounding box


def head_box(head: np.ndarray, margin: int = HEAD_MARGIN_VOXELS) -> tuple[slice, ...]:
    """The bounding box of ``head`` grown by ``margin`` voxels (the whole grid when empty)."""
    found = np.argwhere(head)
    if not len(found):
        return tuple(slice(0, n) for n in head.shape)
    low = np.maximum(found.min(0) - margin, 0)
    high = np.minimum(found.max(0) + 1 + margin, head.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def harmonize_session(
    bundle, channels: list[np.ndarray], affine: np.ndarray, head: np.ndarray, *, device: str
) -> tuple[np.ndarray, dict]:
    """The bundle's harmonized image of ``channels`` (one grid, ``affine``) in the target site's
    units: predicted on the head's bounding box only (air costs no windows), normalised with
    statistics inside ``head`` (as the head model normalises its training images), ≥ 0, 0 outside
    ``head``. Returns the image and :func:`predict_on_grid`'s info."""
    from bids_synth.synthesis.bundle_inference import predict_on_grid

    box = head_box(head)
    corner = np.array([s.start for s in box] + [1.0])
    cropped_affine = affine.copy()
    cropped_affine[:, 3] = affine @ corner
    cropped = [np.ascontiguousarray(c[box], dtype=np.float32) for c in channels]
    predicted, info = predict_on_grid(
        bundle, cropped, cropped_affine, device=device, mask=head[box]
    )
    out = np.zeros(head.shape, np.float32)
    out[box] = np.maximum(predicted, 0)
    out[~head] = 0
    return out, info
