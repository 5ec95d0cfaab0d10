"""Denoising: the pure methods on a noisy phantom, method selection, and the app end to end."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from bids_synth.metrics import psnr
from bids_synth.synthesis import denoising


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def phantom(n: int = 32, sigma: float = 0.05, seed: int = 0):
    """Smooth ellipsoid head with inner structure, its Rician-noisy version and the head mask."""
    z, y, x = np.mgrid[:n, :n, :n] - n / 2
    r = np.sqrt(x**2 + (1.2 * y) ** 2 + z**2)
    clean = 0.6 * (r < 0.42 * n) + 0.3 * (r < 0.3 * n) + 0.2 * np.sin(x / 3) * (r < 0.3 * n)
    clean = gaussian_filter(clean, 1.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    noisy = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
    return clean, noisy.astype(np.float32), r < 0.44 * n


def test_noise_estimate_reads_the_added_level_and_drops_after_nlm():
    clean, noisy, mask = phantom()
    before = denoising.noise_sigma(noisy, mask)
    assert before == pytest.approx(0.05, rel=0.15)
    denoised = denoising.nlm_denoise(noisy, mask)
    assert denoising.noise_sigma(denoised, mask) < before / 2
    assert psnr(clean, denoised, mask) > psnr(clean, noisy, mask) + 3
    np.testing.assert_array_equal(denoised[~mask], noisy[~mask])  # outside the head: untouched


def test_self_supervised_denoising_improves_a_noisy_phantom_reproducibly():
    clean, noisy, mask = phantom()
    first, info = denoising.self_supervised_denoise(noisy, mask, steps=120, seed=3)
    assert psnr(clean, first, mask) > psnr(clean, noisy, mask) + 0.5  # 120 steps only
    assert info["device"] == "cpu" and info["steps"] == 120
    again, _ = denoising.self_supervised_denoise(noisy, mask, steps=120, seed=3)
    np.testing.assert_array_equal(first, again)


def _red_bundle(folder):
    from bids_synth.models.bundle import save_bundle
    from bids_synth.nn.factory import build_network

    torch.manual_seed(0)
    meta = {
        "id": "denoise-test", "version": "0.0.1", "task": "denoise",
        "architecture": {"name": "red", "kwargs": {"width": 4}},
        "input": {"suffixes": ["T1w"], "spacing_mm": [1.0, 1.0, 1.0], "orientation": "RAS",
                  "normalization": {"method": "percentile-scale", "percentile": 99.5}},
        "output": {"normalization": {"method": "input"}},
        "inference": {"patch": [16, 16, 16], "overlap": 0.5},
    }  # fmt: skip
    return save_bundle(folder, build_network("red", width=4), meta=meta)


def test_model_denoising_keeps_the_grid_and_the_outside_of_the_head(tmp_path):
    from bids_synth.errors import ModelBundleError

    _, noisy, mask = phantom(24)
    out, info = denoising.model_denoise(noisy, mask, _red_bundle(tmp_path / "b"), np.eye(4))
    with pytest.raises(ModelBundleError, match="only 2.5D bundles adapt"):
        denoising.model_denoise(noisy, mask, _red_bundle(tmp_path / "b"), np.eye(4), adapt_steps=5)
    assert out.shape == noisy.shape and info["device"] == "cpu"
    np.testing.assert_array_equal(out[~mask], noisy[~mask])


def test_an_oblique_fine_image_is_denoised_on_the_bundles_grid(tmp_path, monkeypatch):
    from bids_synth.nn import inference

    _, noisy, mask = phantom(30)
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])  # fmt: skip
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.8, 0.8, 0.8])  # oblique, left-right flipped, 0.8 mm
    seen = []
    original = inference.predict_volume
    monkeypatch.setattr(
        inference,
        "predict_volume",
        lambda net, volume, **kw: seen.append(volume.shape) or original(net, volume, **kw),
    )
    out, _ = denoising.model_denoise(noisy, mask, _red_bundle(tmp_path / "b"), affine)
    assert out.shape == noisy.shape  # back on the image's own grid
    box = np.ptp(np.argwhere(mask), axis=0) + 1 + 2 * 4  # head box and its margin, 0.8 mm voxels
    assert np.allclose(seen[0][1:], np.minimum(box, 30) * 0.8, atol=1.5)  # resampled to 1 mm
    np.testing.assert_array_equal(out[~mask], noisy[~mask])


def test_shipped_denoiser_cleans_a_held_out_head_of_any_contrast():
    from bids_synth.models.selection import find_task_bundle
    from bids_synth.simulate import simulate_subject

    bundle = find_task_bundle("denoise", "T1w", "T1w")
    for contrast, adapt_steps in (("T1w", None), ("T2w", 0)):  # the bundle's adaptation, none
        draw = simulate_subject(41, spacing=1.0, shape=(48, 56, 48), contrasts=(contrast,),
                                noise=0.05, resolution=1.0)  # fmt: skip
        noisy = draw.acquired[contrast][0].numpy()
        truth = draw.noise_free[contrast][0].numpy()
        head = draw.head_mask.numpy() > 0
        out, info = denoising.model_denoise(
            noisy, head, bundle, draw.acquired[contrast][1], adapt_steps=adapt_steps
        )
        assert psnr(truth, out, head) > psnr(truth, noisy, head) + 1.0, contrast
        assert ("adaptation" in info) == (adapt_steps is None), contrast


@pytest.mark.parametrize(
    ("options", "method"),
    [
        ({}, None),
        ({"method": "self"}, "self"),
        ({"method": "model", "model": "x"}, "model"),
        ({"method": "model", "adapt_steps": 0}, "model"),
    ],
)
def test_every_method_is_selectable_and_the_default_follows_the_evidence(
    monkeypatch, options, method
):
    from types import SimpleNamespace

    from bids_synth.workflows.synthesis import denoise

    bundle = SimpleNamespace(id="denoise-slab", version="0.1.0", sha256="0" * 64, path="/b",
                             digest="1" * 64,
                             verify=lambda: None)  # fmt: skip
    monkeypatch.setattr(denoise, "find_task_bundle", lambda *args: bundle)
    method = method or denoise.default_method()
    unit = SimpleNamespace(name="sub-01", t1w="/raw/t1.nii.gz", others={"FLAIR": "/raw/f.nii.gz"},
                           all_inputs={"T1w": "/raw/t1.nii.gz", "FLAIR": "/raw/f.nii.gz"})  # fmt: skip
    branch = denoise.TASK.build(unit=unit, options=options, omp_nthreads=1, seed=0, device="cpu",
                                name="denoise_wf")  # fmt: skip
    assert branch.inputs == {"head_mask": "head_mask", "t1w_preproc": "t1w_preproc",
                             "FLAIR_registered": "FLAIR_registered"}  # fmt: skip
    node = branch.workflow.get_node("denoise_flair")
    assert node.inputs.method == method
    flair = branch.outputs["flair"]
    assert flair["entities"] == {"space": "T1w", "desc": "denoised", "suffix": "FLAIR"}
    assert flair["metadata"]["Method"] == method
    assert ("Model" in flair["metadata"]) == (method == "model")
    assert node.inputs.get_traitsfree().get("adapt_steps") == options.get("adapt_steps")


def test_model_method_without_a_bundle_is_one_clear_error():
    from types import SimpleNamespace

    from bids_synth.errors import ModelBundleError
    from bids_synth.workflows.synthesis import denoise

    unit = SimpleNamespace(name="sub-01", t1w="t1", others={}, all_inputs={"T1w": "t1"})
    with pytest.raises(ModelBundleError, match="not found"):
        denoise.TASK.build(unit=unit, options={"method": "model", "model": "no-such-bundle"},
                           omp_nthreads=1, seed=0, device="cpu", name="denoise_wf")  # fmt: skip


def test_the_app_writes_denoised_and_super_resolved_images(tmp_path):
    """Both tasks in one small run (sharing the preprocessing): denoise every MR image, and
    super-resolve the thick-slice T2w (3 × 3 × 6 mm) while the isotropic T1w is skipped."""
    from helpers import save, write_bids

    from bids_synth.cli import main

    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w"]})
    t2w_path = bids / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    t2w_raw = nib.load(t2w_path)
    thick = np.asanyarray(t2w_raw.dataobj).reshape(44, 52, 22, 2).mean(axis=3)
    thick_affine = t2w_raw.affine @ np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0.5], [0, 0, 0, 1]]
    )
    save(t2w_path, thick, thick_affine)
    out = tmp_path / "out"
    args = [str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--nprocs", "2",
            "--omp-nthreads", "1", "--tasks", "denoise", "superres", "--denoise-method", "nlm",
            "--superres-method", "bspline"]  # fmt: skip
    assert main(args) == 0
    anat = out / "sub-01" / "anat"
    t1w = nib.load(anat / "sub-01_desc-denoised_T1w.nii.gz")
    t2w = nib.load(anat / "sub-01_space-T1w_desc-denoised_T2w.nii.gz")
    preproc = nib.load(anat / "sub-01_desc-preproc_T1w.nii.gz")
    assert t1w.shape == t2w.shape == preproc.shape
    np.testing.assert_allclose(t1w.affine, preproc.affine)
    sidecar = json.loads((anat / "sub-01_space-T1w_desc-denoised_T2w.json").read_text())
    assert sidecar["Method"] == "nlm" and "wavelet" in sidecar["NoiseEstimator"]
    assert {"NoiseSigmaBefore", "NoiseSigmaAfter", "RuntimeSeconds", "Device"} <= set(sidecar)
    sidecar = json.loads((anat / "sub-01_desc-denoised_T1w.json").read_text())
    assert sidecar["NoiseSigmaAfter"] < sidecar["NoiseSigmaBefore"]  # on the T1w's own grid

    iso = nib.load(anat / "sub-01_res-iso_desc-superres_T2w.nii.gz")
    assert iso.shape == (44, 52, 44)
    np.testing.assert_allclose(iso.header.get_zooms(), (3.0, 3.0, 3.0))
    np.testing.assert_allclose(iso.affine[:3, 3], t2w_raw.affine[:3, 3], atol=1e-4)
    assert not list(anat.glob("*desc-superres_T1w*"))  # isotropic: skipped
    sidecar = json.loads((anat / "sub-01_res-iso_desc-superres_T2w.json").read_text())
    assert (
        sidecar["ResolutionBefore"] == [3.0, 3.0, 6.0] and sidecar["ResolutionAfter"] == [3.0] * 3
    )
    assert sidecar["Method"] == "bspline" and sidecar["SliceAxis"] == 2
    descriptions = (out / "descriptions.tsv").read_text()
    assert "denoised" in descriptions and "superres" in descriptions
