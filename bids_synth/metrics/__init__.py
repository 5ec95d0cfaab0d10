"""Image-quality metrics as pure numpy/scipy functions (no BIDS, no torch).

=====================  ==============================================================================
module                 contents
=====================  ==============================================================================
:mod:`.anatomy`        skull thickness over the vertex (anatomical plausibility of a head)
:mod:`.ct`             SynthRAD2023 MAE / PSNR / SSIM for synthetic CT, plus MS-SSIM on the same inputs
:mod:`.image`          PSNR, SSIM, MS-SSIM, NRMSE within a mask (MR and generic images)
:mod:`.segmentation`   Dice per label, mean Dice, an intensity k-means tissue classifier
:mod:`.noise`          noise σ: Rician background estimate, wavelet (MAD) foreground estimate
:mod:`.sharpness`      gradient magnitude at edges
:mod:`.distribution`   Wasserstein-1 distance between masked intensity distributions
=====================  ==============================================================================
"""

from bids_synth.metrics.anatomy import skull_thickness_mm
from bids_synth.metrics.ct import (
    HU_DATA_RANGE,
    ct_mae,
    ct_metrics,
    ct_ms_ssim,
    ct_psnr,
    ct_ssim,
)
from bids_synth.metrics.distribution import intensity_wasserstein
from bids_synth.metrics.image import (
    MS_SSIM_WINDOW,
    as_mask,
    masked_data_range,
    ms_ssim,
    ms_ssim_scales,
    nrmse,
    psnr,
    ssim,
)
from bids_synth.metrics.noise import background_noise_sigma, wavelet_noise_sigma
from bids_synth.metrics.segmentation import dice_per_label, intensity_classes, mean_dice
from bids_synth.metrics.sharpness import edge_mask, gradient_magnitude, mean_edge_gradient

__all__ = [
    "HU_DATA_RANGE",
    "MS_SSIM_WINDOW",
    "as_mask",
    "background_noise_sigma",
    "ct_mae",
    "ct_metrics",
    "ct_ms_ssim",
    "ct_psnr",
    "ct_ssim",
    "dice_per_label",
    "edge_mask",
    "gradient_magnitude",
    "intensity_classes",
    "intensity_wasserstein",
    "masked_data_range",
    "mean_dice",
    "mean_edge_gradient",
    "ms_ssim",
    "ms_ssim_scales",
    "nrmse",
    "psnr",
    "skull_thickness_mm",
    "ssim",
    "wavelet_noise_sigma",
]
