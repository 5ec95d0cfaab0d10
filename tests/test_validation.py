"""The official BIDS validator on the input dataset, and the methods boilerplate of a run."""

import json
import re
from pathlib import Path

import pytest
from helpers import write_bids

from bids_synth import validation
from bids_synth.boilerplate import bibliography, cited_keys, reference_list
from bids_synth.cli import main
from bids_synth.validation import Issue, check_input_dataset, summarise, validator_executable

PACKAGE = Path(__file__).parents[1] / "bids_synth"
BUNDLES = PACKAGE / "models" / "bundles"
needs_validator = pytest.mark.skipif(
    validator_executable() is None,
    reason="bids-validator-deno is not installed (pip install bids-validator-deno)",
)


def test_summary_is_one_line_per_code_with_examples():
    issues = [Issue("error", "NOT_INCLUDED", f"/sub-0{i}/anat/x.nii.gz") for i in range(5)]
    issues.append(Issue("error", "SIDECAR_KEY_REQUIRED", "/sub-01/anat/y.nii.gz", "SkullStripped"))
    lines = summarise(issues).splitlines()
    assert lines[0].startswith("  NOT_INCLUDED ×5: /sub-00/anat/x.nii.gz,") and lines[0].endswith(
        ", ..."
    )
    assert lines[1] == "  SIDECAR_KEY_REQUIRED ×1: /sub-01/anat/y.nii.gz (SkullStripped)"


def test_unreadable_images_are_left_to_the_per_participant_checks():
    relaxed = ["EMPTY_FILE", "NIFTI_HEADER_UNREADABLE", "T1W_FILE_WITH_TOO_MANY_DIMENSIONS"]
    assert all(validation.PER_PARTICIPANT_CODES.match(code) for code in relaxed)
    assert not validation.PER_PARTICIPANT_CODES.match("NOT_INCLUDED")


def test_missing_validator_falls_back_to_pybids(tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "validator_executable", lambda: None)
    assert check_input_dataset(write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})) is False


@needs_validator
def test_valid_dataset_with_ct_passes(tmp_path):
    """CT has no BIDS suffix yet: its files' issues do not count against the dataset."""
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w", "CT"]})
    assert check_input_dataset(bids) is True


@needs_validator
def test_validator_errors_stop_the_run_in_one_block(tmp_path, capsys):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w"]})
    (bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz").rename(bids / "sub-02" / "anat" / "t1.nii.gz")
    out = tmp_path / "out"
    args = [str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--boilerplate-only"]
    assert main(args) == 3
    stderr = capsys.readouterr().err
    assert re.search(
        r"error: .* fails BIDS validation \(1 error\(s\); --skip-bids-validation", stderr
    )
    assert "  NOT_INCLUDED ×1: /sub-02/anat/t1.nii.gz" in stderr
    assert not out.exists()  # checked before any work
    # another participant's files do not concern a run of sub-01; the option bypasses the check
    assert main([*args, "--participant-label", "01"]) == 0
    assert main([*args, "--skip-bids-validation"]) == 0


@needs_validator
def test_unreadable_image_is_left_to_its_participant(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w"]})
    (bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz").write_bytes(b"")
    assert check_input_dataset(bids) is True


def test_boilerplate_names_the_steps_that_run(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w", "CT"], "sub-02": ["T1w"]})
    out = tmp_path / "out"
    common = [str(bids), str(out), "participant", "-w", str(tmp_path / "work")]
    common += ["--boilerplate-only", "--skip-bids-validation", "--random-seed", "7"]
    tasks = ["--tasks", "denoise", "sct", "--denoise-method", "nlm", "--sct-method", "bulk"]
    assert main([*common, *tasks]) == 0
    text = (out / "logs" / "CITATION.md").read_text()
    assert "N4BiasFieldCorrection [@n4]" in text and "shrink factor 4" in text
    aligned = "The CT and T2w image(s) were aligned to the T1w (MR images after the same N4 "
    assert aligned + "correction) with a rigid transform" in text
    assert "random seed 7" in text
    assert "The T1w and T2w image(s) were denoised with adaptive non-local means" in text
    assert "fixed Hounsfield units" in text and "[@carney2006]" in text
    assert "Parameters: KVp 120; RandomSeed 7; BulkHU air -1000" in text
    assert "model bundles" not in text and "harmonized" not in text  # neither ran
    bib = (out / "logs" / "CITATION.bib").read_text()
    assert re.findall(r"^@\w+\{(\w+),", bib, re.MULTILINE) == cited_keys(text)
    assert sorted(path.name for path in out.iterdir()) == ["logs"]  # nothing else ran

    assert main([*common, "--tasks", "translate"]) == 0
    text = (out / "logs" / "CITATION.md").read_text()
    bundle = json.loads((BUNDLES / "translate-t1w-t2w-slab" / "bundle.json").read_text())
    version, sha256 = bundle["version"], bundle["weights"]["sha256"]
    assert f"`translate-t1w-t2w-slab` version {version} (sha256 `{sha256}`)" in text
    assert "[@cyclegan2017]" in text and "denoised" not in text


def test_every_reference_is_complete():
    source = PACKAGE / "data" / "references.bib"
    keys = re.findall(r"^@\w+\{(\w+),", source.read_text(), re.MULTILINE)
    # each entry is cited by the boilerplate, and each citation has its entry
    cited = set(re.findall(r"\[@(\w+)\]", (PACKAGE / "boilerplate.py").read_text()))
    cited.discard("key")  # the docstrings' placeholder
    assert len(keys) == len(set(keys)) and set(keys) == cited
    assert bibliography(keys).count("@") == len(keys)
    assert all(re.match(r"^\S.* \(\d{4}\)\. .+\. .+\.", line) for line in reference_list(keys))
    with pytest.raises(KeyError, match="lacks nokey"):
        bibliography(["nokey"])


def test_reports_only_needs_run_records(tmp_path, capsys):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    assert main([str(bids), str(tmp_path / "out"), "participant", "--reports-only"]) == 3
    assert "no run records" in capsys.readouterr().err
    args = [str(bids), str(tmp_path / "out"), "participant", "--reports-only", "--boilerplate-only"]
    assert main(args) == 2
