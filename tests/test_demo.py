"""The README's demo, end to end at small size: simulate, participant level, group level."""

import csv
import hashlib
from pathlib import Path

import pytest

from bids_synth.cli import main

MANIFEST = Path(__file__).parent / "data" / "demo_manifest.txt"


def derivative_files(root: Path) -> list[str]:
    """Every derivative the demo publishes (logs and run-specific folders aside)."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not {"log", "logs"} & set(path.relative_to(root).parts[:3])
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


def test_demo_rerun_resumes_with_identical_outputs(demo):
    before = nifti_digests(demo / "derivatives")
    assert main(["demo", str(demo), "--resolution", "3", "--nprocs", "2"]) == 0
    assert nifti_digests(demo / "derivatives") == before
