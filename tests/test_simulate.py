"""The generative head model: physics, degradations, deformation, determinism, training pairs."""

from __future__ import annotations

import math
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bids_synth.metrics import skull_thickness_mm
from bids_synth.refdata import reference_dir
from bids_synth.simulate import (
    CT_SCALE_HU,
    ScannerStyle,
    Tissue,
    TrainingPairs,
    acquire,
    draw_anatomy,
    mr_scale,
    mu_map,
    simulate_subject,
)
from bids_synth.simulate.atlases import (
    TABLE_MM,
    _individual_skull,
    _place_air,
    _split_bone,
    load_colin27,
    load_ct_head,
    neuromorphometrics_tissue,
)
from bids_synth.simulate.deformation import (
    SpatialTransform,
    integrate_velocity,
    jacobian_determinant,
)
from bids_synth.simulate.degrade import (
    apply_psf,
    rician_noise,
    sample_acquisition,
)
from bids_synth.simulate.filters import FWHM_PER_SIGMA
from bids_synth.simulate.mri import CONTRASTS_MR, FIELD_STRENGTHS, draw_sequence, tissue_properties
from bids_synth.simulate.scanner import Acquisition
from bids_synth.simulate.tissues import N_TISSUES

ALL = (*CONTRASTS_MR, "CT")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small volumes: thread synchronisation costs more than it saves, above all on busy CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def draw():
    """One noise-free draw of every contrast at 3 mm (shared: drawing is the slow part)."""
    return simulate_subject(11, spacing=3.0, contrasts=ALL, site=2, noise=0.0)


def _pure_mean(draw, image: torch.Tensor, *tissues: Tissue, purity: float = 0.99) -> float:
    """Mean of ``image`` over voxels made (almost) only of ``tissues``."""
    pure = draw.fractions[list(tissues)].sum(dim=0) > purity
    assert pure.sum() > 5, f"no pure {[t.name for t in tissues]} voxels"
    return float(image[pure].mean())


@pytest.mark.parametrize("field", FIELD_STRENGTHS)
def test_sequence_contrast_ordering(field):
    props = tissue_properties(field)
    rng = np.random.default_rng(0)
    for _ in range(20):
        t1 = draw_sequence("T1w", field, rng).signal(props)
        t2 = draw_sequence("T2w", field, rng).signal(props)
        flair = draw_sequence("FLAIR", field, rng).signal(props)
        assert t1[Tissue.WM] > t1[Tissue.GM] > t1[Tissue.CSF]
        assert t2[Tissue.CSF] > t2[Tissue.GM] > t2[Tissue.WM]
        assert flair[Tissue.CSF] < 0.2 * min(flair[Tissue.GM], flair[Tissue.WM])
        assert flair[Tissue.LESION] > flair[Tissue.WM]


def test_image_contrast_ordering(draw):
    t1, t2, flair = (draw.clean[c] for c in ("T1w", "T2w", "FLAIR"))
    mean = lambda image, tissue: _pure_mean(draw, image, tissue)  # noqa: E731
    assert mean(t1, Tissue.WM) > mean(t1, Tissue.GM) > mean(t1, Tissue.CSF)
    assert mean(t2, Tissue.CSF) > mean(t2, Tissue.GM) > mean(t2, Tissue.WM)
    assert mean(flair, Tissue.CSF) < 0.2 * mean(flair, Tissue.WM)
    ct = draw.clean["CT"]
    bone = _pure_mean(draw, ct, Tissue.CORTICAL_BONE, Tissue.MARROW, purity=0.9)
    assert bone > mean(ct, Tissue.MUSCLE) > mean(ct, Tissue.FAT) > mean(ct, Tissue.BACKGROUND)


def test_ct_hu_ranges(draw):
    ct = draw.clean["CT"]
    expected = {
        Tissue.BACKGROUND: (-1001, -999),
        Tissue.FAT: (-150, -30),
        Tissue.CSF: (-10, 25),
        Tissue.WM: (15, 40),
        Tissue.GM: (28, 52),
        Tissue.MUSCLE: (25, 70),
    }
    for tissue, (low, high) in expected.items():
        assert low <= _pure_mean(draw, ct, tissue) <= high, tissue.name
    tissue_hu = draw.params["contrasts"]["CT"]["tissue_hu"]
    assert 700 <= tissue_hu["CORTICAL_BONE"] <= 2000
    assert 200 <= tissue_hu["MARROW"] <= 900
    assert 300 < _pure_mean(draw, ct, Tissue.CORTICAL_BONE, Tissue.MARROW, purity=0.9) < 2000
    assert ct.min() >= -1024 and ct.max() <= 3071


def test_mu_map_bilinear_carney():
    hu = torch.tensor([-1000.0, 0.0, 1000.0])
    mu = mu_map(hu, kvp=120)
    assert mu[0] == 0
    assert mu[1] == pytest.approx(0.096, rel=1e-4)
    assert mu[2] == pytest.approx(5.10e-5 * 2000 + 4.71e-2, rel=1e-4)
    with pytest.raises(ValueError):
        mu_map(hu, kvp=90)


def rayleigh_sigma(background: torch.Tensor) -> float:
    """σ estimated from pure-noise magnitude voxels: ``√(mean(M²)/2)``."""
    return math.sqrt(float(background.double().square().mean()) / 2)


def test_rician_noise_sigma_in_uniform_region():
    generator = torch.Generator().manual_seed(0)
    image = rician_noise(torch.ones(64, 64, 64), 0.05, generator)
    assert float(image.std()) == pytest.approx(0.05, rel=0.10)
    background = rician_noise(torch.zeros(64, 64, 64), 0.05, generator)
    assert rayleigh_sigma(background) == pytest.approx(0.05, rel=0.10)


@pytest.mark.parametrize("noise", [0.02, 0.06])
def test_draw_noise_matches_request(noise):
    draw = simulate_subject(3, spacing=4.0, contrasts=("T1w",), noise=noise, resolution=4.0)
    image, _ = draw.acquired["T1w"]
    far = F.max_pool3d(draw.head_mask[None, None].float(), 5, stride=1, padding=2)[0, 0] == 0
    params = draw.params["contrasts"]["T1w"]
    assert params["noise_sigma"] == pytest.approx(noise * params["reference_intensity"])
    assert rayleigh_sigma(image[far]) == pytest.approx(params["noise_sigma"], rel=0.10)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("profile", ["gaussian", "rect"])
def test_slice_psf_width(axis, profile):
    spacing, thickness = 0.5, 4.0
    shape = [9, 9, 9]
    shape[axis] = 121
    delta = torch.zeros(shape)
    index = [4, 4, 4]
    index[axis] = 60
    delta[tuple(index)] = 1
    acquisition = Acquisition((spacing,) * 3, axis, thickness, 0.0, profile)
    profile_line = apply_psf(delta, (spacing,) * 3, acquisition)
    line = profile_line[tuple(slice(None) if a == axis else 4 for a in range(3))]
    assert float(line.sum()) == pytest.approx(1.0, rel=1e-5)
    x = (torch.arange(121) - 60) * spacing
    if profile == "gaussian":
        fwhm = FWHM_PER_SIGMA * float((line * x**2).sum()).__pow__(0.5)
        assert fwhm == pytest.approx(thickness, rel=0.05)
    else:
        assert float(line.sum() / line.max()) * spacing == pytest.approx(thickness, rel=0.05)


def test_thick_slice_sampling_grid():
    image = torch.rand(40, 40, 40)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    acquisition = Acquisition.from_resolution((1.0, 1.0, 5.0))
    assert acquisition.slice_axis == 2 and acquisition.slice_thickness_mm == 5.0
    acquired, new_affine = sample_acquisition(image, affine, acquisition)
    assert tuple(acquired.shape) == (40, 40, 8)
    assert np.allclose(np.diag(new_affine)[:3], [1, 1, 5])
    centre = lambda a, s: a[:3, :3] @ ((np.asarray(s) - 1) / 2) + a[:3, 3]  # noqa: E731
    assert np.allclose(centre(new_affine, acquired.shape), centre(affine, image.shape))


@pytest.mark.parametrize("deform_mm", [2.0, 6.0])
def test_deformation_is_invertible(deform_mm):
    transform = SpatialTransform.draw(
        np.random.default_rng(1),
        torch.Generator().manual_seed(1),
        extent_mm=(160, 190, 170),
        deform_mm=deform_mm,
    )
    jacobian = jacobian_determinant(transform.displacement, (4.0, 4.0, 4.0))
    assert float(transform.displacement.abs().max()) > 1.0  # it really deforms
    assert float(jacobian.min()) > 0
    assert np.linalg.det(transform.matrix) > 0


def test_zero_velocity_gives_identity():
    displacement = integrate_velocity(torch.zeros(3, 8, 9, 10), (2.0, 2.0, 2.0))
    assert float(displacement.abs().max()) == 0


def test_fractions_are_partial_volume_maps(draw):
    total = draw.fractions.sum(dim=0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    assert float(draw.fractions.min()) >= 0
    mixed = ((draw.fractions > 0.05) & (draw.fractions < 0.95)).any(dim=0)
    assert 0.05 < float(mixed.float().mean()) < 0.6
    present = set(torch.unique(draw.labels).tolist())
    assert {
        Tissue.SKIN,
        Tissue.FAT,
        Tissue.CORTICAL_BONE,
        Tissue.CSF,
        Tissue.VENTRICLE,
        Tissue.GM,
        Tissue.WM,
        Tissue.DEEP_GM,
    } <= present


def test_draw_surface(draw):
    assert draw.affine.shape == (4, 4) and draw.affine.dtype == np.float64
    assert draw.labels.shape == draw.head_mask.shape == draw.fractions.shape[1:]
    assert draw.head_mask.dtype == torch.bool
    for contrast in ALL:
        assert draw.clean[contrast].dtype == torch.float32
        assert draw.images[contrast].shape == draw.labels.shape
    assert draw.mumap is not None and float(draw.mumap.max()) > 0.12
    assert draw.params["deformation"]["min_jacobian"] > 0
    import json

    json.dumps(draw.params)


def test_determinism_and_traveling_subject():
    first = simulate_subject(5, spacing=6.0, contrasts=("T1w", "CT"), site=1)
    again = simulate_subject(5, spacing=6.0, contrasts=("T1w", "CT"), site=1)
    other_site = simulate_subject(5, spacing=6.0, contrasts=("T1w", "CT"), site=2)
    other_seed = simulate_subject(6, spacing=6.0, contrasts=("T1w", "CT"), site=1)
    for contrast in ("T1w", "CT"):
        assert torch.equal(first.images[contrast], again.images[contrast])
    assert first.params == again.params
    assert torch.equal(first.labels, other_site.labels)  # same anatomy at another site
    assert not torch.equal(first.images["T1w"], other_site.images["T1w"])
    assert not torch.equal(first.labels, other_seed.labels)


def test_site_style_is_fixed_by_site():
    assert ScannerStyle.for_site(3).to_json() == ScannerStyle.for_site(3).to_json()
    assert ScannerStyle.for_site(3).to_json() != ScannerStyle.for_site(4).to_json()


def test_noise_is_a_fraction():
    anatomy = draw_anatomy(0, spacing=6.0)
    with pytest.raises(ValueError, match="fraction"):
        acquire(anatomy, ScannerStyle.for_site(1), contrasts=("T1w",), noise=3.0)
    with pytest.raises(ValueError, match="contrast"):
        acquire(anatomy, ScannerStyle.for_site(1), contrasts=("T3w",))


def test_training_pairs_sct():
    pairs = TrainingPairs(
        ("T1w",), "CT", patch=(16, 16, 16), batch_size=2, seed=0, spacing=6.0, patches_per_draw=2
    )
    batch = next(iter(pairs))
    assert batch["source"].shape == (2, 1, 16, 16, 16) and batch["source"].dtype == torch.float32
    assert batch["target"].shape == batch["mask"].shape == (2, 1, 16, 16, 16)
    assert batch["mask"].dtype == torch.bool
    assert (
        -1.1 <= float(batch["target"].min()) and float(batch["target"].max()) <= 3071 / CT_SCALE_HU
    )
    assert 0.5 < float(batch["source"][batch["mask"]].quantile(0.99)) < 1.5
    repeat = next(
        iter(
            TrainingPairs(
                ("T1w",),
                "CT",
                patch=(16, 16, 16),
                batch_size=2,
                seed=0,
                spacing=6.0,
                patches_per_draw=2,
            )
        )
    )
    assert torch.equal(batch["source"], repeat["source"])


def test_training_pairs_rejects_bad_configuration():
    with pytest.raises(ValueError, match="patch"):
        TrainingPairs(patch=(64, 64, 64), spacing=6.0)
    with pytest.raises(ValueError, match="label sources"):
        TrainingPairs(label_sources=("brainweb",))
    with pytest.raises(ValueError, match="target"):
        TrainingPairs(target="T3w")


def test_training_pairs_denoising_target():
    pairs = TrainingPairs(
        ("T2w",), "clean", patch=(16, 16, 16), batch_size=1, spacing=6.0, noise=(0.05, 0.05)
    )
    batch = next(iter(pairs))
    residual = (batch["source"] - batch["target"])[batch["mask"]]
    assert 0.01 < float(residual.std()) < 0.2  # noisy input, noise-free target on the same scale
    raw = next(
        iter(
            TrainingPairs(
                ("T2w",), "T1w", patch=(16, 16, 16), batch_size=1, spacing=6.0, normalise=False
            )
        )
    )
    assert float(raw["source"].max()) > 5  # physical (scanner) units


def test_denoising_sources_are_alternatives():
    pairs = TrainingPairs(("T1w", "T2w"), "clean", patch=(16, 16, 16), batch_size=1, spacing=6.0)
    assert [pairs.sources(i) for i in range(3)] == [("T1w",), ("T2w",), ("T1w",)]
    assert pairs.volumes(1)["source"].shape[0] == 1  # one channel, the draw's own contrast
    assert TrainingPairs(("T1w", "T2w"), "CT", spacing=6.0, patch=(16,) * 3).sources(1) == (
        "T1w",
        "T2w",
    )


def test_simulated_pool_is_drawn_once_and_deterministic():
    from bids_synth.nn.data import SimulatedPool

    def pool():
        return SimulatedPool(
            source=("T1w",),
            target="CT",
            subjects=2,
            validation_subjects=1,
            patch=(16, 16, 16),
            batch_size=2,
            seed=3,
            spacing=6.0,
        )

    first, second = pool(), pool()
    batches = list(first.epoch_batches(0, 3))
    assert all(
        torch.equal(a["source"], b["source"]) for a, b in zip(batches, second.epoch_batches(0, 3))
    )
    assert not torch.equal(batches[0]["source"], next(first.epoch_batches(1, 1))["source"])
    held_out = first.validation_batches(2)
    assert held_out[0]["target"].shape == (2, 1, 16, 16, 16)
    assert len(first._pools[0].sources) == 2 and len(first._pools[1].sources) == 1


def test_mr_scale_is_the_head_percentile():
    image = torch.arange(1000, dtype=torch.float32).reshape(10, 10, 10)
    mask = torch.ones_like(image, dtype=torch.bool)
    assert float(mr_scale(image, mask)) == pytest.approx(994, abs=1)


def test_core_imports_only_torch_and_numpy():
    code = (
        "import sys, bids_synth.simulate; "
        "sys.exit(sorted({'scipy', 'nibabel', 'bids', 'nipype'} & set(sys.modules)) != [])"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_neuromorphometrics_names():
    assert neuromorphometrics_tissue("Left Lateral Ventricle") == Tissue.VENTRICLE
    assert neuromorphometrics_tissue("Right Inf Lat Vent") == Tissue.VENTRICLE
    assert neuromorphometrics_tissue("CSF") == Tissue.CSF
    assert neuromorphometrics_tissue("Right Cerebral White Matter") == Tissue.WM
    assert neuromorphometrics_tissue("Left Putamen") == Tissue.DEEP_GM
    assert neuromorphometrics_tissue("Right PrG precentral gyrus") == Tissue.GM


def test_a_population_bone_prior_becomes_one_skull_and_the_rest_fills_in():
    prior = np.linspace(0, 1, 11, dtype=np.float32)  # a faint, wide skull profile
    soft, air = 0.75 * (1 - prior), 0.25 * (1 - prior)
    skull, (soft, air) = _individual_skull(prior, (soft, air))
    assert np.all(skull[prior <= 0.25] == 0) and np.all(skull[prior >= 0.75] == 1)
    np.testing.assert_allclose(skull + soft + air, 1, atol=1e-6)
    np.testing.assert_allclose(soft, 3 * air, atol=1e-6)  # in proportion


def test_a_haze_of_air_deep_in_the_head_becomes_sinuses_of_its_volume():
    grid = np.indices((40, 40, 40)).astype(np.float32)
    radius = np.sqrt(((grid - 19.5) ** 2).sum(axis=0))
    head = radius < 18
    haze = 0.4 * np.exp(-((radius / 6) ** 2))  # a faint blob deep in the head
    air = np.where(head, haze, 1.0).astype(np.float32)
    f = np.zeros((N_TISSUES, *air.shape), dtype=np.float32)
    f[Tissue.MUSCLE] = 1 - air
    _place_air(f, air, head, np.eye(4))
    sinus = f[Tissue.SINUS]
    assert abs(sinus.sum() - haze.sum()) < 0.05 * haze.sum()  # the same volume of air
    assert (sinus > 0.9).sum() > 0.5 * sinus.sum()  # now mostly whole voxels of it
    assert sinus[~head].max() == 0 and np.all(f[Tissue.BACKGROUND][~head] == 1)
    np.testing.assert_allclose(f.sum(axis=0), 1, atol=1e-6)


def test_the_skull_has_cortical_tables_around_marrow():
    bone = np.zeros((1, 1, 12), dtype=np.float32)
    bone[..., 1:11] = 1  # a 10 mm skull
    f = np.zeros((N_TISSUES, *bone.shape), dtype=np.float32)
    _split_bone(f, bone, np.eye(4))
    cortical, marrow = f[Tissue.CORTICAL_BONE, 0, 0], f[Tissue.MARROW, 0, 0]
    np.testing.assert_allclose(cortical + marrow, bone[0, 0])
    assert cortical[1] == 1 and cortical[10] == 1  # the tables
    assert marrow[5] == 1 and marrow[6] == 1  # the diploë
    assert cortical.sum() == 2 * TABLE_MM


@pytest.mark.skipif(
    not (reference_dir() / "spm" / "TPM.nii.gz").exists(),
    reason="reference data (BIDS_SYNTH_REFDATA) not available",
)
@pytest.mark.parametrize("source", ["tpm", "mni2009a", "neuromorphometrics"])
def test_file_label_sources(source):
    draw = simulate_subject(0, label_source=source, spacing=5.0, contrasts=("T1w",), noise=0.0)
    total = draw.fractions.sum(dim=0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    t1 = draw.clean["T1w"]
    assert _pure_mean(draw, t1, Tissue.WM, purity=0.8) > _pure_mean(draw, t1, Tissue.GM, purity=0.6)
    assert float(draw.head_mask.float().mean()) > 0.2


@pytest.mark.skipif(
    not (reference_dir() / "ch2.nii.gz").exists(),
    reason="reference data (BIDS_SYNTH_REFDATA) not available",
)
def test_the_colin27_skull_is_as_thick_as_a_real_heads():
    """Inner table and diploë included: the real head CT's calvarium measures 8.0 mm (7.0–9.0)
    by the same rays; the outer table alone, dark in the T1w, measured 3.0 mm."""
    volume = load_colin27()
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")  # the rays' voxel order
    bone = volume.fractions[Tissue.CORTICAL_BONE] + volume.fractions[Tissue.MARROW] > 0.5
    head = volume.fractions[Tissue.BACKGROUND] < 0.5
    thickness = skull_thickness_mm(bone, head, np.abs(np.diag(volume.affine)[:3]))
    assert 6.0 <= thickness["median"] <= 10.0
    assert volume.fractions[Tissue.MARROW][bone].mean() > 0.2  # the diploë


@pytest.mark.skipif(
    not (reference_dir() / "ch2.nii.gz").exists(),
    reason="reference data (BIDS_SYNTH_REFDATA) not available",
)
def test_the_colin27_head_has_a_real_heads_share_of_fat():
    """Fat is what is bright in the T1w, nothing more: the real head CT has 9.1 % of its head in
    −190…−30 HU (and 6 % in −30…0, partial volumes); labelling a subcutaneous layer as fat as
    well, as for sources without intensities, had given 22 %."""
    volume = load_colin27()
    head = volume.fractions[Tissue.BACKGROUND] < 0.5
    assert 0.06 <= volume.fractions[Tissue.FAT][head].mean() <= 0.15


@pytest.mark.slow
@pytest.mark.skipif(
    not (reference_dir() / "ct_head_invesalius0051.nii.gz").exists(),
    reason="reference data (BIDS_SYNTH_REFDATA) not available",
)
def test_the_ct_head_keeps_the_real_skull_and_fills_its_cavity_with_a_brain():
    """The real head CT measures 8.0 mm (7.0–9.0) over the vertex and has 18.3 % of its head in
    bone (≥ 300 HU); the fitted MNI brain fills its cranial cavity."""
    volume = load_ct_head()
    f = volume.fractions
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert np.allclose(f.sum(axis=0), 1, atol=1e-4)
    head = f[Tissue.BACKGROUND] < 0.5
    bone = f[Tissue.CORTICAL_BONE] + f[Tissue.MARROW]
    assert 7.0 <= skull_thickness_mm(bone > 0.5, head, np.ones(3))["median"] <= 9.0
    assert 0.15 <= bone[head].mean() <= 0.21
    assert f[Tissue.SINUS][head].mean() > 0.01  # sinuses and mastoid air
    cavity = f[[Tissue.CSF, Tissue.VENTRICLE, Tissue.GM, Tissue.WM]].sum(axis=0)
    assert 1.2e6 <= cavity.sum() <= 1.7e6  # mm³: an adult's intracranial volume
    assert f[[Tissue.GM, Tissue.WM]].sum() / cavity.sum() > 0.75


def _shells(stretch_sd: float, seed: int, monkeypatch=None, scale=None) -> np.ndarray:
    """Bone fraction along a ray from the centre of concentric shells (brain to 30 mm, bone to 36
    mm, scalp to 42 mm; 1 mm grid, x axis flipped) through a :class:`VolumeSource`."""
    from bids_synth.simulate import label_sources
    from bids_synth.simulate.atlases import LabelVolume
    from bids_synth.simulate.tissues import Tissue

    if scale is not None:
        monkeypatch.setattr(label_sources, "shell_scale", lambda points, rng, sd: scale)
    n = 110
    radius = np.linalg.norm(np.indices((n, n, n)) - (n - 1) / 2, axis=0)
    f = np.zeros((N_TISSUES, n, n, n), np.float32)
    f[Tissue.WM], f[Tissue.CORTICAL_BONE] = radius < 30, (radius >= 30) & (radius < 36)
    f[Tissue.SKIN], f[Tissue.BACKGROUND] = (radius >= 36) & (radius < 42), radius >= 42
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [(n - 1) / 2, -(n - 1) / 2, -(n - 1) / 2]  # centre at the origin
    source = label_sources.VolumeSource("shells", LabelVolume(f, affine, (0.0, 0.0, 0.0)), "cpu")
    ray = torch.zeros(121, 3)
    ray[:, 0] = torch.linspace(0, 60, 121)
    ray[:, 1] = ray[:, 0] * 0.5  # oblique
    fractions = source.fractions(ray, voxel_mm=1.0, seed=seed, shell_stretch_sd=stretch_sd)
    return fractions[Tissue.CORTICAL_BONE].numpy()


def test_a_shell_stretch_thickens_the_skull_and_scalp_by_its_factor(monkeypatch):
    depth = np.linspace(0, 60, 121) * np.sqrt(1.25)  # mm from the centre along the ray
    bone = depth[_shells(0.0, 1) > 0.5]
    assert 29.5 <= bone.min() <= 31 and 35 <= bone.max() <= 36.5  # unstretched (1 mm voxels)
    stretched = depth[_shells(0.3, 1, monkeypatch, scale=torch.full((121,), 1.5)) > 0.5]
    assert 29.5 <= stretched.min() <= 31 and 38 <= stretched.max() <= 39.5  # 6 mm × 1.5


def test_fat_compartments_turn_about_their_share_of_the_muscle_into_fat():
    from bids_synth.simulate.anatomy import with_fat_compartments
    from bids_synth.simulate.tissues import Tissue

    f = torch.zeros(N_TISSUES, 60, 60, 60)
    f[Tissue.MUSCLE, :, :, :30] = 1.0
    f[Tissue.FAT, :, :, 30:40] = 1.0
    f[Tissue.BACKGROUND, :, :, 40:] = 1.0
    spacing = (2.0, 2.0, 2.0)

    def draw(share, seed):
        return with_fat_compartments(f, spacing, share, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(0.3, 1), draw(0.3, 1)) and not torch.equal(draw(0.3, 1), draw(0.3, 2))
    for share in (0.1, 0.4):
        turned = draw(share, 3)
        assert torch.allclose(turned.sum(dim=0), f.sum(dim=0))  # fractions still sum to 1
        assert torch.equal(turned[Tissue.BACKGROUND], f[Tissue.BACKGROUND])
        moved = 1 - turned[Tissue.MUSCLE, :, :, :30].mean()
        assert abs(float(moved) - share) < 0.15  # one smooth field: its share is near the quantile
        assert torch.equal(turned[Tissue.FAT, :, :, 30:40], f[Tissue.FAT, :, :, 30:40])
    with pytest.raises(ValueError, match="muscle_fat_share"):
        draw_anatomy(1, shape=(8, 8, 8), spacing=4.0, muscle_fat_share=1.5)


def test_the_shell_stretch_is_a_smooth_bounded_field_of_the_seed():
    from bids_synth.simulate.seeding import numpy_rng
    from bids_synth.simulate.shell import SHELL_SCALE_LIMITS, shell_scale

    points = torch.stack(torch.meshgrid(*[torch.arange(-90.0, 91.0, 5.0)] * 3, indexing="ij"), -1)
    scales = [shell_scale(points, numpy_rng(seed, "shell"), 0.3) for seed in (1, 1, 2)]
    assert torch.equal(scales[0], scales[1]) and not torch.equal(scales[0], scales[2])
    low, high = SHELL_SCALE_LIMITS
    assert low - 1e-6 <= float(scales[0].min()) and float(scales[0].max()) <= high + 1e-6
    assert 0.15 < float(scales[0].log().std()) < 0.45  # about the requested spread
    step = (scales[0][1:] / scales[0][:-1]).log().abs().max()  # 5 mm apart
    assert float(step) < 0.15  # smooth: correlated over tens of mm
    assert not np.array_equal(_shells(0.3, 1), _shells(0.3, 2))  # the seed's own skull
