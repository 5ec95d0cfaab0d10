"""Synthetic-CT metrics exactly as the SynthRAD2023 challenge defines them.

x is the real CT, y the synthetic CT (both in HU, same grid) and m the binary body mask.
"""

from __future__ import annotations

import numpy as np

from bids_synth.metrics.image import as_mask, ms_ssim, psnr, ssim
from bids_synth.modalities import SCORING_HU_RANGE

#: data range R of PSNR and SSIM: 3000 − (−1024) = 4024 HU
HU_DATA_RANGE = SCORING_HU_RANGE[1] - SCORING_HU_RANGE[0]


def ct_mae(ct, sct, mask=None) -> float:
    """Mean absolute error in raw (unclipped) HU: MAE = Σ|x − y|·m / Σm."""
    x, y = np.asarray(ct, dtype=np.float64), np.asarray(sct, dtype=np.float64)
    m = as_mask(mask, x.shape)
    return float(np.abs(x[m] - y[m]).mean())


def ct_psnr(ct, sct, mask=None) -> float:
    """PSNR over masked voxels of both images clipped to [−1024, 3000] HU, R = 4024.

    PSNR = 10·log10(R² / MSE), MSE = Σ(clip(x) − clip(y))²·m / Σm; ``math.inf`` when equal.
    """
    low, high = SCORING_HU_RANGE
    return psnr(np.clip(ct, low, high), np.clip(sct, low, high), mask, data_range=HU_DATA_RANGE)


def ct_ssim(ct, sct, mask=None) -> float:
    """SSIM with scikit-image 3D defaults (7³ uniform window, R = 4024) averaged inside the mask.

    Both images are clipped to [−1024, 3000] HU, set to −1024 outside the mask and shifted by
    +1024; the SSIM map is averaged over mask voxels with 3 border voxels cropped on every side.
    """
    return ssim(*_shifted(ct, sct), mask, data_range=HU_DATA_RANGE, background=0.0)


def ct_ms_ssim(ct, sct, mask=None) -> float:
    """3D MS-SSIM (:func:`~bids_synth.metrics.image.ms_ssim`) on the inputs of :func:`ct_ssim`."""
    return ms_ssim(*_shifted(ct, sct), mask, data_range=HU_DATA_RANGE, background=0.0)


def ct_metrics(ct, sct, mask=None) -> dict[str, float]:
    """``{"mae", "psnr", "ssim", "ms_ssim"}`` of a synthetic CT against the real one."""
    return {
        "mae": ct_mae(ct, sct, mask),
        "psnr": ct_psnr(ct, sct, mask),
        "ssim": ct_ssim(ct, sct, mask),
        "ms_ssim": ct_ms_ssim(ct, sct, mask),
    }


def _shifted(ct, sct) -> tuple[np.ndarray, np.ndarray]:
    """Both images clipped to SCORING_HU_RANGE and shifted by +1024 HU so that air is 0."""
    return tuple(
        np.clip(np.asarray(a, dtype=np.float64), *SCORING_HU_RANGE) - SCORING_HU_RANGE[0]
        for a in (ct, sct)
    )
