"""``bids-synth evaluate`` on a tiny hand-made pair of BIDS folders (24³ phantoms)."""

import json
import logging
import math

import nibabel as nib
import numpy as np
import pytest

from bids_synth.cli import evaluate as evaluate_cli
from bids_synth.evaluation import evaluate_derivatives, write_evaluation

SHAPE = (24, 24, 24)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
HU_OFFSET = 50.0


def _phantom():
    zz, yy, xx = np.indices(SHAPE)
    radius = np.sqrt((xx - 11.5) ** 2 + (yy - 11.5) ** 2 + (zz - 11.5) ** 2)
    ct = np.select([radius < 4, radius < 7, radius < 9], [10.0, 40.0, 1000.0], -1000.0)
    t1w = np.select([radius < 3, radius < 5, radius < 9], [30.0, 80.0, 60.0], 0.0)
    return ct, t1w, radius


def _save(root, relpath, data, affine=AFFINE):
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), path)


def _description(root, derivative=False):
    root.mkdir(parents=True, exist_ok=True)
    description = {"Name": root.name, "BIDSVersion": "1.9.0"}
    if derivative:
        description |= {"DatasetType": "derivative", "GeneratedBy": [{"Name": "test"}]}
    (root / "dataset_description.json").write_text(json.dumps(description))


@pytest.fixture
def datasets(tmp_path):
    """sub-01 has a real CT and a clean T1w; sub-02 has a synthetic CT but no real one."""
    ct, t1w, radius = _phantom()
    noisy = t1w + np.random.default_rng(0).normal(0, 2.0, SHAPE)
    reference, derivatives = tmp_path / "raw", tmp_path / "derivatives"
    _description(reference)
    _description(reference / "derivatives" / "ground-truth", derivative=True)
    _description(derivatives, derivative=True)
    for subject in ("01", "02"):
        _save(reference, f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz", noisy)
        _save(
            derivatives,
            f"sub-{subject}/anat/sub-{subject}_space-T1w_desc-synthetic_CT.nii.gz",
            ct + HU_OFFSET,
        )
    _save(reference, "sub-01/anat/sub-01_CT.nii.gz", ct)
    _save(reference, "derivatives/ground-truth/sub-01/anat/sub-01_desc-clean_T1w.nii.gz", t1w)
    _save(derivatives, "sub-01/anat/sub-01_desc-head_mask.nii.gz", radius < 10)
    _save(derivatives, "sub-01/anat/sub-01_desc-brain_mask.nii.gz", radius < 9)
    _save(
        derivatives,
        "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz",
        t1w + np.random.default_rng(1).normal(0, 0.5, SHAPE),
    )
    return derivatives, reference


def test_synthetic_ct_is_paired_with_the_real_ct_and_scored(datasets, caplog):
    derivatives, reference = datasets
    with caplog.at_level(logging.INFO):
        rows = evaluate_derivatives(derivatives, reference, tasks=["sct"])
    assert [(row["subject"], row["task"]) for row in rows] == [("01", "sct")]
    row = rows[0]
    assert row["reference"] == "sub-01/anat/sub-01_CT.nii.gz"
    assert row["mask"] == "sub-01_desc-head_mask.nii.gz"
    assert row["reference_resampling"] == "none"
    assert row["mae"] == pytest.approx(HU_OFFSET)
    assert row["psnr"] == pytest.approx(20 * np.log10(4024 / HU_OFFSET))
    assert 0.9 < row["ssim"] < 1.0
    assert (  # the normal case: one line at INFO, no warning per participant
        "1 output(s) not scored, e.g. sub-02_space-T1w_desc-synthetic_CT.nii.gz (no reference CT "
        "of sub-02 in the reference dataset)" in caplog.text
    )
    assert not [record for record in caplog.records if record.levelname == "WARNING"]


def test_reference_on_another_grid_is_resampled_by_affine(datasets):
    derivatives, reference = datasets
    ct, _, _ = _phantom()
    shift = (2, -1, 1)  # the real CT on a grid shifted by whole voxels, same anatomy in world space
    affine = AFFINE.copy()
    affine[:3, 3] = shift
    moved = np.roll(ct, [-s for s in shift], axis=(0, 1, 2))
    _save(reference, "sub-01/anat/sub-01_CT.nii.gz", moved, affine)
    (row,) = evaluate_derivatives(derivatives, reference, tasks=["sct"])
    assert row["reference_resampling"] == "affine"
    assert row["mae"] == pytest.approx(HU_OFFSET)


def test_reference_is_resampled_through_a_transform_derivative(datasets):
    import ants

    derivatives, reference = datasets
    ct, _, _ = _phantom()
    # the real CT's head sits 2 mm higher (+z: S in both RAS and ANTs' LPS)
    misaligned = np.roll(ct, 2, axis=2)
    _save(reference, "sub-01/anat/sub-01_CT.nii.gz", misaligned)
    assert evaluate_derivatives(derivatives, reference, tasks=["sct"])[0]["mae"] > 5 * HU_OFFSET
    # ANTs transforms map T1w (fixed) points to CT (moving) points: p -> p + 2 mm along z.
    to_t1w = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, translation=(0, 0, 2)
    )
    ants.write_transform(
        to_t1w, str(derivatives / "sub-01/anat/sub-01_from-CT_to-T1w_mode-image_xfm.mat")
    )
    (row,) = evaluate_derivatives(derivatives, reference, tasks=["sct"])
    assert row["reference_resampling"] == "transform:sub-01_from-CT_to-T1w_mode-image_xfm.mat"
    assert row["mae"] == pytest.approx(HU_OFFSET, abs=0.01)


def test_denoised_image_is_scored_against_the_ground_truth(datasets):
    derivatives, reference = datasets
    (row,) = evaluate_derivatives(
        derivatives, reference, tasks=["denoise"], participant_labels=["sub-01"]
    )
    assert row["reference"] == "sub-01/anat/sub-01_desc-clean_T1w.nii.gz"
    assert row["psnr"] == pytest.approx(20 * np.log10(80 / 0.5), abs=0.5)
    assert row["noise_sigma_prediction"] > row["noise_sigma_reference"]  # residual noise vs none
    assert row["dice_mean"] > 0.9
    assert 0 < row["ssim"] < 1 and 0 < row["ms_ssim"] < 1


def test_translated_contrast_is_compared_after_scaling_out_its_units(datasets):
    derivatives, reference = datasets
    _, t1w, _ = _phantom()
    t2w = np.where(t1w > 0, 120.0 - t1w, 0.0)
    _save(reference, "sub-01/anat/sub-01_T2w.nii.gz", t2w)
    _save(derivatives, "sub-01/anat/sub-01_space-T1w_desc-synthetic_T2w.nii.gz", 3.0 * t2w)
    (row,) = evaluate_derivatives(derivatives, reference, tasks=["translate"])
    assert row["reference"] == "sub-01/anat/sub-01_T2w.nii.gz"
    assert row["psnr"] == math.inf and row["nrmse"] == 0.0 and row["dice_mean"] == 1.0


def test_super_resolved_image_prefers_the_ground_truth_of_its_resolution(datasets):
    derivatives, reference = datasets
    _, t1w, _ = _phantom()
    _save(
        reference,
        "derivatives/ground-truth/sub-01/anat/sub-01_res-iso_desc-clean_T1w.nii.gz",
        t1w + 1,
    )
    _save(derivatives, "sub-01/anat/sub-01_res-iso_desc-superres_T1w.nii.gz", t1w + 1.0)
    (row,) = evaluate_derivatives(derivatives, reference, tasks=["superres"])
    assert row["reference"] == "sub-01/anat/sub-01_res-iso_desc-clean_T1w.nii.gz"
    assert row["psnr"] == math.inf


def test_without_a_head_mask_the_reference_is_thresholded(datasets):
    derivatives, reference = datasets
    (derivatives / "sub-01/anat/sub-01_desc-head_mask.nii.gz").unlink()
    (row,) = evaluate_derivatives(derivatives, reference, tasks=["sct"])
    assert row["mask"] == "reference>-500"
    assert row["mae"] == pytest.approx(HU_OFFSET)


def test_unreadable_prediction_is_skipped_with_its_reason(datasets, caplog):
    derivatives, reference = datasets
    (derivatives / "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz").write_bytes(b"not a nifti")
    with caplog.at_level(logging.WARNING):
        assert evaluate_derivatives(derivatives, reference, tasks=["denoise"]) == []
    assert "sub-01_desc-denoised_T1w.nii.gz skipped: prediction" in caplog.text
    assert "unreadable NIfTI" in caplog.text


def test_participant_filter_leaves_out_other_subjects(datasets):
    derivatives, reference = datasets
    assert evaluate_derivatives(derivatives, reference, participant_labels=["02"]) == []


def test_tsv_and_summary(datasets, tmp_path):
    derivatives, reference = datasets
    rows = evaluate_derivatives(derivatives, reference, tasks=["sct", "denoise"])
    tsv, summary = write_evaluation(rows, tmp_path / "out")
    header, *lines = tsv.read_text().splitlines()
    columns = header.split("\t")
    assert columns[:4] == ["subject", "session", "task", "prediction"]
    assert len(lines) == 2 and all(len(line.split("\t")) == len(columns) for line in lines)
    assert "n/a" in lines[0].split("\t")  # the CT row has no MR-only columns; no session either
    stats = json.loads(summary.read_text())
    assert stats["sct"]["n"] == 1
    assert stats["sct"]["metrics"]["mae"] == {"mean": 50.0, "median": 50.0, "std": None, "n": 1}
    assert set(stats) == {"sct", "denoise"}


def test_cli_writes_into_the_derivatives_by_default(datasets, capsys):
    derivatives, reference = datasets
    assert evaluate_cli.main([str(derivatives), str(reference), "--tasks", "sct"]) == 0
    assert (derivatives / "evaluation" / "metrics.tsv").is_file()
    assert (derivatives / "evaluation" / "summary.json").is_file()


def test_cli_missing_derivatives_folder_exits_3_with_one_line(tmp_path, capsys):
    code = evaluate_cli.main([str(tmp_path / "nope"), str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert err.count("\n") == 0 and "does not exist" in err


def test_cli_nothing_to_pair_exits_4(datasets, capsys):
    derivatives, reference = datasets
    assert evaluate_cli.main([str(derivatives), str(reference), "--participant-label", "02"]) == 4
