"""Full-reference image similarity inside a mask: PSNR, SSIM, MS-SSIM and NRMSE.

All functions take ``(reference, prediction, mask=None)`` on the same voxel grid; ``mask=None``
means every voxel. ``data_range`` R defaults to the reference's range inside the mask,
R = max(x[m]) − min(x[m]); pass a fixed R (e.g. 4024 HU for CT) to compare across images.
SSIM windows see voxels outside the mask, so :func:`ssim` and :func:`ms_ssim` first set both
images to a constant ``background`` outside the mask (default min(x[m]), the SynthRAD convention):
what lies outside the mask then cannot change the score.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity
from skimage.util import crop

SSIM_BORDER = 3
"""Voxels cropped from each border before averaging SSIM maps: (win_size 7 − 1) / 2 of skimage."""

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents of Wang, Simoncelli & Bovik (2003), finest scale first."""

MS_SSIM_SIGMA = 1.5
MS_SSIM_WINDOW = 11
_K1, _K2 = 0.01, 0.03


def as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask (``mask > 0``), all-true when ``mask`` is None; checks shape and non-emptiness."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask) > 0
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} differs from image shape {tuple(shape)}")
    if not mask.any():
        raise ValueError("mask is empty")
    return mask


def masked_data_range(reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """R = max(x[m]) − min(x[m]), the reference's intensity range inside the mask."""
    values = np.asarray(reference)[as_mask(mask, np.shape(reference))]
    return float(values.max() - values.min())


def psnr(reference, prediction, mask=None, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over masked voxels.

    PSNR = 10·log10(R² / MSE), MSE = Σ(x − y)²·m / Σm; ``math.inf`` when the images agree.
    """
    x, y, m = _checked(reference, prediction, mask)
    data_range = masked_data_range(x, m) if data_range is None else float(data_range)
    mse = float(np.mean((x[m] - y[m]) ** 2))
    return math.inf if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def nrmse(reference, prediction, mask=None) -> float:
    """Normalised root-mean-square error over masked voxels (Euclidean normalisation).

    NRMSE = √(Σ(x − y)²·m) / √(Σx²·m), i.e. the relative L2 error, as scikit-image's default.
    """
    x, y, m = _checked(reference, prediction, mask)
    return float(np.linalg.norm(x[m] - y[m]) / np.linalg.norm(x[m]))


def ssim(
    reference,
    prediction,
    mask=None,
    *,
    data_range: float | None = None,
    background: float | None = None,
) -> float:
    """Structural similarity averaged over the mask, scikit-image 3D defaults.

    SSIM(p) = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)) in a 7³ uniform window,
    C1 = (0.01·R)², C2 = (0.03·R)², sample covariances. Outside the mask both images are set to
    ``background`` (default min(x[m])); the SSIM map is averaged over mask voxels more than
    :data:`SSIM_BORDER` voxels from the volume border.
    """
    x, y, m = _checked(reference, prediction, mask)
    data_range = masked_data_range(x, m) if data_range is None else float(data_range)
    x, y = _fill_outside(x, y, m, background)
    _, ssim_map = structural_similarity(x, y, data_range=data_range, full=True)
    inside = crop(m, SSIM_BORDER)
    if not inside.any():
        raise ValueError("mask has no voxel away from the volume border")
    return float(crop(ssim_map, SSIM_BORDER)[inside].mean(dtype=np.float64))


def ms_ssim_scales(shape: tuple[int, ...], max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """Number of scales M such that the coarsest level still holds an 11-voxel window.

    M = max{k ≤ max_scales : min(shape) / 2^(k−1) ≥ 11}; 24³ gives 2, a 1 mm head (≥ 176) gives 5.
    """
    if min(shape) < MS_SSIM_WINDOW:
        raise ValueError(f"volume {tuple(shape)} is smaller than the {MS_SSIM_WINDOW}-voxel window")
    scales = 1
    while scales < max_scales and min(shape) // 2**scales >= MS_SSIM_WINDOW:
        scales += 1
    return scales


def ms_ssim(
    reference,
    prediction,
    mask=None,
    *,
    data_range: float | None = None,
    background: float | None = None,
    max_scales: int = len(MS_SSIM_WEIGHTS),
) -> float:
    """Multi-scale SSIM in 3D (Wang et al. 2003), in [0, 1].

    MS-SSIM = l_M^(w_M) · Π_{j=1..M} cs_j^(w_j), where cs_j is the mean contrast-structure term
    (2σxy + C2)/(σx² + σy² + C2) and l_M the mean luminance term (2μxμy + C1)/(μx² + μy² + C1) at
    scale j, with a Gaussian window (σ = 1.5, 11 voxels), C1 = (0.01·R)², C2 = (0.03·R)². Scale j+1
    is scale j average-pooled by 2 (the mask too: a coarse voxel is inside when more than half of
    its children are). M comes from :func:`ms_ssim_scales` and the weights w_1..w_M are the first
    M of :data:`MS_SSIM_WEIGHTS`, renormalised to sum 1. Means are taken inside the mask away from
    the border (5 voxels; the whole interior at a scale where no mask voxel is left there);
    negative means are clamped to 0. Outside the mask both images are set to
    ``background`` as in :func:`ssim`.
    """
    x, y, m = _checked(reference, prediction, mask)
    data_range = masked_data_range(x, m) if data_range is None else float(data_range)
    x, y = _fill_outside(x, y, m, background)
    scales = ms_ssim_scales(x.shape, max_scales)
    weights = np.array(MS_SSIM_WEIGHTS[:scales]) / sum(MS_SSIM_WEIGHTS[:scales])
    score = 1.0
    for level, weight in enumerate(weights):
        luminance, contrast_structure = _ssim_terms(x, y, m, data_range)
        coarsest = level == scales - 1
        score *= max(contrast_structure * (luminance if coarsest else 1.0), 0.0) ** weight
        if not coarsest:
            x, y = _halve(x), _halve(y)
            m = _halve(m.astype(float)) > 0.5
    return float(score)


def _ssim_terms(x, y, mask, data_range) -> tuple[float, float]:
    """Masked means of the luminance and contrast-structure SSIM maps (Gaussian window)."""
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2

    def blur(a):
        return ndimage.gaussian_filter(a, MS_SSIM_SIGMA, truncate=3.5)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    border = MS_SSIM_WINDOW // 2
    inside = crop(mask, border)
    if not inside.any():
        inside = np.ones_like(inside)  # a mask thinner than the border: use the whole interior
    return (
        float(crop(luminance, border)[inside].mean()),
        float(crop(contrast_structure, border)[inside].mean()),
    )


def _halve(a: np.ndarray) -> np.ndarray:
    """2× average pooling along every axis (odd trailing voxels dropped)."""
    a = a[tuple(slice(0, 2 * (n // 2)) for n in a.shape)]
    for axis in range(a.ndim):
        a = a.reshape(a.shape[:axis] + (a.shape[axis] // 2, 2) + a.shape[axis + 1 :]).mean(axis + 1)
    return a


def _fill_outside(x, y, mask, background):
    background = x[mask].min() if background is None else background
    return np.where(mask, x, background), np.where(mask, y, background)


def _checked(reference, prediction, mask):
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(prediction, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    return x, y, as_mask(mask, x.shape)
