"""Faults a cohort run meets on a cluster: a shared work folder, signals, links into the input,
file size limits, broken sidecars, odd headers and dataset layouts (issue 17)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import write_bids

from bids_synth.errors import OutputError
from bids_synth.fileio import file_sha256
from bids_synth.validation import validator_executable
from bids_synth.workflows import unit_work_folder
from bids_synth.worklock import LOCK_FILE, work_folder_lock

BIDS_SYNTH = str(Path(sys.executable).with_name("bids-synth"))
RUN = ["--nprocs", "1", "--omp-nthreads", "1"]


def cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIDS_SYNTH, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR: " in line or "error:" in line]


def session_processes(sid: int) -> list[int]:
    """Live processes of session ``sid``: zombies aside, and those already exiting (their memory,
    and with it their command line, released: they can write nothing more)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            running = bool((stat.parent / "cmdline").read_bytes())
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z" and running:
            found.append(int(stat.parent.name))
    return found


# --- the work folder lock ---------------------------------------------------------------------

HOLD = """
import sys, time
from bids_synth.worklock import work_folder_lock
with work_folder_lock(sys.argv[1], run_id="holder-run"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held_lock(tmp_path):
    """A work folder whose lock another live process holds."""
    work = tmp_path / "work"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    yield work, holder.pid
    holder.kill()
    holder.wait()


def test_a_held_work_folder_is_refused_naming_the_holder(held_lock):
    work, pid = held_lock
    with (
        pytest.raises(OutputError, match=f"holder-run \\(pid {pid} on "),
        work_folder_lock(work, run_id="second"),
    ):
        pass


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / LOCK_FILE).write_text(json.dumps({"run_id": "killed", "pid": 999999, "host": "x"}))
    with work_folder_lock(work, run_id="next"):
        assert json.loads((work / LOCK_FILE).read_text())["run_id"] == "next"
    with work_folder_lock(work, run_id="after"):  # released at the end of the block
        pass


def test_a_second_run_on_a_busy_work_folder_is_one_line_exit_6(tmp_path, held_lock):
    work, pid = held_lock
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    done = cli(bids, tmp_path / "out", "participant", "-w", work, *RUN)
    assert done.returncode == 6
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and f"in use by bids-synth run holder-run (pid {pid}" in lines[0]
    boilerplate = cli(bids, tmp_path / "out", "participant", "-w", work, "--boilerplate-only")
    assert boilerplate.returncode == 0, boilerplate.stderr  # touches no work folder
    assert (tmp_path / "out" / "logs" / "CITATION.md").exists()
    assert not (tmp_path / "out" / "sub-01").exists()


# --- SIGTERM and SIGINT -----------------------------------------------------------------------


# SIGINT: in one suite run the signal did not stop the run (exit 0): under investigation
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_signal_stops_the_workers_keeps_finished_work_and_the_rerun_resumes(tmp_path, sig):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w", "T2w"]})
    out, work = tmp_path / "out", tmp_path / "work"
    process = subprocess.Popen(
        [BIDS_SYNTH, bids, out, "participant", "-w", work, *RUN],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    started = unit_work_folder(work, "02", None) / "anat_preproc_wf/head_mask/_report"
    deadline = time.monotonic() + 300
    while not started.exists():
        assert process.poll() is None and time.monotonic() < deadline, "no node started"
        time.sleep(0.02)
    os.kill(process.pid, sig)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 128 + sig
    lines = [line for line in stderr.splitlines() if line.startswith("bids-synth:")]
    assert len(lines) == 1 and f"interrupted by {sig.name}: workers stopped" in lines[0], stderr
    assert "finished and kept; the same command resumes the rest" in lines[0]
    assert not session_processes(process.pid), "a worker outlived the run"
    for anat in out.glob("sub-*/anat"):  # whatever was published is a complete set
        assert list(anat.parent.glob("log/*/*_status.json")), f"{anat} published without record"
    (log,) = out.glob("logs/*.json")  # the run record, for the group level
    statuses = {u["participant_id"]: u["status"] for u in json.loads(log.read_text())["units"]}
    assert set(statuses) == {"sub-01", "sub-02"}
    assert (
        set(statuses.values()) <= {"success", "interrupted"} and "interrupted" in statuses.values()
    )

    rerun = cli(bids, out, "participant", "-w", work, *RUN)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("sub-02/anat/*.nii.gz"))) == 4  # preproc T1w, masks, T2w


# --- links from the output folder into the input dataset ------------------------------------


def test_a_link_in_the_output_folder_into_the_input_is_refused(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub-01").symlink_to(bids / "sub-01")
    before = sorted(p.relative_to(bids) for p in bids.rglob("*"))
    done = cli(bids, out, "participant", "-w", tmp_path / "work", *RUN)
    assert done.returncode == 6
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "symbolic link into the BIDS folder" in lines[0], done.stderr
    assert "sub-01" in lines[0]
    assert sorted(p.relative_to(bids) for p in bids.rglob("*")) == before


def test_links_into_finds_nested_links_only_into_the_target(tmp_path):
    from bids_synth.fileio import links_into

    target, root, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "other"
    (target / "a").mkdir(parents=True)
    (root / "sub-01" / "anat").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "sub-01" / "anat" / "log").symlink_to(target / "a")
    (root / "ok").symlink_to(elsewhere)
    assert links_into(root, target) == [root / "sub-01" / "anat" / "log"]


# --- sidecars that a task reads ---------------------------------------------------------------

BAD_SIDECARS = {
    "unparsable": ('{"SliceThickness": 6', "not valid JSON"),
    "not-an-object": ("[6]", "not a JSON object"),
    "text-thickness": ('{"SliceThickness": "6mm"}', "SliceThickness must be a positive number"),
    "negative-thickness": ('{"SliceThickness": -6}', "SliceThickness must be a positive number"),
}


@pytest.mark.parametrize("case", sorted(BAD_SIDECARS))
def test_read_sidecar_names_the_file(tmp_path, case):
    from bids_synth.bids import read_sidecar
    from bids_synth.errors import InvalidImageError

    image = tmp_path / "sub-01_T2w.nii.gz"
    image.with_name("sub-01_T2w.json").write_text(BAD_SIDECARS[case][0])
    with pytest.raises(
        InvalidImageError, match=f"sidecar sub-01_T2w.json: {BAD_SIDECARS[case][1]}"
    ):
        read_sidecar(image)


def test_read_sidecar_accepts_a_thickness_or_none(tmp_path):
    from bids_synth.bids import read_sidecar

    image = tmp_path / "sub-01_T2w.nii"
    assert read_sidecar(image) == {}
    image.with_name("sub-01_T2w.json").write_text('{"SliceThickness": 4.5}')
    assert read_sidecar(image) == {"SliceThickness": 4.5}


@pytest.mark.parametrize("case", ["not-an-object"])
def test_a_bad_sidecar_skips_only_its_participant(tmp_path, case):
    """The validator refuses the dataset naming the file (exit 3); past it, with a task that reads
    sidecars (superres), the participant is skipped with one line and the others are built and run
    (here: nothing is anisotropic, so preprocessing only)."""
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w"]})
    sidecar = bids / "sub-02" / "anat" / "sub-02_T1w.json"
    sidecar.write_text(BAD_SIDECARS[case][0])
    out = tmp_path / "out"
    run = [bids, out, "participant", "-w", tmp_path / "work", "--tasks", "superres", *RUN]
    if validator_executable() is not None:
        refused = cli(*run)
        assert refused.returncode == 3 and "sub-02_T1w.json" in refused.stderr, refused.stderr
        assert not out.exists() or not list(out.glob("sub-*"))
    done = cli(*run, "--skip-bids-validation")
    assert done.returncode == 5, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "sub-02" in lines[0] and "sub-02_T1w.json" in lines[0], lines
    assert BAD_SIDECARS[case][1] in lines[0]
    assert list(out.glob("sub-01/anat/*.nii.gz")) and not (out / "sub-02").exists()


# --- determinism: fresh processes, one worker or two -----------------------------------------


def derivative_digests(out: Path) -> dict[str, str]:
    """sha256 of every derivative; sidecars without their RuntimeSeconds (wall time)."""
    import hashlib

    digests = {}
    for path in sorted(out.glob("sub-*/anat/*")):
        content = path.read_bytes()
        if path.suffix == ".json":
            sidecar = json.loads(content)
            sidecar.pop("RuntimeSeconds", None)
            content = json.dumps(sidecar, sort_keys=True).encode()
        digests[str(path.relative_to(out))] = hashlib.sha256(content).hexdigest()
    return digests


def run_twice(tmp_path, layout: dict, *options) -> list[dict]:
    """Two fresh runs (--nprocs 1, then 2; two ITK threads each) of the same dataset."""
    bids = write_bids(tmp_path / "bids", layout)
    digests = []
    for nprocs in ("1", "2"):
        out = tmp_path / f"out-{nprocs}"
        done = cli(bids, out, "participant", "-w", tmp_path / f"work-{nprocs}", "--random-seed",
                   "3", "--nprocs", nprocs, "--omp-nthreads", "2", *options)  # fmt: skip
        assert done.returncode == 0, done.stderr
        digests.append(derivative_digests(out))
    return digests


def test_bulk_sct_and_nlm_are_identical_across_processes_and_worker_counts(tmp_path):
    """The two steps that were not reproducible: Atropos (clock-seeded) and multi-threaded NLM."""
    first, second = run_twice(
        tmp_path, {"sub-01": ["T1w"], "sub-02": ["T1w"]},
        "--tasks", "sct", "denoise", "--sct-method", "bulk", "--denoise-method", "nlm",
    )  # fmt: skip
    assert any("synthetic_CT" in name for name in first) and any("denoised" in n for n in first)
    assert first == second


# superres: the 3 mm phantom is isotropic, so it is skipped (test_superres.py covers it)
METHODS = [("sct", "atlas"), ("sct", "model"), ("denoise", "self"), ("denoise", "model"),
           ("harmonize", "nyul"), ("harmonize", "learned"), ("translate", None)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task,method", METHODS)
def test_every_task_and_method_is_identical_across_processes_and_worker_counts(
    tmp_path, task, method
):
    options = ["--tasks", task, *([f"--{task}-method", method] if method else [])]
    first, second = run_twice(tmp_path, {"sub-01": ["T1w", "T2w"], "sub-02": ["T1w"]}, *options)
    assert first == second


# --- headers: sform and qform -----------------------------------------------------------------


def test_disagreeing_sform_and_qform_are_refused(tmp_path):
    import nibabel as nib
    import numpy as np
    from helpers import affine, contrast, phantom_labels

    from bids_synth.errors import InvalidImageError
    from bids_synth.fileio import load_image

    image = nib.Nifti1Image(contrast(phantom_labels(), "T1w"), affine())
    image.set_qform(affine(), code=1)
    image.set_sform(affine(), code=1)
    nib.save(image, tmp_path / "same.nii.gz")
    assert load_image(tmp_path / "same.nii.gz").shape == (44, 52, 44)

    angle = np.deg2rad(25)
    turned = np.eye(4)
    turned[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    turned[:3, 3] = 30
    image.set_sform(turned @ affine(), code=1)
    nib.save(image, tmp_path / "differ.nii.gz")
    with pytest.raises(
        InvalidImageError, match=r"differ.nii.gz: the sform and qform disagree .* 25° rotated"
    ):
        load_image(tmp_path / "differ.nii.gz")
    image.set_qform(None, code=0)  # one of them unset: the set one is used by everyone
    nib.save(image, tmp_path / "sform-only.nii.gz")
    load_image(tmp_path / "sform-only.nii.gz")


# --- file size limits -------------------------------------------------------------------------


def test_a_file_size_limit_is_an_output_problem():
    import errno

    from bids_synth.execution import failed_with
    from bids_synth.fileio import output_error

    error = output_error(OSError(errno.EFBIG, "File too large"), Path("work/x.pklz"))
    assert isinstance(error, OutputError) and "file size limit" in str(error)
    crash = "node anat_wf.n4 failed: OSError: [Errno 27] File too large (crash file: c.txt)"
    assert failed_with(crash, OutputError)
    assert not failed_with("node n4 failed: ValueError: bad (crash file: c.txt)", OutputError)


# --- stale derivatives after the inputs changed -----------------------------------------------


def test_a_commit_removes_the_derivatives_of_changed_inputs_only(tmp_path):
    """Stale: made from another content, another run of an input, a removed image. Kept:
    rewritten now, made from an unchanged image this run does not use (another selection, e.g.
    another ``acq-``, included), no digests."""
    from bids_synth import derivatives

    raw, out = tmp_path / "raw", tmp_path / "out"
    anat = out / "sub-01" / "anat"
    anat.mkdir(parents=True)
    names = ("sub-01_T1w", "sub-01_acq-fast_T1w", "sub-01_run-1_T2w", "sub-01_run-2_T2w",
             "sub-01_PD")  # fmt: skip
    for name in names:
        (raw / "sub-01" / "anat").mkdir(parents=True, exist_ok=True)
        (raw / "sub-01" / "anat" / f"{name}.nii.gz").write_bytes(name.encode())
    sha = {name: file_sha256(raw / "sub-01" / "anat" / f"{name}.nii.gz") for name in names}

    def uri(name):
        return f"bids:raw:sub-01/anat/{name}.nii.gz"

    def earlier(name, made_from, extension=".nii.gz"):
        (anat / f"{name}{extension}").write_bytes(b"old")
        sidecar = {"Sources": list(made_from)}
        if made_from:
            sidecar["SourcesSha256"] = {uri(source): digest for source, digest in made_from.items()}
        (anat / f"{name}.json").write_text(json.dumps(sidecar))

    earlier("sub-01_desc-synthetic_CT", {"sub-01_T1w": "0" * 64})  # the T1w changed since
    earlier("sub-01_desc-synthetic_T2w", {"sub-01_run-2_T2w": sha["sub-01_run-2_T2w"]})  # run-1 now
    earlier("sub-01_desc-synthetic_FLAIR", {"sub-01_FLAIR": "1" * 64})  # FLAIR gone
    earlier("sub-01_from-PD_to-T1w_mode-image_xfm",
            {"sub-01_PD": sha["sub-01_PD"], "sub-01_T1w": sha["sub-01_T1w"]}, ".mat")  # fmt: skip
    earlier("sub-01_desc-denoised_T1w", {})  # no digests: not known to be stale
    earlier("sub-01_acq-fast_desc-preproc_T1w", {"sub-01_acq-fast_T1w": sha["sub-01_acq-fast_T1w"]})
    earlier("sub-01_desc-preproc_T1w", {"sub-01_T1w": "0" * 64})  # rewritten now
    (anat / "notes.json").write_text("[1, 2]")  # not a sidecar of bids-synth

    staged = []
    for name in ("sub-01_desc-preproc_T1w.nii.gz", "sub-01_desc-preproc_T1w.json"):
        (tmp_path / name).write_text("new")
        staged.append((str(tmp_path / name), f"sub-01/anat/{name}"))
    inputs = {uri("sub-01_T1w"): sha["sub-01_T1w"], uri("sub-01_run-1_T2w"): "2" * 64}
    record = out / "sub-01" / "log" / "run" / "sub-01_status.json"
    derivatives.commit(staged, str(out), str(record), raw_root=str(raw), inputs=inputs)

    stale = ["sub-01_desc-synthetic_CT.nii.gz", "sub-01_desc-synthetic_FLAIR.nii.gz",
             "sub-01_desc-synthetic_T2w.nii.gz"]  # fmt: skip
    expected = [f"sub-01/anat/{n}" for s in stale for n in (s, s.replace(".nii.gz", ".json"))]
    assert json.loads(record.read_text())["removed"] == expected
    assert json.loads(record.read_text())["inputs"] == inputs
    assert sorted(path.name for path in anat.iterdir()) == [
        "notes.json",
        "sub-01_acq-fast_desc-preproc_T1w.json", "sub-01_acq-fast_desc-preproc_T1w.nii.gz",
        "sub-01_desc-denoised_T1w.json", "sub-01_desc-denoised_T1w.nii.gz",
        "sub-01_desc-preproc_T1w.json", "sub-01_desc-preproc_T1w.nii.gz",
        "sub-01_from-PD_to-T1w_mode-image_xfm.json", "sub-01_from-PD_to-T1w_mode-image_xfm.mat",
    ]  # fmt: skip
    assert (anat / "sub-01_desc-preproc_T1w.nii.gz").read_text() == "new"


def test_two_selections_of_inputs_keep_their_own_derivatives(tmp_path):
    """Derivative names keep the entities that distinguish inputs: two T1w selected in turn with
    --bids-filter-file write side by side, neither stale to the other; the report shows the
    latest; the group level pairs each image with its own T1w's mask; the names are valid BIDS."""
    from bids_synth.synthesis.harmonization_cohort import cohort_images
    from bids_synth.validation import errors, summarise, validate

    inputs = ["acq-highres_run-1_T1w", "acq-lowres_T1w", "rec-norm_T2w"]
    bids = write_bids(tmp_path / "bids", {"sub-01": inputs})
    out, work = tmp_path / "out", tmp_path / "work"
    for acq in ("highres", "lowres"):
        filters = tmp_path / f"{acq}.json"
        filters.write_text(json.dumps({"t1w": {"acquisition": acq}}))
        done = cli(bids, out, "participant", "-w", work, *RUN, "--bids-filter-file", filters)
        assert done.returncode == 0 and "removed" not in done.stderr, done.stderr
    high, low = "sub-01_acq-highres_run-1", "sub-01_acq-lowres"
    expected = [f"{t1w}_desc-{desc}.nii.gz" for t1w in (high, low)
                for desc in ("brain_mask", "head_mask", "preproc_T1w")]  # fmt: skip
    expected.append("sub-01_rec-norm_space-T1w_desc-preproc_T2w.nii.gz")  # on the latest T1w
    assert sorted(p.name for p in (out / "sub-01" / "anat").glob("*.nii.gz")) == expected
    report = (out / "sub-01.html").read_text()
    assert f"{low}_desc-preproc_T1w" in report and "acq-highres" not in report
    pairs = {(Path(r["image"]).name, Path(r["mask"]).name)
             for records in cohort_images(out).values() for r in records}  # fmt: skip
    assert pairs == {
        (f"{high}_desc-preproc_T1w.nii.gz", f"{high}_desc-brain_mask.nii.gz"),
        (f"{low}_desc-preproc_T1w.nii.gz", f"{low}_desc-brain_mask.nii.gz"),
        ("sub-01_rec-norm_space-T1w_desc-preproc_T2w.nii.gz", f"{low}_desc-brain_mask.nii.gz"),
    }
    if validator_executable() is not None:
        issues = errors(validate(out))
        assert not issues, summarise(issues)


def test_a_rerun_after_the_inputs_changed_removes_the_stale_derivatives(tmp_path):
    """A synthetic CT of the old T1w must not stay beside the preprocessed new T1w; with the
    inputs unchanged, the outputs of tasks not rerun are kept."""
    import nibabel as nib

    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    out, work = tmp_path / "out", tmp_path / "work"
    first = cli(
        bids, out, "participant", "-w", work, *RUN, "--tasks", "sct", "--sct-method", "bulk"
    )
    assert first.returncode == 0, first.stderr
    anat = out / "sub-01" / "anat"
    synthetic = sorted(path.name for path in anat.glob("*synthetic*"))
    assert len(synthetic) == 6  # CT, μ-map, body mask, their sidecars
    sidecar = json.loads((anat / "sub-01_space-T1w_desc-synthetic_CT.json").read_text())
    t1w = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert sidecar["SourcesSha256"] == {"bids:raw:sub-01/anat/sub-01_T1w.nii.gz": file_sha256(t1w)}

    same = cli(bids, out, "participant", "-w", work, *RUN)  # no task: sct's outputs stay
    assert same.returncode == 0 and "removed" not in same.stderr, same.stderr
    assert sorted(path.name for path in anat.glob("*synthetic*")) == synthetic

    image = nib.load(t1w)
    nib.save(nib.Nifti1Image(image.get_fdata() * 1.1, image.affine), t1w)  # a new T1w
    changed = cli(bids, out, "participant", "-w", work, *RUN)
    assert changed.returncode == 0, changed.stderr
    (line,) = [line for line in changed.stderr.splitlines() if " WARNING: " in line]
    assert "sub-01: removed 3 derivative(s) of an earlier run made from inputs that have " in line
    assert "sub-01_space-T1w_desc-synthetic_CT, sub-01_space-T1w_desc-synthetic_mumap" in line
    assert not list(anat.glob("*synthetic*"))
    assert len(list(anat.glob("*.nii.gz"))) == 3  # preprocessed T1w and masks, of the new T1w
    (log,) = sorted((out / "logs").glob("*.json"))[-1:]
    (unit,) = json.loads(log.read_text())["units"]
    assert sorted(unit["removed"]) == sorted(f"sub-01/anat/{name}" for name in synthetic)


# --- Apptainer as clusters run it ---------------------------------------------------------------

CACHES = """
import os, bids_synth, matplotlib.pyplot as plt
plt.figure().savefig(os.path.join(os.environ["OUT"], "figure.png"))
print(os.environ["MPLCONFIGDIR"], os.environ["DENO_DIR"], sep="\\n")
"""


def test_caches_go_to_a_temporary_folder_removed_at_exit(tmp_path):
    """No cache in the home (here missing, as under Apptainer's --no-home) or the install."""
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "OUT": str(tmp_path)}
    for preset in ("MPLCONFIGDIR", "DENO_DIR"):
        env.pop(preset, None)
    done = subprocess.run([sys.executable, "-c", CACHES], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    matplotlib, deno = map(Path, done.stdout.split())
    caches = matplotlib.parent
    assert deno.parent == caches and caches.parent == Path(tempfile.gettempdir())
    assert not caches.exists() and not home.exists()
    assert (tmp_path / "figure.png").is_file()


EMULATION = Path(__file__).resolve().parents[1] / "scripts" / "apptainer-emulation.sh"


@pytest.mark.slow
def test_the_demo_passes_as_apptainer_runs_it(tmp_path):
    """The demo over a read-only root as uid 12345 with --cleanenv and a fresh $HOME that must
    stay empty (scripts/apptainer-emulation.sh over this Python's environment)."""
    import shutil

    probe = ["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"]
    if shutil.which("bwrap") is None or subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("bubblewrap missing or no user namespaces")
    emulation = tmp_path / "emulation"
    env = {**os.environ, "EMU_DIR": str(emulation), "VENV": str(Path(sys.executable).parents[1]),
           "DEMO_ARGS": "--resolution 3"}  # fmt: skip
    done = subprocess.run([EMULATION], env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    derivatives = emulation / "pwd" / "demo_output" / "derivatives"
    description = json.loads((derivatives / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"]["Type"] == "apptainer"
