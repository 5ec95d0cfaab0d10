"""Preprocessing interfaces on small head-like volumes: N4, masks and registration."""

import ants
import nibabel as nib
import numpy as np
import pytest
from helpers import affine, brainmask_bundle, contrast, phantom_labels, save

from bids_synth.errors import InvalidImageError
from bids_synth.interfaces.ants import BrainMask, HeadMask, N4BiasCorrection
from bids_synth.preproc.masks import brain_mask, head_mask, require_whole_head
from bids_synth.preproc.registration import register
from bids_synth.refdata import reference_dir

SPACING = 3.0


@pytest.fixture
def t1w(tmp_path):
    rng = np.random.default_rng(1)
    image = contrast(phantom_labels(), "T1w") + rng.normal(0, 10, phantom_labels().shape)
    return save(tmp_path / "t1w.nii.gz", np.abs(image), affine(SPACING))


def wm_variation(image: np.ndarray) -> float:
    wm = phantom_labels() == 5
    return float(image[wm].std() / image[wm].mean())


def test_n4_removes_a_known_multiplicative_bias(tmp_path, t1w, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clean = nib.load(t1w).get_fdata()
    x = np.linspace(-1, 1, clean.shape[0])[:, None, None]
    z = np.linspace(-1, 1, clean.shape[2])[None, None, :]
    biased = clean * np.exp(0.6 * x + 0.4 * z**2)
    biased_file = save(tmp_path / "biased.nii.gz", biased, affine(SPACING))
    mask = HeadMask(in_file=str(biased_file)).run().outputs.out_mask
    result = N4BiasCorrection(in_file=str(biased_file), mask_file=mask, shrink_factor=2).run()
    corrected = nib.load(result.outputs.out_file).get_fdata()
    assert wm_variation(biased) > 0.15
    assert wm_variation(corrected) < 0.35 * wm_variation(biased)
    assert wm_variation(corrected) < 1.5 * wm_variation(clean)


def test_masks_of_the_phantom(tmp_path, t1w, monkeypatch):
    monkeypatch.chdir(tmp_path)
    head = nib.load(HeadMask(in_file=str(t1w)).run().outputs.out_mask).get_fdata() > 0
    brain_file = BrainMask(in_file=str(t1w), head_mask=str(tmp_path / "head_mask.nii")).run()
    brain = nib.load(brain_file.outputs.out_mask).get_fdata() > 0
    labels = phantom_labels()
    assert dice(head, labels > 0) > 0.95  # skull and CSF filled in
    assert dice(brain, labels >= 3) > 0.9  # CSF, GM, WM, ventricles


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_a_learned_brain_mask_keeps_the_largest_filled_brain_inside_the_head(monkeypatch):
    """The network's brain share above ½, inside the head, its largest component, hole-filled."""
    from bids_synth.models import prediction
    from bids_synth.preproc.masks import learned_brain_mask

    share = np.zeros((20, 20, 20), np.float32)
    share[4:14, 4:14, 4:14] = 0.9  # the brain, with a hole (a ventricle read as not brain)
    share[8:10, 8:10, 8:10] = 0.2
    share[16:19, 16:19, 16:19] = 0.8  # a smaller blob elsewhere
    share[4:14, 4:14, 4] = 0.7  # brain share outside the head's edge is cut
    head = np.zeros(share.shape, bool)
    head[2:19, 2:19, 5:19] = True
    monkeypatch.setattr(prediction, "predict_on_grid", lambda *a, **k: (share, {"passes": 3}))
    mask, info = learned_brain_mask(share, np.eye(4), head, bundle=None)
    expected = np.zeros(share.shape, bool)
    expected[4:14, 4:14, 5:14] = True
    assert np.array_equal(mask, expected) and info == {"passes": 3}


def test_the_brain_mask_method_follows_the_evidence_and_the_model_runs_in_the_pipeline(
    tmp_path, t1w, monkeypatch
):
    """``auto`` keeps the morphology until the newest brainmask bundle has passed its real-scan
    check; ``model`` without a bundle is one clear error; the node runs the bundle and the
    sidecar names it."""
    from bids_synth.errors import ModelBundleError
    from bids_synth.models import install_bundle, registry
    from bids_synth.models.card import record_evaluation
    from bids_synth.workflows.base import _brain_mask_method
    from bids_synth.workflows.preproc import brain_mask_bundle

    monkeypatch.setenv("BIDS_SYNTH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "SHIPPED", tmp_path / "no-shipped-bundles")
    assert brain_mask_bundle("auto") is None and brain_mask_bundle("morphology") is None
    with pytest.raises(ModelBundleError, match="no brainmask model bundle: train one with"):
        brain_mask_bundle("model")
    installed = install_bundle(brainmask_bundle(tmp_path / "bundle").path)
    assert brain_mask_bundle("auto") is None and brain_mask_bundle("model").id == installed.id
    record_evaluation(installed.path, [], checks={"real_scans": {"passed": True}})
    bundle = brain_mask_bundle("auto")
    assert bundle.id == installed.id
    assert _brain_mask_method(bundle)["Model"]["Sha256"] == bundle.sha256
    assert _brain_mask_method(None) == {"Method": "morphology"}

    monkeypatch.chdir(tmp_path)
    head_file = HeadMask(in_file=str(t1w)).run().outputs.out_mask
    node = BrainMask(in_file=str(t1w), head_mask=head_file, method="model",
                     bundle=str(bundle.path), bundle_digest=bundle.digest)  # fmt: skip
    brain = nib.load(node.run().outputs.out_mask)
    head = nib.load(head_file).get_fdata() > 0
    assert brain.get_data_dtype() == np.uint8 and not (brain.get_fdata()[~head]).any()
    source = nib.load(t1w)  # on the T1w's own grid
    assert brain.shape == source.shape and np.allclose(brain.affine, source.affine)


@pytest.mark.skipif(
    not (reference_dir() / "ch2bet.nii.gz").exists(), reason="reference data (Colin27) not found"
)
def test_brain_mask_of_colin27_matches_its_brain_extraction():
    t1w = ants.resample_image(ants.image_read(str(reference_dir() / "ch2.nii.gz")), (2, 2, 2))
    reference = ants.resample_image_to_target(
        ants.image_read(str(reference_dir() / "ch2bet.nii.gz")), t1w, interp_type="nearestNeighbor"
    )
    mask = brain_mask(t1w, head_mask(t1w)).numpy() > 0
    assert dice(mask, reference.numpy() > 0) > 0.92


@pytest.mark.skipif(
    not (reference_dir() / "ch2.nii.gz").exists(), reason="reference data not available"
)
def test_head_mask_holds_the_whole_of_a_dim_t1w_head():
    """A FLASH-like simulated T1w (dim brain, bright fat, the head cut by the field of view): an
    Otsu threshold kept only 0.79 of it (Dice); the clip level keeps it whole."""
    from bids_synth.simulate import simulate_subject

    draw = simulate_subject(900002, label_source="colin27", spacing=2.0, contrasts=("T1w",))
    image = ants.from_numpy(draw.images["T1w"].numpy(), spacing=(2.0, 2.0, 2.0))
    mask = head_mask(image).numpy() > 0
    assert dice(mask, draw.head_mask.numpy().astype(bool)) > 0.94


def test_head_mask_keeps_a_head_cut_by_the_field_of_view():
    """Every real scan cuts the neck, some the vertex: the slices at the edge of the field of view
    stay in the mask (a closing eroded them: sct wrote air into the last 5 mm)."""
    image = contrast(phantom_labels(), "T1w")
    centre = image.shape[2] // 2
    cut = ants.from_numpy(np.ascontiguousarray(image[:, :, centre:]), spacing=(1.0, 1.0, 1.0))
    whole = head_mask(ants.from_numpy(image, spacing=(1.0, 1.0, 1.0))).numpy() > 0
    mask = head_mask(cut).numpy() > 0
    assert mask[:, :, 0].sum() >= 0.95 * whole[:, :, centre].sum()
    assert np.array_equal(mask[:, :, 6:], whole[:, :, centre + 6 :])


@pytest.mark.skipif(
    not (reference_dir() / "ch2bet.nii.gz").exists(), reason="reference data not available"
)
def test_a_skull_stripped_colin27_is_told_from_the_whole_head():
    for name, stripped in (("ch2.nii.gz", False), ("ch2bet.nii.gz", True)):
        t1w = ants.resample_image(ants.image_read(str(reference_dir() / name)), (2, 2, 2))
        head = head_mask(t1w)
        masks = head.numpy() > 0, brain_mask(t1w, head).numpy() > 0
        if stripped:
            with pytest.raises(InvalidImageError, match=r"sct needs a whole-head image.*1\.8 L"):
                require_whole_head(*masks, t1w.spacing, "sct")
        else:
            require_whole_head(*masks, t1w.spacing, "sct")


def rigid_transform(angles_deg, translation_mm):
    """ANTs affine transform rotating about the image centre (the physical origin here)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    transform = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, matrix=rz @ ry @ rx,
        translation=translation_mm, center=(0.0, 0.0, 0.0),
    )  # fmt: skip
    return transform


@pytest.mark.parametrize(("mode", "tolerance_mm"), [("rigid", 1.0), ("affine", SPACING)])
def test_registration_recovers_a_known_rotation_and_shift(tmp_path, t1w, mode, tolerance_mm):
    """Rigid: within 1 mm and 1°; affine (12 parameters fitted on 3 mm voxels): within a voxel."""
    fixed = ants.image_read(str(t1w))
    truth = rigid_transform((4.0, -3.0, 6.0), (3.0, -2.0, 4.0))
    moving = truth.apply_to_image(
        fixed, reference=fixed, interpolation="linear"
    )  # moving(p) = fixed(truth(p))
    matrix = tmp_path / "xfm.mat"
    register(fixed, moving, transform=mode, seed=1, workdir=str(tmp_path), out_matrix=str(matrix))
    estimate = ants.read_transform(str(matrix))  # fixed point -> moving point: the inverse of truth
    rng = np.random.default_rng(0)
    points = rng.uniform(-50, 50, (200, 3))
    round_trip = np.array([estimate.apply_to_point(truth.apply_to_point(p)) for p in points])
    assert np.abs(round_trip - points).max() < tolerance_mm
    origin = np.array(estimate.apply_to_point(truth.apply_to_point((0.0, 0.0, 0.0))))
    linear = np.array(
        [
            np.array(estimate.apply_to_point(truth.apply_to_point(tuple(e)))) - origin
            for e in np.eye(3)
        ]
    ).T
    angle = np.degrees(np.arccos(np.clip((np.trace(linear) - 1) / 2, -1, 1)))
    if mode == "rigid":
        assert angle < 1.0
