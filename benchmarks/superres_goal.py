"""Super-resolution goal on real 1 mm T1 images: ``self`` vs cubic B-spline, PSNR/SSIM/Dice.

Truths: Colin27 (``ch2``, real 1 mm T1 with head; brain mask ``ch2bet``) and the MNI ICBM152 2009a
T1 (1 mm, skull-stripped). Each is degraded to axial slices ``factor`` mm apart (4 mm and 2 mm)
with a Gaussian (FWHM = thickness) or a box slice profile, without a gap (thickness = spacing) or
with one (thickness = 70 % of the spacing), then super-resolved back to 1 mm. ``self`` gets what a
real run gets from a sidecar: the slice thickness, not the profile shape (it estimates that).
Scores in the head (PSNR/SSIM) and the mean Dice of antspyx Atropos (3 classes, in the brain mask)
on the result against Atropos on the truth. Needs the reference data (``BIDS_SYNTH_REFDATA``).
Prints a markdown table; ``--json`` writes the rows; ``--mosaic`` saves a PNG for the first case.
``--eclare EXE`` adds ECLARE (PyPI ``eclare``, GPL, a peer only: it pins its own SciPy, so it lives
in a virtual environment of its own whose ``run-eclare`` is EXE) on the first ``--eclare-cases``
cases with its default schedule (or ``--eclare-patches``), given the same slice thickness; a run
past ``--eclare-timeout`` seconds is reported as unfinished.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bids_synth.metrics import psnr, ssim
from bids_synth.metrics.segmentation import dice_per_label, mean_dice
from bids_synth.refdata import reference_file
from bids_synth.synthesis import superresolution as sr

sys.path.insert(0, str(Path(__file__).parent))
from bench_superres import atropos  # noqa: E402
from superres_real import mosaic, nearest_isotropic  # noqa: E402

IMAGES = {
    "colin27": ("ch2.nii.gz", "ch2bet.nii.gz"),
    "mni2009a": ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", None),
}


def acquire_slices(truth: np.ndarray, factor: float, thickness: float, profile: str):
    """Axial (axis 2) slices of ``truth`` (1 mm voxels) ``factor`` mm apart and their affine."""
    from scipy.ndimage import convolve1d, map_coordinates

    kernel = sr.slice_kernel(thickness, profile)
    blurred = convolve1d(truth.astype(np.float64), kernel, axis=2, mode="nearest")
    positions = np.arange((factor - 1) / 2, truth.shape[2] - factor / 2 + 0.5, factor)
    grid = np.meshgrid(*(np.arange(n, dtype=float) for n in truth.shape[:2]), positions,
                       indexing="ij")  # fmt: skip
    thick = map_coordinates(blurred, grid, order=1, mode="nearest").astype(np.float32)
    affine = np.diag([1.0, 1.0, factor, 1.0])
    affine[2, 3] = positions[0]
    return thick, affine


def cpu_time() -> float:
    """CPU seconds of this process and of its finished children (ECLARE runs as one)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def eclare(
    exe: str,
    thick: np.ndarray,
    affine: np.ndarray,
    thickness: float,
    shape,
    timeout: float,
    patches: int | None = None,
):
    """ECLARE's result on the truth's 1 mm grid (identity affine; linear resampling), or None
    when it did not finish within ``timeout`` seconds; ``patches``: its training patches (None:
    its default schedule)."""
    import subprocess
    import tempfile

    import nibabel as nib

    from bids_synth.resampling import resample_onto

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "thick.nii.gz"
        nib.save(nib.Nifti1Image(thick, affine), source)
        command = [exe, "--in-fpath", str(source), "--out-dir", folder,
                   "--relative-slice-thickness", f"{thickness:g}"]  # fmt: skip
        if patches:
            command += ["--n-patches", str(patches)]
        try:
            subprocess.run(command, check=True, timeout=timeout, capture_output=True)
        except subprocess.TimeoutExpired:
            return None
        result = nib.load(Path(folder) / "thick_eclare.nii.gz")
        data = np.asanyarray(result.dataobj, dtype=np.float32)
        return resample_onto(data, result.affine, shape, np.eye(4))


def load(name: str):
    import nibabel as nib

    image, brain = IMAGES[name]
    truth = np.asanyarray(nib.load(reference_file(image)).dataobj, dtype=np.float32)
    truth = np.clip(truth, 0, None)
    head = truth > 0.1 * np.percentile(truth, 99)
    if brain:
        mask = np.asanyarray(nib.load(reference_file(brain)).dataobj) > 0
    else:
        mask = head
    return truth, head, mask


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--factors", nargs="+", type=float, default=[4.0, 2.0])
    parser.add_argument("--profiles", nargs="+", default=["gaussian", "box"])
    parser.add_argument("--gaps", nargs="+", default=["no", "yes"], choices=["no", "yes"])
    parser.add_argument("--steps", type=int, default=sr.SMORE_DEFAULTS["steps"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--mosaic", help="PNG of the first case (sagittal and coronal planes)")
    parser.add_argument("--eclare", metavar="EXE", help="ECLARE's run-eclare, as a peer row")
    parser.add_argument("--eclare-cases", type=int, default=1)
    parser.add_argument("--eclare-timeout", type=float, default=1800.0)
    parser.add_argument(
        "--eclare-patches", type=int, help="ECLARE's training patches (default: its own, 10⁶)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| image | factor | profile | thickness | method | PSNR (dB) | SSIM | Atropos Dice | "
          "wall s | CPU s | notes |\n|---|---|---|---|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    records = []
    for name in args.images:
        truth, head, brain = load(name)
        reference = atropos(truth, brain)
        for factor in args.factors:
            for profile in args.profiles:
                for gap in args.gaps:
                    thickness = factor * (0.7 if gap == "yes" else 1.0)
                    thick, affine = acquire_slices(truth, factor, thickness, profile)
                    results, first_case = {}, not records
                    methods = ["bspline", "self"]
                    done = sum(r["method"] == "bspline" for r in records)
                    if args.eclare and done < args.eclare_cases:
                        methods.append("eclare")
                    for method in methods:
                        started, cpu_started = time.perf_counter(), cpu_time()
                        notes = ""
                        if method == "bspline":
                            out, _ = sr.bspline_isotropic(thick, affine, 1.0)
                        elif method == "eclare":
                            out = eclare(args.eclare, thick, affine, thickness, truth.shape,
                                         args.eclare_timeout, args.eclare_patches)  # fmt: skip
                            if out is None:
                                print(f"| {name} | {factor:g}× | {profile} | {thickness:.1f} mm | "
                                      f"eclare | not finished | | | > {args.eclare_timeout:.0f} | "
                                      "| stopped at the time limit |", flush=True)  # fmt: skip
                                continue
                        else:
                            out, _, info = sr.smore(thick, affine, thickness_mm=thickness,
                                                    steps=args.steps, device="cpu")  # fmt: skip
                            notes = (f"profile found {info['slice_profile']}, "
                                     f"{info['steps']} steps (best {info['best_step']})")  # fmt: skip
                        seconds = time.perf_counter() - started
                        cpu_seconds = cpu_time() - cpu_started
                        n = min(out.shape[2], truth.shape[2])
                        ref, out = truth[..., :n], out[..., :n]
                        dice = mean_dice(dice_per_label(reference[..., :n],
                                                        atropos(out, brain[..., :n])))  # fmt: skip
                        row = {"image": name, "factor": factor, "profile": profile,
                               "thickness_mm": thickness, "method": method,
                               "psnr": psnr(ref, out, head[..., :n]),
                               "ssim": ssim(ref, out, head[..., :n]), "dice": dice,
                               "seconds": round(seconds, 1),
                               "cpu_seconds": round(cpu_seconds, 1), "notes": notes}  # fmt: skip
                        results[method] = out
                        records.append(row)
                        print(f"| {name} | {factor:g}× | {profile} | {thickness:.1f} mm "
                              f"({'gap' if gap == 'yes' else 'no gap'}) | {method} | "
                              f"{row['psnr']:.2f} | {row['ssim']:.4f} | {dice:.4f} | "
                              f"{seconds:.0f} | {cpu_seconds:.0f} | {notes} |", flush=True)  # fmt: skip
                    if args.mosaic and first_case:
                        volumes = {"real 1 mm (truth)": truth[..., :n],
                                   f"{factor:g} mm slices": nearest_isotropic(thick, affine)[..., :n],
                                   **{{"bspline": "B-spline"}.get(m, m): results[m][..., :n]
                                      for m in results}}  # fmt: skip
                        planes = [(0, 0.5, "sagittal"), (1, 0.55, "coronal")]
                        mosaic(volumes, planes, Path(args.mosaic),
                               f"{name}: {factor:g} mm {profile} slices -> 1 mm")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": shlex.join(["python", *sys.argv]), "rows": records}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
