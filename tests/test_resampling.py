"""The package's one resampler: an image onto another grid through the two affines."""

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to

from bids_synth.resampling import resample_onto


def _oblique(angle, zooms, shift):
    c, s = np.cos(angle), np.sin(angle)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(zooms)
    affine[:3, 3] = shift
    return affine


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
@pytest.mark.parametrize("order", [0, 1])
def test_resample_onto_matches_nibabel_and_keeps_the_dtype(dtype, order):
    data = (np.random.default_rng(0).random((20, 18, 16)) * 100).astype(dtype)
    source, target = (
        _oblique(0.2, (1.1, 0.9, 1.3), (-10, 5, 3)),
        _oblique(-0.1, (0.8, 1, 1.2), (-8, 4, 1)),
    )
    moved = resample_onto(data, source, (17, 19, 15), target, order=order, cval=3.0)
    expected = resample_from_to(
        nib.Nifti1Image(data, source), ((17, 19, 15), target), order=order, cval=3.0
    )
    assert moved.dtype == dtype and np.array_equal(moved, np.asanyarray(expected.dataobj))


def test_a_one_voxel_shift_moves_the_data_and_fills_outside():
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    shifted = np.eye(4)
    shifted[0, 3] = 1.0  # the target grid starts one voxel further along x
    moved = resample_onto(data, np.eye(4), data.shape, shifted, order=1, cval=-1.0)
    assert np.array_equal(moved[:-1], data[1:]) and (moved[-1] == -1.0).all()
