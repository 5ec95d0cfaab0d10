"""Super-resolution: isotropic geometry, anisotropy detection, SMORE-like vs B-spline on a phantom."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve1d, gaussian_filter

from bids_synth.metrics import psnr
from bids_synth.synthesis import superresolution as sr


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _centres(shape, affine):
    """World coordinates of the first and last voxel centres along each axis."""
    corners = np.array([[0, 0, 0, 1], [*(np.array(shape) - 1), 1]], float)
    return (affine @ corners.T).T[:, :3]


@pytest.mark.parametrize("factor", [2.0, 2.5, 4.0])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_isotropic_grid_covers_the_same_field_of_view(axis, factor):
    zooms = np.array([1.0, 1.0, 1.0])
    zooms[axis] = factor
    affine = np.diag([*zooms, 1.0])
    affine[:3, :3] = affine[:3, :3][[1, 0, 2]]  # permuted axes: voxel axes need not be RAS
    affine[:3, 3] = [10.0, -20.0, 5.0]
    shape = (20, 24, 16)
    new_shape, new_affine, _, _ = sr.isotropic_grid(shape, affine)
    np.testing.assert_allclose(sr.voxel_sizes(new_affine), 1.0)
    fov = np.array(shape) * zooms
    np.testing.assert_allclose(np.array(new_shape), np.round(fov), atol=0)
    # the outer edges of the first and last voxels coincide with the input's
    old, new = _centres(shape, affine), _centres(new_shape, new_affine)
    half_old = affine[:3, :3] @ np.full(3, 0.5)
    half_new = new_affine[:3, :3] @ np.full(3, 0.5)
    np.testing.assert_allclose(new[0] - half_new, old[0] - half_old, atol=1e-9)
    if float(fov[axis]).is_integer():
        np.testing.assert_allclose(new[1] + half_new, old[1] + half_old, atol=1e-9)


def test_anisotropy_detection():
    assert sr.anisotropy([1.0, 1.0, 1.6]) > sr.ANISOTROPY_THRESHOLD
    assert sr.anisotropy([3.0, 0.9, 0.9]) > sr.ANISOTROPY_THRESHOLD
    assert sr.anisotropy([1.0, 1.2, 1.5]) <= sr.ANISOTROPY_THRESHOLD
    assert sr.anisotropy([2, 1, 1]) == 2.0


def test_bspline_reproduces_a_linear_ramp_on_the_isotropic_grid():
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    z = np.arange(10, dtype=float) * 3.0  # world z of the slice centres
    data = np.broadcast_to(z, (6, 6, 10)).astype(np.float32)
    out, new_affine = sr.bspline_isotropic(data, affine)
    assert out.shape == (6, 6, 30)
    world_z = new_affine[2, 2] * np.arange(30) + new_affine[2, 3]
    inside = (world_z > 6) & (world_z < 21)  # away from the clamped ends
    np.testing.assert_allclose(out[3, 3, inside], world_z[inside], atol=0.05)


def test_the_degradation_keeps_flat_images_and_is_the_identity_at_factor_one():
    flat = np.full((30, 12), 7.0)
    np.testing.assert_allclose(sr.degrade_axis0(flat, 2.5, 2.0, 0.7), 7.0, atol=1e-5)
    image = np.random.default_rng(0).random((20, 8))
    np.testing.assert_allclose(sr.degrade_axis0(image, 1.0, 1.0), image, atol=1e-5)


def thick_slice_phantom(n=48, factor=4):
    z, y, x = np.mgrid[:n, :n, :n] - n / 2
    r = np.sqrt(x**2 + (1.2 * y) ** 2 + z**2)
    texture = 0.25 * (np.sin(x / 2.0 + z / 2.5) > 0.3) * (r < 14)
    clean = gaussian_filter(0.6 * (r < 20) + 0.3 * (r < 14) + texture, 0.7).astype(np.float32)
    thick = clean.reshape(n, n // factor, factor, n).mean(axis=2)  # 4 mm slices along axis 1
    return clean, thick, np.diag([1.0, factor, 1.0, 1.0]), r < 21


def test_self_supervised_super_resolution_beats_bspline_on_a_thick_slice_phantom():
    clean, thick, affine, mask = thick_slice_phantom()
    bspline, bspline_affine = sr.bspline_isotropic(thick, affine)
    out, out_affine, info = sr.smore(thick, affine, steps=150, seed=0)
    np.testing.assert_allclose(out_affine, bspline_affine)
    assert out.shape == clean.shape and info["thick_axis"] == 1 and info["factor"] == 4
    assert info["slice_profile"] == sr.UNKNOWN_PROFILE  # nothing given: trained for both shapes
    assert psnr(clean, out, mask) > psnr(clean, bspline, mask) + 0.5


def test_a_small_image_gets_the_whole_step_budget(monkeypatch):
    """The budget is in steps, not passes over the image: a small image learns as long."""
    batch, calls = sr._patch_batch, []

    def counting(*args, **kwargs):
        calls.append(1)
        return batch(*args, **kwargs)

    monkeypatch.setattr(sr, "_patch_batch", counting)
    data = np.random.default_rng(0).random((24, 24, 8)).astype(np.float32)
    _, _, info = sr.smore(data, np.diag([1.0, 1.0, 3.0, 1.0]), steps=60, check_every=20, seed=0)
    assert len(calls) == 1 + 60 and 20 <= info["best_step"] <= 60 and info["amp"] == "bf16"


def test_an_unknown_profile_shape_trains_on_both_shapes(monkeypatch):
    used = []
    degrade = sr.degrade_axis0

    def recording(image, factor, thickness, phase, profile):
        used.append(profile)
        return degrade(image, factor, thickness, phase, profile)

    monkeypatch.setattr(sr, "degrade_axis0", recording)
    data = np.random.default_rng(0).random((16, 16, 8)).astype(np.float32)
    sr._training_pairs(data, 2, 4.0, 4.0, sr.SLICE_PROFILES, np.random.default_rng(1))
    assert len(used) == 32 and 8 <= used.count("box") <= 24  # about half each
    used.clear()
    sr._training_pairs(data, 2, 4.0, 4.0, ("box",), np.random.default_rng(1))
    assert set(used) == {"box"}


def test_self_handles_a_non_integer_factor_with_a_gap_along_axis_0():
    from scipy.ndimage import convolve1d, map_coordinates

    clean, _, _, mask = thick_slice_phantom()
    factor, thickness = 2.5, 1.75  # 2.5 mm spacing, 1.75 mm box slices: a 0.75 mm gap
    taps = np.arange(-1, 2, dtype=float)
    kernel = np.clip(thickness / 2 + 0.5 - np.abs(taps), 0, 1)
    blurred = convolve1d(clean, kernel / kernel.sum(), axis=0, mode="nearest")
    positions = np.arange((factor - 1) / 2, clean.shape[0] - factor / 2 + 0.5, factor)
    grid = np.meshgrid(positions, *(np.arange(n, dtype=float) for n in clean.shape[1:]),
                       indexing="ij")  # fmt: skip
    thick = map_coordinates(blurred, grid, order=1).astype(np.float32)
    affine = np.diag([factor, 1.0, 1.0, 1.0])
    affine[0, 3] = positions[0]
    bspline, bspline_affine = sr.bspline_isotropic(thick, affine)
    out, out_affine, info = sr.smore(thick, affine, thickness_mm=thickness, steps=150, seed=1)
    np.testing.assert_allclose(out_affine, bspline_affine)
    np.testing.assert_allclose(out_affine[:3, 3], 0, atol=1e-9)  # lands on the truth grid
    assert info["thick_axis"] == 0 and info["factor"] == 2.5 and info["gap_mm"] == 0.75
    n = min(out.shape[0], clean.shape[0])
    assert psnr(clean[:n], out[:n], mask[:n]) > psnr(clean[:n], bspline[:n], mask[:n])


def test_near_isotropic_images_are_skipped_with_a_log_line(tmp_path, caplog):
    from types import SimpleNamespace

    import nibabel as nib

    from bids_synth.workflows.synthesis import superres

    iso, thick = tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.diag([1, 1, 1.4, 1])), iso)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.diag([1, 1, 2.5, 1])), thick)
    (tmp_path / "t2.json").write_text('{"SliceThickness": 2.0}')
    unit = SimpleNamespace(name="sub-01", all_inputs={"T1w": str(iso)})
    build = dict(omp_nthreads=1, seed=0, device="cpu", name="superres_wf")
    with caplog.at_level(logging.INFO, logger="bids_synth"):
        assert superres.TASK.build(unit=unit, options={}, **build) is None
    assert "near isotropic" in caplog.text and "no anisotropic MR image" in caplog.text
    unit.all_inputs["T2w"] = str(thick)
    branch = superres.TASK.build(unit=unit, options={"method": "bspline"}, **build)
    assert branch.inputs == {"T2w_raw": "T2w_raw"}
    node = branch.workflow.get_node("superres_t2w")
    assert node.inputs.method == "bspline" and node.inputs.slice_thickness == 2.0
    assert branch.outputs["t2w"]["entities"] == {"res": "iso", "desc": "superres", "suffix": "T2w"}


def test_a_known_profile_shape_is_passed_to_self_and_named_in_the_sidecar(tmp_path):
    from types import SimpleNamespace

    import nibabel as nib

    from bids_synth.interfaces.superres import SuperResolution
    from bids_synth.workflows.synthesis import superres

    _, thick, affine, _ = thick_slice_phantom()
    path = tmp_path / "t2.nii.gz"
    nib.save(nib.Nifti1Image(thick, affine), path)
    unit = SimpleNamespace(name="sub-01", all_inputs={"T2w": str(path)})
    branch = superres.TASK.build(unit=unit, options={"slice_profile": "box"}, omp_nthreads=1,
                                 seed=0, device="cpu", name="superres_wf")  # fmt: skip
    assert branch.workflow.get_node("superres_t2w").inputs.slice_profile == "box"
    node = SuperResolution(in_file=str(path), method="self", slice_profile="gaussian", steps=20,
                           device="cpu", seed=0)  # fmt: skip
    result = node.run(cwd=str(tmp_path))
    metadata = result.outputs.metadata
    assert metadata["SliceProfile"] == "gaussian"
    assert metadata["SliceProfileSource"].endswith("shape given on the command line")


def _kernel_sd(thickness: float, profile: str) -> float:
    kernel = sr.slice_kernel(thickness, profile)
    taps = np.arange(len(kernel)) - len(kernel) // 2
    return float(np.sqrt((kernel * taps**2).sum()))


@pytest.mark.parametrize("profile", sr.SLICE_PROFILES)
@pytest.mark.parametrize("thickness", [4.0, 2.8])
def test_the_slice_profile_is_estimated_from_the_image(profile, thickness):
    """ESPRESO-like: with nothing known the estimated profile blurs as much as the true one (same
    second moment within 20 %); with the thickness known (sidecar) and no gap the shape is found
    (with a gap a 2.8 px Gaussian can pass for a box: not asserted)."""
    rng = np.random.default_rng(0)
    texture = gaussian_filter(rng.random((64, 64, 64)), 1.0)
    volume = gaussian_filter((texture > texture.mean()).astype(np.float32) + 0.5, 0.7)
    kernel = sr.slice_kernel(thickness, profile)
    blurred = convolve1d(volume, kernel, axis=2, mode="nearest")[:, :, 1::4]
    if thickness == 4.0:
        assert sr.estimate_slice_profile(blurred, 2, 4.0, thickness) == (profile, thickness)
    found, width = sr.estimate_slice_profile(blurred, 2, 4.0)
    assert abs(_kernel_sd(width, found) / _kernel_sd(thickness, profile) - 1) < 0.2
