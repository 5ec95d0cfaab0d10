"""Preprocessing of a 1 mm head: the bids-synth participant workflow vs antspyx called directly.

Colin27 (``ch2.nii.gz`` from the reference data) with a synthetic multiplicative bias field is the
T1w; a rotated (8°, 6 mm) copy with inverted contrast stands in for a T2w. Both variants do the same
steps with the same ITK thread count and write the same compressed outputs:
head mask, N4, brain mask of the T1w; head mask, N4, rigid registration and resampling of the T2w.
Each variant runs in its own process, so its peak resident memory (``ru_maxrss`` of the process
tree) is its own. Usage::

    python benchmarks/bench_preproc.py [--threads 2] [--append]

Prints a markdown table (and appends it to BENCHMARKS.md with ``--append``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from harness import append_section  # noqa: E402

STAGES = ("t1w head mask", "t1w N4", "t1w brain mask", "t2w head mask", "t2w N4", "t2w register")

DIRECT = r"""
import json, os, sys, time
os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = sys.argv[3]
import ants
from bids_synth.preproc.masks import brain_mask, head_mask
from bids_synth.preproc.registration import register
bids, out = sys.argv[1], sys.argv[2]
times, start = {}, time.perf_counter()
def timed(name, fn, *args, **kw):
    t = time.perf_counter(); result = fn(*args, **kw); times[name] = time.perf_counter() - t
    return result
t1 = ants.image_read(f"{bids}/sub-01/anat/sub-01_T1w.nii.gz")
t2 = ants.image_read(f"{bids}/sub-01/anat/sub-01_T2w.nii.gz")
head = timed("t1w head mask", head_mask, t1)
n4 = timed("t1w N4", lambda: t1 / ants.n4_bias_field_correction(t1, mask=head, return_bias_field=True))
brain = timed("t1w brain mask", brain_mask, n4, head)
head2 = timed("t2w head mask", head_mask, t2)
n42 = timed("t2w N4", lambda: t2 / ants.n4_bias_field_correction(t2, mask=head2, return_bias_field=True))
reg = timed("t2w register", register, n4, n42, fixed_mask=head, seed=0, workdir=out,
            out_matrix=f"{out}/xfm.mat")
for name, image in (("t1w", n4), ("head", head), ("brain", brain), ("t2w", reg)):
    image.to_filename(f"{out}/{name}.nii.gz")
times["total"] = time.perf_counter() - start
print(json.dumps(times))
"""


def make_dataset(root: Path, reference: Path) -> None:
    image = nib.load(reference)
    t1w = image.get_fdata().astype(np.float32)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in t1w.shape], indexing="ij")
    bias = np.exp(0.25 * grid[0] - 0.2 * grid[1] ** 2 + 0.15 * grid[2])
    head = t1w > 0.1 * t1w.max()
    t2w = np.where(head, t1w.max() * 1.1 - t1w, 0)
    t2w = ndimage.rotate(t2w, 8, axes=(0, 1), reshape=False, order=1)
    t2w = ndimage.shift(t2w, (3, -4, 3), order=1)
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "bench", "BIDSVersion": "1.9.0"}')
    for suffix, data in (("T1w", t1w * bias), ("T2w", np.clip(t2w, 0, None))):
        nib.save(
            nib.Nifti1Image(data.astype(np.float32), image.affine), anat / f"sub-01_{suffix}.nii.gz"
        )


def run_measured(command: list[str]) -> tuple[str, float, float]:
    """Run a command; return its stdout, wall time (s) and peak RSS of its process tree (GiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:  # ru_maxrss of children is a maximum over all of them so far
        peak = before
    return result.stdout, wall, peak / 2**20


def nipype_stage_times(work: Path) -> dict[str, float]:
    from nipype.utils.filemanip import loadpkl

    base = work / "bids_synth_wf" / "sub_01_wf" / "anat_wf"
    nodes = {
        "t1w head mask": "anat_preproc_wf/head_mask", "t1w N4": "anat_preproc_wf/n4",
        "t1w brain mask": "anat_preproc_wf/brain_mask", "t2w head mask": "coreg_t2w_wf/head_mask",
        "t2w N4": "coreg_t2w_wf/n4", "t2w register": "coreg_t2w_wf/register",
    }  # fmt: skip
    times = {}
    for stage, folder in nodes.items():
        (result,) = (base / folder).glob("result_*.pklz")
        times[stage] = loadpkl(result).runtime.duration
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    from bids_synth.refdata import reference_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_dataset(tmp / "bids", reference_file("ch2.nii.gz"))
        (tmp / "direct").mkdir()
        out, direct_wall, direct_peak = run_measured(
            [
                sys.executable,
                "-c",
                DIRECT,
                str(tmp / "bids"),
                str(tmp / "direct"),
                str(args.threads),
            ]
        )
        direct = json.loads(out)
        _, app_wall, app_peak = run_measured([
            sys.executable, "-m", "bids_synth", str(tmp / "bids"), str(tmp / "out"), "participant",
            "-w", str(tmp / "work"), "--nprocs", "1", "--omp-nthreads", str(args.threads),
        ])  # fmt: skip
        app = nipype_stage_times(tmp / "work")

    rows = [f"| {stage} | {direct[stage]:.1f} | {app[stage]:.1f} |" for stage in STAGES]
    overhead = 100 * (app_wall - direct_wall) / direct_wall
    table = "\n".join([
        "| stage | antspyx direct (s) | bids-synth node (s) |",
        "|---|---|---|",
        *rows,
        f"| **whole run, wall** (incl. start-up, checks, writing) | {direct_wall:.1f} | {app_wall:.1f} |",
        f"| peak RSS (GiB) | {direct_peak:.2f} | {app_peak:.2f} |",
    ])  # fmt: skip
    text = (
        f"Colin27 1 mm (181×217×181) + bias field, rotated inverted copy as T2w; {args.threads} ITK "
        f"threads, MultiProc with 1 process.\n\n{table}\n\nNipype overhead on the whole run: "
        f"**{overhead:+.1f} %** (goal < 10 %)."
    )
    print(text)
    if args.append:
        append_section(
            "Preprocessing: bids-synth vs antspyx direct",
            "python benchmarks/bench_preproc.py --append",
            text,
        )


if __name__ == "__main__":
    main()
