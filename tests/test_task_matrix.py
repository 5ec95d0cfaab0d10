"""Every task × every method end to end through the CLI, other options at their defaults.

The defaults of every task (sct and denoise by the evidence their bundles record — bulk or model,
nlm or model —, translate, harmonize whitestripe, superres self, device auto) run in
``test_demo.py``; the runs here cover every other method, several tasks
per run, on one small dataset with a thick-slice T2w. Then the failing-task policy: a
participant's derivatives are published all together; a failing task publishes nothing, names
itself in the error line and the run record, and the rerun without it reuses every finished step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import affine, contrast, phantom_labels, save, write_bids

from bids_synth.cli import main

#: one run per row: the non-default method of every task that has one left
MATRIX = {
    "model-self-zscore-bspline": ["--tasks", "sct", "denoise", "harmonize", "superres",
                                 "--sct-method", "model", "--denoise-method", "self",
                                 "--harmonize-method", "zscore", "--superres-method", "bspline"],
    "atlas-nlm-learned": ["--tasks", "sct", "denoise", "harmonize", "--sct-method", "atlas",
                          "--denoise-method", "nlm", "--harmonize-method", "learned"],
}  # fmt: skip
WRITES = {  # task -> what every session gets
    "sct": "space-T1w_desc-synthetic_CT",
    "denoise": "desc-denoised_T1w",
    "harmonize": "desc-harmonized_T1w",
    "superres": "res-iso_desc-superres_T2w",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two participants: T1w, CT and a T2w in 9 mm slices (3 mm in plane) with its sidecar."""
    root = write_bids(tmp_path_factory.mktemp("matrix") / "bids",
                      {"sub-01": ["T1w", "CT"], "sub-02": ["T1w", "CT"]})  # fmt: skip
    labels = phantom_labels()
    thick = contrast(labels, "T2w").reshape(44, 52, 11, 4).mean(axis=3)  # 4 slices per 12 mm
    thick_affine = affine() @ np.diag([1.0, 1.0, 4.0, 1.0])
    for subject in ("sub-01", "sub-02"):
        image = thick + np.random.default_rng(1).normal(0, 10, thick.shape)
        save(root / subject / "anat" / f"{subject}_T2w.nii.gz", image, thick_affine)
        (root / subject / "anat" / f"{subject}_T2w.json").write_text(
            json.dumps({"SliceThickness": 12.0, "SpacingBetweenSlices": 12.0})
        )
    return root


def run(dataset, out, *options) -> int:
    return main([str(dataset), str(out), "participant", "-w", str(out.parent / "work"),
                 "--nprocs", "2", *options])  # fmt: skip


@pytest.mark.parametrize("case", list(MATRIX))
def test_every_method_runs_end_to_end(dataset, tmp_path, case):
    """One participant per method (parallel participants are covered by the demo and the
    reliability tests)."""
    options = MATRIX[case]
    assert run(dataset, tmp_path / "out", "--participant-label", "01", *options) == 0
    tasks = options[1 : options.index(next(o for o in options if o.startswith("--sct")))]
    for task in tasks:
        path = tmp_path / "out" / "sub-01" / "anat" / f"sub-01_{WRITES[task]}.nii.gz"
        assert path.is_file(), f"{case}: {task} did not write {path.name}"
        sidecar = json.loads(path.with_name(path.name[:-7] + ".json").read_text())
        method = options[options.index(f"--{task}-method") + 1]
        assert sidecar.get("Method", method).lower().startswith(method[:4]), sidecar
        if method == "nlm":  # build-time and run-time parameters both kept
            assert sidecar["Parameters"]["implementation"] == "antspyx denoise_image"
            assert sidecar["Parameters"]["mask"] == "head"
    assert not (tmp_path / "out" / "sub-02").exists()


def test_nyul_runs_after_the_group_level_reference(dataset, tmp_path):
    out, one = tmp_path / "out", ["--participant-label", "01", "--tasks", "harmonize"]
    assert run(dataset, out, *one) == 0
    work = ["-w", str(tmp_path / "work")]
    assert main([str(dataset), str(out), "group", "--tasks", "harmonize", *work]) == 0
    assert run(dataset, out, *one, "--harmonize-method", "nyul") == 0
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-harmonized_T1w.json").read_text())
    assert sidecar["Method"].lower().startswith("nyul"), sidecar


def test_a_failing_task_names_itself_and_the_rerun_without_it_reuses_every_step(
    dataset, tmp_path, caplog, monkeypatch
):
    from pathlib import Path

    from bids_synth.synthesis import superresolution

    def broken(*args, **kwargs):
        raise RuntimeError("superres exploded")

    monkeypatch.setattr(superresolution, "bspline_isotropic", broken)
    linear = str(Path(__file__).parents[1] / "workflows" / "plugins" / "linear.yml")
    out = tmp_path / "out"
    options = ["--participant-label", "01", "--use-plugin", linear, "--sct-method", "bulk",
               "--superres-method", "bspline"]  # fmt: skip
    assert run(dataset, out, "--tasks", "sct", "superres", *options) == 8
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "RuntimeError: superres exploded" in errors[0], errors
    assert "task superres failed" in errors[0] and "rerun with --tasks sct" in errors[0]
    assert not list(out.glob("sub-01/anat/*.nii.gz"))  # all or nothing
    (record,) = out.glob("logs/*.json")
    (unit,) = json.loads(record.read_text())["units"]
    assert unit["status"] == "failed" and unit["failed_task"] == "superres"

    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("result_*.pklz")
                if "superres" not in str(p) and "derivatives" not in str(p)}  # fmt: skip
    assert any("sct_wf" in str(p) for p in finished) and any("n4" in str(p) for p in finished)
    assert run(dataset, out, "--tasks", "sct", *options) == 0
    assert (out / "sub-01/anat/sub-01_space-T1w_desc-synthetic_CT.nii.gz").is_file()
    rerun = {p: p.stat().st_mtime_ns for p in finished}
    assert rerun == finished  # no finished node ran again


def test_the_rerun_hint_leaves_out_every_failed_task():
    from bids_synth.participant import failed_tasks, rerun_hint

    messages = ["node sct_wf.synthetic_ct failed: E", "node translate_wf.t failed: E", "other"]
    failed = failed_tasks(messages, ["translate", "denoise", "sct"])
    assert failed == ["sct", "translate"]
    hint = rerun_hint(failed, ["translate", "denoise", "sct"])
    assert "tasks sct, translate failed" in hint and "rerun with --tasks denoise " in hint
    assert "rerun with no --tasks sct translate" in rerun_hint(failed, ["sct", "translate"])
