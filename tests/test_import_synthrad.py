"""``bids-synth import-synthrad`` on generated mini SynthRAD folders."""

import nibabel as nib
import numpy as np
import pytest

from bids_synth.cli import main as cli


def write_patient(folder, source="mr", shape=(12, 14, 10), seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    images = {
        source: rng.random(shape).astype(np.float32) * 500,
        "ct": (rng.random(shape) * 2000 - 1000).astype(np.int16),
        "mask": (rng.random(shape) > 0.3).astype(np.uint8),
    }
    for name, data in images.items():
        nib.save(nib.Nifti1Image(data, affine), folder / f"{name}.nii.gz")


@pytest.fixture
def synthrad(tmp_path):
    root = tmp_path / "synthrad"
    write_patient(root / "Task1" / "brain" / "1BA001")
    write_patient(root / "Task1" / "brain" / "1BA002", seed=1)
    write_patient(root / "Task2" / "brain" / "2B_A003", source="cbct", seed=2)
    return root


def test_synthrad_folder_becomes_bids(synthrad, tmp_path):
    out = tmp_path / "bids"
    assert cli(["import-synthrad", str(synthrad), str(out)]) == 0
    from bids import BIDSLayout

    layout = BIDSLayout(str(out), validate=False, derivatives=True)
    assert layout.get_subjects() == ["1BA001", "1BA002", "2BA003"]
    assert len(layout.get(suffix="T1w", extension=".nii.gz")) == 2
    assert [
        f.filename for f in layout.get(suffix="CT", acquisition="cbct", extension=".nii.gz")
    ] == ["sub-2BA003_acq-cbct_CT.nii.gz"]
    assert (
        len(layout.get(suffix="mask", desc="body", scope="derivatives", extension=".nii.gz")) == 3
    )
    copied = out / "sub-1BA001" / "anat" / "sub-1BA001_CT.nii.gz"
    assert (
        copied.read_bytes() == (synthrad / "Task1" / "brain" / "1BA001" / "ct.nii.gz").read_bytes()
    )
    rows = (out / "participants.tsv").read_text().splitlines()
    assert (
        rows[0] == "participant_id\tsource_id\tregion\tinput"
        and rows[3] == "sub-2BA003\t2B_A003\tbrain\tcbct"
    )
    assert (
        cli(["import-synthrad", str(synthrad), str(out)]) == 0
    )  # re-running over its own output is fine


def test_invalid_sources_are_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(["import-synthrad", str(tmp_path / "empty"), str(tmp_path / "out")]) == 3
    assert "no SynthRAD patient folder" in capsys.readouterr().err
    assert cli(["import-synthrad", str(tmp_path / "missing"), str(tmp_path / "out")]) == 3
    write_patient(tmp_path / "a" / "P-1")
    write_patient(tmp_path / "a" / "P1", seed=1)
    assert cli(["import-synthrad", str(tmp_path / "a"), str(tmp_path / "out")]) == 3
    assert "both become sub-P1" in capsys.readouterr().err


def test_bad_image_and_foreign_output_are_refused(tmp_path, capsys):
    write_patient(tmp_path / "src" / "1BA001")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert cli(["import-synthrad", str(tmp_path / "src"), str(tmp_path / "foreign")]) == 6
    (tmp_path / "src" / "1BA001" / "ct.nii.gz").write_bytes(b"not a nifti")
    assert cli(["import-synthrad", str(tmp_path / "src"), str(tmp_path / "out")]) == 5
    assert "ct ct.nii.gz: unreadable" in capsys.readouterr().err
