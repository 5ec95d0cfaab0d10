"""The README's demo, end to end at small size: simulate, participant level, group level."""

import csv
import hashlib
import json
from pathlib import Path

import pytest

from bids_synth.cli import main

pytestmark = pytest.mark.xdist_group("demo")  # one worker builds the shared fixture

MANIFEST = Path(__file__).parent / "data" / "demo_manifest.txt"


def derivative_files(root: Path) -> list[str]:
    """Every derivative the demo publishes (logs and run-specific folders aside)."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file()
        and not {"log", "logs"} & set(path.relative_to(root).parts[:3])
        and not path.name.startswith(".bids-synth")
    )


def nifti_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.nii.gz"))
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", str(out), "--resolution", "3", "--nprocs", "2"]) == 0
    return out


def test_demo_writes_the_expected_derivatives(demo):
    derivatives = demo / "derivatives"
    assert derivative_files(derivatives) == MANIFEST.read_text().split()
    with open(derivatives / "group" / "cohort.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["participant_id"], r["session_id"]) for r in rows] == [
        ("sub-01", "ses-site1"), ("sub-01", "ses-site2"), ("sub-02", "n/a"),
    ]  # fmt: skip
    assert {r["status"] for r in rows} == {"success"}
    assert all(set(r["inputs"].split(",")) == {"CT", "T1w", "T2w"} for r in rows)


def test_every_task_wrote_its_outputs_for_every_session(demo):
    """The demo runs every registered task with its defaults; each writes in every session."""
    from bids_synth.workflows.synthesis import registered_tasks

    sessions = sorted(demo.glob("derivatives/sub-*/**/anat"))
    assert len(sessions) == 3
    for task in registered_tasks().values():
        for anat in sessions:
            written = [p for d in task.descriptions for p in anat.glob(f"*desc-{d}_*.nii.gz")]
            assert written, f"task {task.name} wrote nothing in {anat}"


def test_the_thick_slice_t2w_is_super_resolved_with_the_default_method(demo):
    import nibabel as nib

    (raw,) = demo.glob("rawdata/sub-02/anat/sub-02_T2w.nii.gz")
    (out,) = demo.glob("derivatives/sub-02/anat/sub-02_res-iso_desc-superres_T2w.nii.gz")
    raw_sidecar = json.loads(raw.with_name("sub-02_T2w.json").read_text())
    assert raw_sidecar["SliceThickness"] == raw_sidecar["SpacingBetweenSlices"] == 9.0
    assert nib.load(raw).header.get_zooms()[:3] == (3.0, 3.0, 9.0)
    assert nib.load(out).header.get_zooms()[:3] == (3.0, 3.0, 3.0)
    sidecar = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    from bids_synth.nn.devices import resolve_device

    assert sidecar["Method"] == "self" and sidecar["Device"] == str(resolve_device("auto"))
    assert sidecar["SliceThickness"] == 9.0 and sidecar["SliceProfile"] in ("box", "gaussian")


def test_demo_rerun_resumes_with_identical_outputs(demo):
    before = nifti_digests(demo / "derivatives")
    assert main(["demo", str(demo), "--resolution", "3", "--nprocs", "2"]) == 0
    assert nifti_digests(demo / "derivatives") == before
