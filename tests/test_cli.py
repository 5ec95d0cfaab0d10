"""Command line: parser, settings precedence, and the documented exit codes for bad input."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from helpers import affine, write_bids

from bids_synth import __version__
from bids_synth.cli import main
from bids_synth.cli.parser import build_parser
from bids_synth.cli.run import build_config


def run(capsys, *args):
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if "error" in line.lower()]


def test_help_is_grouped_and_lists_subcommands():
    text = build_parser().format_help()
    for group in ("Selecting the data", "Synthesis", "Resources and execution", "sub-commands"):
        assert group in text
    for option in ("--participant-label", "--bids-filter-file", "--use-plugin", "--device"):
        assert option in text


def test_version_via_python_m():
    out = subprocess.run(
        [sys.executable, "-m", "bids_synth", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"bids-synth {__version__}"


def test_labels_with_or_without_prefix(tmp_path, bids_dir):
    args = build_parser().parse_args(
        [str(bids_dir), str(tmp_path / "out"), "participant", "--participant-label", "sub-01", "02",
         "--session-label", "ses-a", "-w", str(tmp_path / "work")]
    )  # fmt: skip
    config = build_config(args)
    assert config.execution.participant_label == ["01", "02"]
    assert config.execution.session_label == ["a"]


def test_command_line_overrides_config_file(tmp_path, bids_dir):
    toml = tmp_path / "run.toml"
    toml.write_text('[nipype]\nomp_nthreads = 3\n[workflow]\ncoreg_transform = "affine"\n')
    args = build_parser().parse_args(
        [str(bids_dir), str(tmp_path / "out"), "participant", "--config-file", str(toml),
         "--omp-nthreads", "1", "-w", str(tmp_path / "work"), "--brain-mask-method", "model"]
    )  # fmt: skip
    config = build_config(args)
    assert config.nipype.omp_nthreads == 1  # command line wins
    assert config.workflow.coreg_transform == "affine"  # from the file
    assert config.workflow.brain_mask_method == "model"


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("not-a-dir", 3, "does not exist"),
        ("no-description", 3, "no dataset_description.json"),
        ("unknown-label", 4, "not found in the dataset: sub-99"),
        ("path-label", 2, "invalid label"),
        ("output-is-input", 6, "is the BIDS folder or inside it"),
        ("output-inside-input", 6, "is the BIDS folder or inside it"),
        ("work-inside-input", 6, "is the BIDS folder or inside it"),
        ("bad-filter-json", 3, "not valid JSON"),
        ("bad-filter-key", 3, "unknown key(s) bold"),
        ("no-t1w", 4, "no selected participant has a T1w"),
        ("truncated", 5, "unreadable NIfTI"),
        ("4d", 5, "expected a 3D image"),
        ("nan", 5, "NaN or infinite"),
        ("constant", 5, "all voxels have the same value"),
        ("singular-affine", 5, "non-invertible affine"),
    ],
)
def test_bad_input_exits_with_one_clear_line(tmp_path, capsys, case, code, message):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]}, description=case != "no-description")
    out, work = tmp_path / "out", tmp_path / "work"
    extra = []
    t1w = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    if case == "not-a-dir":
        bids = tmp_path / "missing"
    elif case == "unknown-label":
        extra = ["--participant-label", "99"]
    elif case == "path-label":
        extra = ["--participant-label", "../01"]
    elif case == "output-is-input":
        out = bids
    elif case == "output-inside-input":
        out = bids / "derivatives" / "bids-synth"
    elif case == "work-inside-input":
        work = bids / "work"
    elif case in ("bad-filter-json", "bad-filter-key"):
        filters = tmp_path / "filters.json"
        filters.write_text("{nope" if case == "bad-filter-json" else json.dumps({"bold": {}}))
        extra = ["--bids-filter-file", filters]
    elif case == "no-t1w":
        t1w.rename(t1w.with_name("sub-01_T2w.nii.gz"))
    elif case == "truncated":
        t1w.write_bytes(t1w.read_bytes()[:300])
    else:
        data = np.ones((8, 8, 8), np.float32)
        data[2:5, 2:5, 2:5] = 5
        aff = affine()
        if case == "4d":
            data = np.stack([data, data], axis=-1)
        elif case == "nan":
            data[0, 0, 0] = np.nan
        elif case == "constant":
            data[:] = 1
        image = nib.Nifti1Image(data, aff)
        if case == "singular-affine":
            aff[:, 0] = 0
            image = nib.Nifti1Image(data, None)
            image.header.set_sform(aff, code=1)  # nibabel cannot store it as a qform
        nib.save(image, str(t1w))
    result, errors = run(capsys, bids, out, "participant", "-w", work, *extra)
    assert result == code
    assert len(errors) == 1 and message in errors[0], errors
    assert not list(out.glob("sub-*")) if out != bids else True  # nothing partial written


def test_group_level_without_participant_run(tmp_path, capsys, bids_dir):
    code, errors = run(capsys, bids_dir, tmp_path / "out", "group", "-w", tmp_path / "work")
    assert code == 4  # nothing to process yet
    assert "run the participant level first" in errors[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("[sct]\nmetod = 'bulk'", "unknown option workflow.task_options.sct.metod (known: method,"),
        ("[sct]\nmethod = 'bone'", 'sct.method = "bone": must be one of model, bulk, atlas'),
        ("[sct]\nkvp = '120'", 'sct.kvp = "120": must be an integer (--sct-kvp)'),
        ("[sct]\nkvp = 125", "sct.kvp = 125: must be one of 80, 100, 110, 120, 130, 140"),
        ("[sct]\natlas_seeds = 1", "sct.atlas_seeds = 1: must be a list (--sct-atlas-seeds)"),
        ("[sct]\natlas_seeds = [1.5]", "each value must be a non-negative integer"),
        ("[superres]\nsteps = 0", "superres.steps = 0: must be a positive integer (--superres-"),
        ("[denoise]\nself_steps = -5", "denoise.self_steps = -5: must be a positive integer"),
        ("[denoise]\nadapt_steps = -1", "denoise.adapt_steps = -1: must be a non-negative"),
        ("[sct]\natlas_spacing = 0", "sct.atlas_spacing = 0: must be a positive number"),
        ("[harmonize]\ntarget = 0", "harmonize.target = 0: must be a string (--harmonize-target)"),
        (
            "[denoize]\nmethod = 'nlm'",
            "unknown task workflow.task_options.denoize (known: denoise,",
        ),
    ],
)
def test_task_options_of_a_config_file_are_checked(tmp_path, capsys, bids_dir, options, message):
    toml = tmp_path / "run.toml"
    toml.write_text(options.replace("[", "[workflow.task_options.", 1))
    code, errors = run(capsys, bids_dir, tmp_path / "out", "participant", "--config-file", toml,
                       "-w", tmp_path / "work")  # fmt: skip
    assert code == 2
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--superres-steps", "0"), ("--denoise-self-steps", "-5"), ("--sct-atlas-spacing", "0")],
)
def test_task_options_refuse_non_positive_counts_and_sizes(tmp_path, capsys, bids_dir, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main([str(bids_dir), str(tmp_path / "out"), "participant", flag, value])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert exit_.value.code == 2
    assert len(errors) == 1 and f"argument {flag}: must be" in errors[0], errors
    assert "positive" in errors[0]
    assert not (tmp_path / "out").exists()


def test_task_options_of_a_config_file_merge_under_the_command_line(tmp_path, bids_dir):
    toml = tmp_path / "run.toml"
    toml.write_text(
        "[workflow.task_options.sct]\nmethod = 'atlas'\natlas_seeds = [1, 2]\natlas_spacing = 2\n"
    )
    args = build_parser().parse_args(
        [str(bids_dir), str(tmp_path / "out"), "participant", "--config-file", str(toml),
         "--sct-method", "bulk", "-w", str(tmp_path / "work")]
    )  # fmt: skip
    options = build_config(args).workflow.task_options["sct"]
    assert options == {"method": "bulk", "atlas_seeds": [1, 2], "atlas_spacing": 2}


def test_vv_shows_the_nipype_log_on_stderr_in_the_package_format(tmp_path):
    """Of the main process (the engine) and of the MultiProc workers (the nodes); none on
    stdout, where nipype's own handler would write."""
    import re

    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    done = subprocess.run(
        [sys.executable, "-m", "bids_synth", bids, tmp_path / "out", "participant",
         "-w", tmp_path / "work", "--nprocs", "1", "--omp-nthreads", "1", "-vv"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nipype" not in done.stdout
    lines = done.stderr.splitlines()
    stamp = r"^\d\d:\d\d:\d\d nipype\.workflow"
    assert any(re.match(rf"{stamp} DEBUG: ", line) for line in lines)
    assert any(re.match(rf'{stamp} INFO: \[Node\] Executing "n4" ', line) for line in lines)


@pytest.mark.parametrize(("nprocs", "threads"), [(1, 1), (2, 1), (4, 2), (16, 8), (64, 8)])
def test_default_threads_per_process_let_two_nodes_run_at_once(nprocs, threads):
    from bids_synth.config import default_omp_nthreads

    assert default_omp_nthreads(nprocs) == threads


def test_a_closed_stdout_ends_quietly():
    """``bids-synth models list | head -0``: no traceback, the shell's SIGPIPE status."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bids_synth", "models", "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141 and "Traceback" not in stderr, stderr
