"""Super-resolution benchmark: SMORE-like (self) vs cubic B-spline at 2×, 2.5× and 4×, ± gap.

A held-out simulated head (seed 90001, real-anatomy ``tpm`` label maps; needs the reference
data) is acquired noise-free at ``--spacing`` mm isotropic: the truth. Thick-slice versions are
made along the superior axis with a box slice profile of the given thickness (gap: thickness
70 % of the slice spacing), sampled every ``factor`` voxels; the first slice is centred on the
first ``factor`` truth voxels so the isotropic output lands on the truth grid. Scores: PSNR/SSIM
in the head mask, and the Dice of antspyx Atropos (3 classes, k-means init, in the brain mask)
on the result against Atropos on the truth. Prints a markdown table; ``--append`` adds it to
BENCHMARKS.md. Note: the thick slices use the same box profile that ``self`` assumes.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from bids_synth.metrics import psnr, ssim
from bids_synth.metrics.segmentation import dice_per_label, mean_dice
from bids_synth.synthesis import superresolution as sr

CASES = [(2.0, False), (2.0, True), (2.5, False), (2.5, True), (4.0, False), (4.0, True)]
BRAIN = (7, 8, 9, 10, 11, 12)  # CSF, ventricles, GM, WM, deep GM, lesions


def thick_slices(truth: np.ndarray, spacing: float, factor: float, thickness: float):
    """Thick-slice acquisition of ``truth`` along axis 2 and its affine (voxel units of truth)."""
    from scipy.ndimage import convolve1d, map_coordinates

    radius = thickness / 2
    taps = np.arange(-int(np.ceil(radius)), int(np.ceil(radius)) + 1, dtype=float)
    kernel = np.clip(radius + 0.5 - np.abs(taps), 0.0, 1.0)
    blurred = convolve1d(truth.astype(np.float64), kernel / kernel.sum(), axis=2, mode="nearest")
    positions = np.arange((factor - 1) / 2, truth.shape[2] - factor / 2 + 0.5, factor)
    grid = np.meshgrid(*(np.arange(n, dtype=float) for n in truth.shape[:2]), positions,
                       indexing="ij")  # fmt: skip
    thick = map_coordinates(blurred, grid, order=1, mode="nearest").astype(np.float32)
    affine = np.diag([spacing, spacing, spacing * factor, 1.0])
    affine[2, 3] = positions[0] * spacing
    return thick, affine


def atropos(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import ants

    from bids_synth.fileio import private_tempdir

    img = ants.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    region = ants.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    with private_tempdir():  # Atropos leaves its probability images in the temp folder
        result = ants.atropos(a=img, x=region, i="kmeans[3]", m="[0.2,1x1x1]", c="[3,0]")
        return result["segmentation"].numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spacing", type=float, default=1.5, help="truth grid (mm)")
    parser.add_argument("--steps", type=int, default=sr.SMORE_DEFAULTS["steps"],
                        help="self: training steps")  # fmt: skip
    parser.add_argument("--cases", default=",".join(str(i) for i in range(len(CASES))),
                        help="comma-separated indices into CASES (to split runs)")  # fmt: skip
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from bids_synth.simulate import simulate_subject

    try:
        draw = simulate_subject(90001, label_source="tpm", spacing=args.spacing,
                                contrasts=("T1w",), noise=0.0, resolution=args.spacing)  # fmt: skip
    except (FileNotFoundError, OSError) as exc:
        print(f"skipped: real-anatomy label maps unavailable ({exc})")
        return 0
    truth = draw.noise_free["T1w"][0].numpy().astype(np.float32)
    head = draw.head_mask.numpy() > 0
    brain = np.isin(draw.labels.numpy(), BRAIN)
    lines = ["| factor | slice thickness | method | PSNR (dB) | SSIM | Atropos Dice | seconds |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    records = []
    for factor, gap in (CASES[int(i)] for i in args.cases.split(",")):
        thickness = factor * (0.7 if gap else 1.0)
        thick, affine = thick_slices(truth, args.spacing, factor, thickness)
        for method in ("bspline", "self"):
            started = time.perf_counter()
            if method == "bspline":
                out, out_affine = sr.bspline_isotropic(thick, affine, args.spacing)
            else:
                out, out_affine, _ = sr.smore(thick, affine, thickness_mm=thickness * args.spacing,
                                              steps=args.steps)  # fmt: skip
            seconds = time.perf_counter() - started
            assert np.allclose(out_affine[:3, 3], 0, atol=1e-6), out_affine  # on the truth grid
            n = min(out.shape[2], truth.shape[2])
            out, ref, region, in_brain = (a[..., :n] for a in (out, truth, head, brain))
            dice = mean_dice(dice_per_label(atropos(ref, in_brain), atropos(out, in_brain)))
            row = (f"| {factor:g}× | {thickness * args.spacing:.2f} mm "
                   f"({'gap' if gap else 'no gap'}) | {method} | {psnr(ref, out, region):.2f} | "
                   f"{ssim(ref, out, region):.4f} | {dice:.4f} | {seconds:.1f} |")  # fmt: skip
            print(row, flush=True)
            lines.append(row)
            records.append({"factor": factor, "thickness_mm": thickness * args.spacing, "gap": gap,
                            "method": method, "psnr": psnr(ref, out, region),
                            "ssim": ssim(ref, out, region), "dice": dice, "seconds": seconds})  # fmt: skip
    body = "\n".join(lines)
    print(body)
    if args.json:
        import json

        with open(args.json, "w") as handle:
            json.dump({"command": shlex.join(["python", *sys.argv]), "rows": records}, handle,
                      indent=1)  # fmt: skip
    if args.append:
        from harness import append_section

        append_section("Super-resolution (self vs B-spline, held-out tpm head)",
                       shlex.join(["python", *sys.argv]), body)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
