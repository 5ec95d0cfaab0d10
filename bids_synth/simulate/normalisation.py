"""Intensity normalisation of network inputs and targets (model bundles declare it).

- MR: divide by the :data:`MR_PERCENTILE` th percentile of the image inside the head mask, so
  tissue intensities are about [0, 1] whatever the scanner gain.
- CT: ``HU / CT_SCALE_HU`` (air −1, water 0, dense bone ≈ 1.5–2).
"""

from __future__ import annotations

import torch

MR_PERCENTILE = 99.5
CT_SCALE_HU = 1000.0


def mr_scale(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The :data:`MR_PERCENTILE` th percentile of ``image`` inside ``mask`` (0-d tensor, > 0)."""
    values = image[mask] if mask.any() else image.reshape(-1)
    k = max(1, min(values.numel(), round(MR_PERCENTILE / 100 * values.numel())))
    return values.float().kthvalue(k).values.clamp(min=1e-6)
