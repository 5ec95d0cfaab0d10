"""Super-resolution on real T1 images: mosaics (PNG) and, where a real 1 mm truth exists, PSNR.

* ``KmeansTest_T1UCharRaw`` (a real low-resolution T1, 2 × 2 × 3 mm voxels): ``self`` and
  B-spline to 2 mm isotropic (anisotropy 1.5 is at the workflow's threshold, so the pipeline would
  skip it; the algorithm is called directly). No truth: look at the mosaic.
* ``ch2`` (Colin27, real 1 mm T1): 4 mm axial slices (box profile) made from it are super-resolved
  back to 1 mm and scored against the real 1 mm image (PSNR/SSIM in the head).

Needs the reference data (``BIDS_SYNTH_REFDATA``). Writes ``superres_real_*.png`` and
``superres_real.json`` under ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bids_synth.metrics import psnr, ssim
from bids_synth.refdata import reference_file
from bids_synth.synthesis import superresolution as sr

sys.path.insert(0, str(Path(__file__).parent))
from bench_superres import thick_slices  # noqa: E402


def _panel(volume: np.ndarray, axis: int, frac: float, limits) -> np.ndarray:
    """One slice of ``volume`` across ``axis`` at ``frac`` of its extent, rotated for display."""
    index = int(frac * (volume.shape[axis] - 1))
    image = np.take(volume, index, axis=axis)
    return np.rot90(np.clip((image - limits[0]) / (limits[1] - limits[0]), 0, 1))


def mosaic(volumes: dict, planes, path: Path, title: str) -> None:
    """Rows: ``planes`` ((axis, fraction, label)); columns: ``volumes`` (name → isotropic array)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(volumes.values()))
    limits = (0.0, float(np.percentile(first, 99.5)))
    fig, axes = plt.subplots(len(planes), len(volumes), figsize=(3.2 * len(volumes),
                             3.2 * len(planes)), squeeze=False)  # fmt: skip
    for row, (axis, frac, label) in enumerate(planes):
        for col, (name, volume) in enumerate(volumes.items()):
            ax = axes[row][col]
            ax.imshow(_panel(volume, axis, frac, limits), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")  # fmt: skip
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name, fontsize=9)
        axes[row][0].text(-0.02, 0.5, label, transform=axes[row][0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=9)  # fmt: skip
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def nearest_isotropic(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The acquired voxels repeated on the isotropic grid (what the scanner gave, blocky)."""
    from scipy.ndimage import affine_transform

    shape, _, k, offset = sr.isotropic_grid(data.shape, affine)
    return affine_transform(data, np.diag(k), offset=offset, output_shape=shape, order=0,
                            mode="nearest")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--steps", type=int, default=sr.SMORE_DEFAULTS["steps"])
    parser.add_argument("--factor", type=float, default=4.0, help="ch2: slice spacing (mm)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import nibabel as nib

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        real = nib.load(reference_file("KmeansTest_T1UCharRaw.nii.gz"))
        colin = nib.load(reference_file("ch2.nii.gz"))
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    results = {}
    data = np.asanyarray(real.dataobj, dtype=np.float32)
    started = time.perf_counter()
    selfsr, affine, info = sr.smore(data, real.affine, steps=args.steps)
    results["kmeans_test"] = {"zooms": sr.voxel_sizes(real.affine).tolist(),
                              "anisotropy": sr.anisotropy(sr.voxel_sizes(real.affine)),
                              "out_shape": list(selfsr.shape),
                              "out_zooms": sr.voxel_sizes(affine).tolist(),
                              "self_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    bspline, _ = sr.bspline_isotropic(data, real.affine)
    thick = info["thick_axis"]
    planes = [(a, f, f"axis {a} @ {f:.0%}") for a in range(3) if a != thick for f in (0.45, 0.6)]
    mosaic({"acquired (nearest)": nearest_isotropic(data, real.affine), "B-spline": bspline,
            "self (SMORE-like)": selfsr}, planes, out / "superres_real_kmeanstest_mosaic.png",
           "real T1 KmeansTest 2x2x3 mm -> 2 mm iso (planes through the 3 mm axis)")  # fmt: skip

    truth = np.asanyarray(colin.dataobj, dtype=np.float32)
    spacing = float(sr.voxel_sizes(colin.affine)[0])
    low, low_affine = thick_slices(truth, spacing, args.factor, args.factor)
    started = time.perf_counter()
    selfsr, _, info = sr.smore(low, low_affine, steps=args.steps)
    seconds = time.perf_counter() - started
    bspline, _ = sr.bspline_isotropic(low, low_affine, spacing)
    n = min(selfsr.shape[2], truth.shape[2])
    head = truth[..., :n] > 0.1 * np.percentile(truth, 99)
    ref = truth[..., :n]
    scores = {name: {"psnr": psnr(ref, v[..., :n], head), "ssim": ssim(ref, v[..., :n], head)}
              for name, v in (("bspline", bspline), ("self", selfsr))}  # fmt: skip
    results["colin27"] = {"factor": args.factor, "self_seconds": round(seconds, 1), **scores}
    planes = [(0, 0.5, "sagittal"), (1, 0.55, "coronal"), (1, 0.4, "coronal")]
    volumes = {
        "real 1 mm (truth)": truth,
        f"{args.factor:g} mm slices (nearest)": nearest_isotropic(low, low_affine),
        "B-spline": bspline,
        "self (SMORE-like)": selfsr,
    }
    mosaic({k: v[..., :n] for k, v in volumes.items()}, planes,
           out / "superres_real_colin27_mosaic.png",
           f"Colin27 real T1: {args.factor:g} mm axial slices -> 1 mm "
           f"(PSNR B-spline {scores['bspline']['psnr']:.2f} dB, self {scores['self']['psnr']:.2f} dB)")  # fmt: skip
    (out / "superres_real.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
