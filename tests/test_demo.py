"""The README's demo, end to end at small size: simulate, participant level, group level."""

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bids_synth.cli import main
from bids_synth.validation import errors, summarise, validate, validator_executable

MANIFEST = Path(__file__).parent / "data" / "demo_manifest.txt"
README = Path(__file__).parents[1] / "README.md"
#: the placeholders of the README's output listing
PLACEHOLDERS = {
    "<label>": "[A-Za-z0-9]+",
    "<MR>": "(T2w|FLAIR|PD)",
    "<contrast>": "(T1w|T2w|FLAIR|PD)",
    "<run_id>": "[^/]+",
}
#: the only session whose T2w is acquired in thick slices (site 2's protocol)
THICK_SLICE_SESSION = "sub-01/ses-site2/anat"


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


@pytest.fixture(scope="module")  # built once: make test sends a module's tests to one worker
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
    """The demo runs every registered task with its defaults; each writes in every session it
    applies to (super-resolution: the session whose T2w has thick slices)."""
    from bids_synth.workflows.synthesis import registered_tasks

    sessions = sorted(demo.glob("derivatives/sub-*/**/anat"))
    assert len(sessions) == 3
    for task in registered_tasks().values():
        for anat in sessions if task.name != "superres" else [THICK_SLICE_SESSION]:
            anat = demo / "derivatives" / anat if task.name == "superres" else anat
            written = [p for d in task.descriptions for p in anat.glob(f"*desc-{d}_*.nii.gz")]
            assert written, f"task {task.name} wrote nothing in {anat}"


def test_the_thick_slice_t2w_is_super_resolved_with_the_default_method(demo):
    import nibabel as nib

    (raw,) = demo.glob(f"rawdata/{THICK_SLICE_SESSION}/*_T2w.nii.gz")
    (out,) = demo.glob(f"derivatives/{THICK_SLICE_SESSION}/*_res-iso_desc-superres_T2w.nii.gz")
    raw_sidecar = json.loads(Path(str(raw).replace(".nii.gz", ".json")).read_text())
    assert raw_sidecar["SliceThickness"] == raw_sidecar["SpacingBetweenSlices"] == 9.0
    assert np.allclose(nib.load(raw).header.get_zooms()[:3], (3.0, 3.0, 9.0))  # a rotated pose
    assert np.allclose(nib.load(out).header.get_zooms()[:3], (3.0, 3.0, 3.0))
    sidecar = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    from bids_synth.nn.devices import resolve_device

    assert sidecar["Method"] == "self" and sidecar["Device"] == str(resolve_device("auto"))
    assert sidecar["SliceThickness"] == 9.0 and sidecar["SliceProfile"] == "box or gaussian"
    assert sidecar["SliceProfileSource"].startswith(
        "SliceThickness from the sidecar; shape unknown"
    )


def test_demo_rerun_resumes_with_identical_outputs(demo):
    before = nifti_digests(demo / "derivatives")
    assert main(["demo", str(demo), "--resolution", "3", "--nprocs", "2"]) == 0
    assert nifti_digests(demo / "derivatives") == before


@pytest.mark.skipif(validator_executable() is None, reason="bids-validator-deno is not installed")
@pytest.mark.parametrize("dataset", ["rawdata", "derivatives", "rawdata/derivatives/ground-truth"])
def test_demo_datasets_pass_the_bids_validator(demo, dataset):
    issues = validate(demo / dataset)
    assert not errors(issues), summarise(errors(issues))
    assert not [issue for issue in issues if issue.code == "NIFTI_UNIT"]  # units in every header


def test_reports_only_rebuilds_the_reports_with_the_methods(demo):
    derivatives = demo / "derivatives"
    reports = [derivatives / "sub-01.html", derivatives / "group" / "report.html"]
    for report in reports:
        report.unlink()
    images = nifti_digests(derivatives)
    args = [str(demo / "rawdata"), str(derivatives), "participant", "--participant-label", "01"]
    assert main([*args, "--reports-only"]) == 0
    assert all(report.is_file() for report in reports)
    assert nifti_digests(derivatives) == images  # nothing was processed
    html = reports[0].read_text()
    assert 'id="methods"' in html and "N4BiasFieldCorrection [3]" in html
    assert html.count("<h4>References</h4>") == 1  # one run made both sessions of sub-01
    citation = (derivatives / "logs" / "CITATION.md").read_text()
    used = {
        sidecar["Model"]["Id"]
        for path in derivatives.glob("sub-*/**/*.json")
        if "Model" in (sidecar := json.loads(path.read_text()))
    }
    assert "translate-t1w-t2w-slab" in used
    for bundle in used:  # every bundle that made an output is cited
        assert f"`{bundle}` version" in citation


def readme_outputs() -> dict[str, bool]:
    """The README's output listing: path pattern -> whether the demo writes it."""
    block = README.read_text().split("### Outputs", 1)[1].split("```")[1]
    entries = {}
    for line in block.strip().splitlines():
        pattern, _, note = line.partition(" ")
        entries[pattern] = "not in the demo" not in note
    return entries


def as_regex(pattern: str) -> re.Pattern:
    regex = re.escape(pattern)
    for placeholder, value in PLACEHOLDERS.items():
        regex = regex.replace(re.escape(placeholder), value)
    return re.compile(regex)


def test_readme_lists_what_the_demo_writes():
    """Every file of the demo's manifest has its README line, and every README line (logs aside)
    names files the demo writes, unless it says it is not in the demo."""
    patterns = {pattern: as_regex(pattern) for pattern in readme_outputs()}
    files = [
        re.sub(r"/ses-[A-Za-z0-9]+|_ses-[A-Za-z0-9]+", "", path)
        for path in MANIFEST.read_text().split()
    ]

    def listed(path: str) -> bool:
        named = [path]
        if path.endswith(".json"):  # a sidecar, beside its image, transform or table
            named += [path.removesuffix(".json") + ext for ext in (".nii.gz", ".mat", ".tsv")]
        return any(regex.fullmatch(name) for regex in patterns.values() for name in named)

    assert [path for path in files if not listed(path)] == []
    in_demo = [
        p for p, made in readme_outputs().items() if made and not re.search(r"(^|/)logs?/", p)
    ]
    assert [p for p in in_demo if not any(patterns[p].fullmatch(path) for path in files)] == []
