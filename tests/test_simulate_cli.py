"""``bids-synth simulate``: the BIDS dataset and its ground truth."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from bids_synth.cli.simulate import main
from bids_synth.simulate.dataset import write_simulated_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small volumes: thread synchronisation costs more than it saves, above all on busy CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


OPTIONS = dict(
    n_subjects=2,
    sites=2,
    traveling_subjects=1,
    modalities=("T1w", "T2w", "CT"),
    resolution=6.0,
    noise=3.0,
    seed=0,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_simulated_dataset(tmp_path_factory.mktemp("sim") / "bids", **OPTIONS)


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_pybids_indexes_subjects_sessions_and_suffixes(dataset):
    from bids import BIDSLayout

    layout = BIDSLayout(dataset, validate=False)
    assert layout.get_subjects() == ["01", "02"]
    assert layout.get_sessions() == ["site1", "site2"]
    assert {"T1w", "T2w", "CT"} <= set(layout.get_suffixes())
    assert len(layout.get(subject="01", suffix="CT", extension=".nii.gz")) == 2
    assert len(layout.get(subject="02", suffix="T1w", extension=".nii.gz")) == 1


def test_raw_files_validate(dataset):
    from bids_validator import BIDSValidator

    validator = BIDSValidator()
    raw = [
        p
        for p in dataset.rglob("*")
        if p.is_file()
        and "derivatives" not in p.parts
        and "_CT." not in p.name
        and p.name not in ("README", ".bidsignore")
    ]
    assert raw
    for path in raw:
        relative = "/" + path.relative_to(dataset).as_posix()
        assert validator.is_bids(relative), relative
    assert "*_CT.nii.gz" in (dataset / ".bidsignore").read_text()


def test_participants_sessions_and_sidecars(dataset):
    rows = [line.split("\t") for line in (dataset / "participants.tsv").read_text().splitlines()]
    assert rows == [
        ["participant_id", "site", "traveling"],
        ["sub-01", "site1", "yes"],
        ["sub-02", "site1", "no"],
    ]
    sessions = (dataset / "sub-01" / "sub-01_sessions.tsv").read_text().split()
    assert sessions == ["session_id", "site", "ses-site1", "site1", "ses-site2", "site2"]
    t1 = json.loads((dataset / "sub-01/ses-site2/anat/sub-01_ses-site2_T1w.json").read_text())
    assert t1["MagneticFieldStrength"] in (1.5, 3.0) and 0 < t1["EchoTime"] < t1["RepetitionTime"]
    assert t1["InstitutionName"] == "site2"
    ct = json.loads((dataset / "sub-02/anat/sub-02_CT.json").read_text())
    assert ct["Modality"] == "CT" and ct["KVP"] in (100, 120, 140)
    assert nib.load(dataset / "sub-02/anat/sub-02_CT.nii.gz").get_data_dtype() == np.int16


def test_ground_truth_and_head_movement(dataset):
    truth = dataset / "derivatives" / "ground-truth"
    description = json.loads((truth / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert (truth / "dseg.tsv").read_text().startswith("index\tname")
    anat = truth / "sub-02" / "anat"
    labels = nib.load(anat / "sub-02_dseg.nii.gz")
    clean_t1 = nib.load(anat / "sub-02_desc-clean_T1w.nii.gz")
    assert labels.shape == clean_t1.shape and np.allclose(labels.affine, clean_t1.affine)
    assert {0, 9, 10} <= set(np.unique(np.asarray(labels.dataobj)).tolist())
    for name in ("desc-clean_CT", "desc-clean_mumap", "desc-head_mask", "desc-biasfield_T2w"):
        assert (anat / f"sub-02_{name}.nii.gz").exists(), name
    t2_truth = json.loads((anat / "sub-02_desc-clean_T2w.json").read_text())
    movement = np.array(t2_truth["HeadMovement"]["Matrix"])
    raw_t1 = nib.load(dataset / "sub-02/anat/sub-02_T1w.nii.gz").affine
    raw_t2 = nib.load(dataset / "sub-02/anat/sub-02_T2w.nii.gz").affine
    assert not np.allclose(movement, np.eye(4))
    assert 0 < t2_truth["HeadMovement"]["RotationAngleDegrees"] <= 4.0 * 3**0.5
    assert np.allclose(raw_t2, movement @ t2_truth["acquired_affine"], atol=1e-5)
    t1_truth = json.loads((anat / "sub-02_desc-clean_T1w.json").read_text())
    assert np.allclose(raw_t1, t1_truth["acquired_affine"], atol=1e-5)  # the T1w does not move
    assert t2_truth["noise_sigma"] == pytest.approx(0.03 * t2_truth["reference_intensity"])


def test_deterministic_bytes(dataset, tmp_path):
    again = write_simulated_dataset(tmp_path / "again", **OPTIONS)
    assert _digests(again) == _digests(dataset)


def _one_t2w_subject(folder, **options):
    return write_simulated_dataset(folder, n_subjects=1, modalities=("T2w",), noise=None, **options)


def test_thick_slices(tmp_path):
    out = _one_t2w_subject(
        tmp_path / "thick", sites=1, traveling_subjects=0, resolution=(6.0, 6.0, 12.0)
    )
    image = nib.load(out / "sub-01/anat/sub-01_T2w.nii.gz")
    assert np.allclose(image.header.get_zooms(), (6.0, 6.0, 12.0))
    sidecar = json.loads((out / "sub-01/anat/sub-01_T2w.json").read_text())
    assert sidecar["SliceThickness"] == 12.0 and sidecar["MRAcquisitionType"] == "2D"
    assert not (out / "sessions.json").exists()  # no sessions: its sidecar would be an orphan


def test_thick_slices_at_one_site_only(tmp_path):
    out = _one_t2w_subject(
        tmp_path / "site2",
        sites=2,
        traveling_subjects=1,
        resolution=6.0,
        thick_slices={"T2w": 2},
        thick_slice_sites=(2,),
    )
    zooms = {
        site: nib.load(
            out / f"sub-01/ses-site{site}/anat/sub-01_ses-site{site}_T2w.nii.gz"
        ).header.get_zooms()
        for site in (1, 2)
    }
    assert np.allclose(zooms[1], 6.0) and np.allclose(zooms[2], (6.0, 6.0, 12.0))
    assert (out / "sessions.json").exists()


def test_cli_errors(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    assert main([str(tmp_path / "full")]) == 6
    assert main([str(tmp_path / "new"), "--n-subjects", "1", "--traveling-subjects", "2"]) == 2
    assert main([str(tmp_path / "new"), "--noise", "150"]) == 2
    assert (
        main([str(tmp_path / "new"), "--modalities", "T1w", "T2w", "--thick-slices", "T2w=nan"])
        == 2
    )
    assert main([str(tmp_path / "new"), "--thick-slices", "T2w=3", "--thick-slice-sites", "3"]) == 2
    assert not (tmp_path / "new").exists()
    assert "error" in capsys.readouterr().err
