"""Metrics on analytic cases: identical images, known offsets, known noise, known overlaps."""

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from bids_synth import metrics

SHAPE = (32, 32, 32)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def head():
    """A CT-like phantom: air around a soft-tissue ball with a bone shell, plus its body mask."""
    zz, yy, xx = np.indices(SHAPE)
    radius = np.sqrt((xx - 15.5) ** 2 + (yy - 15.5) ** 2 + (zz - 15.5) ** 2)
    ct = np.full(SHAPE, -1000.0)
    ct[radius < 12] = 40.0
    ct[(radius >= 10) & (radius < 12)] = 1200.0
    ct[radius < 5] = 10.0
    return ct, radius < 12.5


# --- CT (SynthRAD) ---------------------------------------------------------------------------------


def test_identical_ct_scores_perfectly(head):
    ct, mask = head
    scores = metrics.ct_metrics(ct, ct, mask)
    assert scores["mae"] == 0
    assert scores["psnr"] == math.inf
    assert scores["ssim"] == pytest.approx(1.0)
    assert scores["ms_ssim"] == pytest.approx(1.0)


def test_constant_hu_offset_gives_that_mae_and_psnr(head):
    ct, mask = head
    sct = ct + 50.0
    assert metrics.ct_mae(ct, sct, mask) == pytest.approx(50.0)
    assert metrics.ct_psnr(ct, sct, mask) == pytest.approx(20 * np.log10(4024 / 50))


def test_mae_uses_raw_hu_but_psnr_clips_to_the_synthrad_range(head):
    ct, mask = head
    sct = ct.copy()
    sct[mask & (ct > 1000)] = 3500.0  # 500 HU above the clipping ceiling of 3000
    clipped = sct.copy()
    clipped[sct > 3000] = 3000.0
    assert metrics.ct_mae(ct, sct, mask) > metrics.ct_mae(ct, clipped, mask)
    assert metrics.ct_psnr(ct, sct, mask) == metrics.ct_psnr(ct, clipped, mask)


def test_ct_ssim_matches_the_synthrad_recipe(head, rng):
    ct, mask = head
    sct = ct + rng.normal(0, 80, SHAPE)
    gt_shifted = np.where(mask, np.clip(ct, -1024, 3000), -1024) + 1024
    pred_shifted = np.where(mask, np.clip(sct, -1024, 3000), -1024) + 1024
    _, ssim_map = structural_similarity(gt_shifted, pred_shifted, data_range=4024, full=True)
    expected = ssim_map[3:-3, 3:-3, 3:-3][mask[3:-3, 3:-3, 3:-3]].mean()
    assert metrics.ct_ssim(ct, sct, mask) == pytest.approx(expected, rel=1e-12)


def test_changes_outside_the_mask_do_not_change_ct_metrics(head, rng):
    ct, mask = head
    sct = ct + rng.normal(0, 30, SHAPE)
    altered = np.where(mask, sct, rng.uniform(-1000, 2000, SHAPE))
    assert metrics.ct_metrics(ct, altered, mask) == metrics.ct_metrics(ct, sct, mask)


# --- MR / generic ----------------------------------------------------------------------------------


def test_gaussian_noise_gives_the_expected_psnr(rng):
    reference = np.zeros(SHAPE)
    reference[8:24, 8:24, 8:24] = 100.0
    noisy = reference + rng.normal(0, 5.0, SHAPE)
    assert metrics.psnr(reference, noisy) == pytest.approx(20 * np.log10(100 / 5.0), abs=0.1)
    assert metrics.nrmse(reference, noisy) == pytest.approx(
        5.0 * np.sqrt(reference.size) / np.linalg.norm(reference), rel=0.02
    )


def test_identical_mr_images_score_perfectly(head):
    image, mask = head
    assert metrics.psnr(image, image, mask) == math.inf
    assert metrics.ssim(image, image, mask) == pytest.approx(1.0)
    assert metrics.nrmse(image, image, mask) == 0.0


def test_data_range_defaults_to_the_reference_range_inside_the_mask():
    reference = np.zeros(SHAPE)
    reference[:16] = 10.0
    reference[0, 0, 0] = 1000.0  # outside the mask below: ignored
    mask = np.ones(SHAPE, bool)
    mask[0, 0, 0] = False
    assert metrics.masked_data_range(reference, mask) == 10.0


def test_changes_outside_the_mask_do_not_change_mr_metrics(head, rng):
    image, mask = head
    prediction = image + rng.normal(0, 20, SHAPE)
    altered = np.where(mask, prediction, 1e4)
    for metric in (metrics.psnr, metrics.ssim, metrics.nrmse, metrics.ms_ssim):
        assert metric(image, altered, mask) == metric(image, prediction, mask)


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise(head, rng):
    image, mask = head
    scores = [
        metrics.ms_ssim(image, image + rng.normal(0, sigma, SHAPE), mask, data_range=2200)
        for sigma in (0, 50, 200, 800)
    ]
    assert scores[0] == pytest.approx(1.0)
    assert all(0 <= s <= 1 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_ms_ssim_scale_count_fits_the_volume():
    assert metrics.ms_ssim_scales((24, 24, 24)) == 2
    assert metrics.ms_ssim_scales((176, 256, 256)) == 5
    with pytest.raises(ValueError, match="smaller than"):
        metrics.ms_ssim_scales((8, 64, 64))


def test_mismatched_shapes_and_empty_masks_are_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="empty"):
        metrics.psnr(np.zeros((4, 4, 4)), np.ones((4, 4, 4)), np.zeros((4, 4, 4)))


# --- segmentation ----------------------------------------------------------------------------------


def test_dice_on_known_overlaps():
    reference = np.zeros((10, 10, 10), int)
    prediction = np.zeros_like(reference)
    reference[:4] = 1  # 400 voxels
    prediction[2:6] = 1  # 400 voxels, 200 shared
    reference[6:] = 2
    prediction[6:] = 2
    scores = metrics.dice_per_label(reference, prediction)
    assert scores == {1: 0.5, 2: 1.0}
    assert metrics.mean_dice(scores) == 0.75


def test_dice_of_a_label_absent_from_both_maps_is_undefined_and_ignored():
    labels = np.ones((4, 4, 4), int)
    scores = metrics.dice_per_label(labels, labels, labels=[1, 3])
    assert scores[1] == 1.0 and math.isnan(scores[3])
    assert metrics.mean_dice(scores) == 1.0


def test_intensity_classes_recover_three_tissues_ordered_by_intensity(rng):
    truth = np.repeat([1, 2, 3], 1000)
    image = np.array([30.0, 70.0, 100.0])[truth - 1] + rng.normal(0, 3, truth.size)
    labels = metrics.intensity_classes(image.reshape(30, 10, 10))
    assert metrics.mean_dice(metrics.dice_per_label(truth.reshape(30, 10, 10), labels)) > 0.99


# --- noise -----------------------------------------------------------------------------------------


def test_background_sigma_corrects_the_rician_bias(rng):
    sigma = 12.0
    air = np.abs(rng.normal(0, sigma, SHAPE) + 1j * rng.normal(0, sigma, SHAPE))
    estimate = metrics.background_noise_sigma(air, np.ones(SHAPE, bool))
    assert estimate == pytest.approx(sigma, rel=0.02)
    assert air.std() == pytest.approx(sigma * np.sqrt(2 - np.pi / 2), rel=0.02)  # the naive bias


def test_wavelet_sigma_ignores_anatomy_and_finds_gaussian_noise(rng):
    zz, yy, xx = np.indices(SHAPE)
    radius = np.sqrt((xx - 15.5) ** 2 + (yy - 15.5) ** 2 + (zz - 15.5) ** 2)
    brain = np.select([radius < 4, radius < 8, radius < 12], [30.0, 80.0, 60.0], 0.0)  # CSF/WM/GM
    anatomy = ndimage.gaussian_filter(brain, 0.8) + np.linspace(0, 20, 32)  # partial volume + bias
    for sigma in (2.0, 5.0, 10.0):
        estimate = metrics.wavelet_noise_sigma(anatomy + rng.normal(0, sigma, SHAPE), radius < 12)
        assert estimate == pytest.approx(sigma, rel=0.1)


# --- sharpness and distributions ------------------------------------------------------------------


def test_sharpness_decreases_with_blur(head):
    image, mask = head
    edges = metrics.edge_mask(image, mask)
    assert edges.any()
    sharpness = [
        metrics.mean_edge_gradient(ndimage.gaussian_filter(image, s) if s else image, edges)
        for s in (0, 0.7, 1.5, 3.0)
    ]
    assert sharpness == sorted(sharpness, reverse=True)
    assert sharpness[-1] < 0.5 * sharpness[0]


def test_gradient_magnitude_of_a_ramp_is_its_slope_per_mm():
    ramp = np.broadcast_to(np.arange(10.0) * 3, (10, 10, 10))
    assert np.allclose(metrics.gradient_magnitude(ramp, spacing=(1.0, 1.0, 2.0)), 1.5)


def test_wasserstein_of_shifted_distributions_equals_the_shift(rng):
    a = rng.normal(100, 15, SHAPE)
    mask = np.zeros(SHAPE, bool)
    mask[4:28, 4:28, 4:28] = True
    shifted = np.where(mask, a + 7.5, -1e6)  # far outliers outside the mask are ignored
    assert metrics.intensity_wasserstein(a, shifted, mask, mask) == pytest.approx(7.5)
    assert metrics.intensity_wasserstein(a, a, mask, mask) == 0.0


def test_skull_thickness_of_a_spherical_shell():
    """Rays from the centre cross a 6 mm shell radially: 6 mm whatever the voxel size."""
    voxel_mm = np.array([1.0, 1.0, 2.0])
    shape = (140, 140, 70)
    centre = (np.array(shape) - 1) / 2 * voxel_mm
    grid = np.stack(np.indices(shape), axis=-1) * voxel_mm
    radius = np.linalg.norm(grid - centre, axis=-1)
    head = radius <= 60.0  # its top lies 60 mm above the centre, where the rays start
    bone = head & (radius > 50.0) & (radius <= 56.0)
    thickness = metrics.skull_thickness_mm(bone, head, voxel_mm)
    assert thickness["median"] == pytest.approx(6.0, abs=1.0)
    assert thickness["p25"] <= thickness["median"] <= thickness["p75"]
    assert thickness["rays"] > 100
    nothing = metrics.skull_thickness_mm(np.zeros_like(bone), head, voxel_mm)
    assert nothing["rays"] == 0 and math.isnan(nothing["median"])
