"""Synthetic CT benchmark: model vs bulk vs atlas on held-out simulated heads and real T1w scans.

Held-out subjects are drawn from the real-anatomy ``colin27`` label maps, which no shipped model
saw (the shipped bundles train on ``mni2009a``, ``tpm`` and ``phantom`` heads; the atlases use
``phantom``); each is preprocessed like the app does (head mask, N4, brain mask) and scored with
the SynthRAD metrics against its simulated acquired CT inside the head mask. The real scans (the
Colin27 T1 at 1 mm and the low-resolution KmeansTest T1, resampled to 1 mm by the model's own
inference) go through the same methods; their brain and bone HU are compared with the real head CT
of the reference data (another person: distributions, not voxels) and with the goals: brain median
within 15–45 HU, bone-range voxels < 0.5 % of the brain core, bone mean within ±30 % of the real
CT's. A T1w+T2w bundle gets the held-out heads' T2w too, and its real scans are the one real
co-registered T1/T2 pair of the reference data, SPM's avg152 templates (2 mm averages).

    python benchmarks/bench_sct.py [--subjects 3] [--spacing 2] [--bundle DIR] [--no-atlas] [--append]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import ants  # noqa: E402
import numpy as np  # noqa: E402
from harness import ct_skull_thickness, reference_brain  # noqa: E402

from bids_synth.metrics import ct_metrics  # noqa: E402
from bids_synth.preproc.masks import brain_mask, head_mask  # noqa: E402
from bids_synth.synthesis import sct_methods  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HELD_OUT_SEED = 900_000  # far from the seeds of training streams and the atlases (1, 2, ...)
REAL_CT_BRAIN_DEPTH_MM = 25.0  # real CT: soft tissue this deep under the head surface is brain


def _ants(array: np.ndarray, affine: np.ndarray):
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    image = ants.from_numpy(
        np.asarray(array, np.float32), origin=list(affine[:3, 3]), spacing=list(spacing)
    )
    return image


def preprocess(t1w):
    """Head mask, N4 inside it, brain mask: the app's preprocessing (antspyx)."""
    head = head_mask(t1w)
    corrected = ants.n4_bias_field_correction(t1w, mask=head, shrink_factor=2)
    return corrected, head, brain_mask(corrected, head)


def synthesize(t1w, head, brain, atlases, bundle, affine=None, t2w=None) -> dict[str, np.ndarray]:
    """Every method's HU on ``t1w``'s grid; ``affine`` (nibabel, RAS) orients the model's input
    (default: the grid's axes taken as RAS); ``t2w`` (on the same grid) is the model's second
    input when it takes one."""
    out = {"bulk": sct_methods.bulk_ct(t1w, head, brain).numpy()}
    if atlases:
        out["atlas"] = sct_methods.atlas_ct(t1w, head, atlases).numpy()
    if bundle is not None:
        from bids_synth.models.prediction import predict_on_grid

        started = time.perf_counter()
        out["model"], _ = predict_on_grid(
            bundle,
            [t1w.numpy(), *([] if t2w is None else [t2w.numpy()])],
            np.diag([*t1w.spacing, 1.0]) if affine is None else affine,
            device="cpu",
            mask=head.numpy() > 0.5,
        )
        print(f"  model inference {time.perf_counter() - started:.1f} s", flush=True)
    inside = head.numpy() > 0.5
    return {k: sct_methods.clip_hu(np.where(inside, v, -1000.0)) for k, v in out.items()}


def head_model_atlases(seeds, spacing):
    from bids_synth.simulate import simulate_subject

    atlases = []
    for seed in seeds:
        draw = simulate_subject(
            seed, label_source="phantom", spacing=spacing, contrasts=("T1w", "CT")
        )
        atlases.append(tuple(_ants(draw.clean[c].numpy(), draw.affine) for c in ("T1w", "CT")))
    return atlases


def tissue_errors(ct, synthetic: dict, body, labels, seed: int) -> list[dict]:
    """Per tissue label of the head: its share, the truth's mean HU and, per method, the mean
    prediction, the mean |error| and its contribution to the head's MAE (|error| sum / head)."""
    from bids_synth.simulate.tissues import Tissue

    rows, size = [], body.sum()
    for label in np.unique(labels[body]):
        where = body & (labels == label)
        for method, hu in synthetic.items():
            error = np.abs(hu[where] - ct[where])
            rows.append({
                "seed": seed, "tissue": Tissue(int(label)).name.lower(), "method": method,
                "share": float(where.sum() / size), "truth": float(ct[where].mean()),
                "predicted": float(hu[where].mean()), "error": float(error.mean()),
                "contribution": float(error.sum() / size),
            })  # fmt: skip
    return rows


def tissue_table(rows: list[dict]) -> str:
    """Markdown: per tissue, its share, the truth and each method's mean HU and |error|, and the
    |error|'s contribution to the MAE (means over subjects)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = "| tissue | share | truth HU | " + " | ".join(
        f"{m}: HU / abs. error / share of MAE" for m in methods
    )
    lines = [head + " |", "|---" * (3 + len(methods)) + "|"]
    for tissue in dict.fromkeys(r["tissue"] for r in rows):
        mine = [r for r in rows if r["tissue"] == tissue]
        cells = [
            f"{np.mean([r['share'] for r in mine]):.3f}",
            f"{np.mean([r['truth'] for r in mine]):.0f}",
        ]
        for method in methods:
            of = [r for r in mine if r["method"] == method]
            cells.append(
                " / ".join(f"{np.mean([r[k] for r in of]):.0f}" for k in ("predicted", "error"))
                + f" / {np.mean([r['contribution'] for r in of]):.1f}"
            )
        lines.append(f"| {tissue} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out(args, atlases, bundle) -> tuple[list[dict], dict, list[dict]]:
    from bids_synth.simulate import simulate_subject

    rows, example, tissues = [], None, []
    for index in range(args.subjects):
        seed = HELD_OUT_SEED + index
        contrasts = ("T1w", "T2w", "CT") if _uses_t2w(bundle) else ("T1w", "CT")
        draw = simulate_subject(
            seed, label_source=args.label_source, spacing=args.spacing, contrasts=contrasts
        )
        t1w, head, brain = preprocess(_ants(draw.images["T1w"].numpy(), draw.affine))
        t2w = None
        if _uses_t2w(bundle):
            raw = _ants(draw.images["T2w"].numpy(), draw.affine)
            t2w = ants.n4_bias_field_correction(raw, mask=head, shrink_factor=2)
        started = time.perf_counter()
        synthetic = synthesize(t1w, head, brain, atlases, bundle, t2w=t2w)
        ct = draw.images["CT"].numpy()
        body = draw.head_mask.numpy().astype(bool)
        truth_skull = ct_skull_thickness(ct, draw.affine)["median"]
        for method, hu in synthetic.items():
            scores = ct_metrics(ct, hu, body)
            rows.append({
                "seed": seed, "method": method, **{k: float(v) for k, v in scores.items()},
                "skull_mm": ct_skull_thickness(hu, draw.affine)["median"],
                "truth_skull_mm": truth_skull,
            })  # fmt: skip
            print(
                f"seed {seed} {method}: MAE {scores['mae']:.1f} HU, PSNR {scores['psnr']:.2f} dB, "
                f"SSIM {scores['ssim']:.3f}",
                flush=True,
            )
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        tissues += tissue_errors(ct, synthetic, body, draw.labels.numpy(), seed)
        if example is None:
            example = {"T1w": t1w.numpy(), "real CT (simulated)": ct, **synthetic}
    return rows, example, tissues


#: real T1w scans and, where the reference data has one, an independent brain mask (Colin27's BET
#: mask: the app's morphological mask leaks through Colin27's thin lateral skull, which would put
#: skull into the "brain core" and score the mask instead of the synthetic CT)
REAL_SCANS = {
    "Colin27": ("ch2.nii.gz", "ch2bet.nii.gz"),
    "KmeansTest": ("KmeansTest_T1UCharRaw.nii.gz", None),
}
#: real T1w + T2w pairs on one grid (for T1w+T2w bundles), with the SPM TPM's brain (both in MNI
#: space) as their independent brain mask
REAL_PAIRS = {"avg152": ("spm/avg152T1.nii.gz", "spm/TPM.nii.gz", "spm/avg152T2.nii.gz")}


def _uses_t2w(bundle) -> bool:
    from bids_synth.models.selection import contract

    return bundle is not None and "T2w" in contract(bundle)[0]


REAL_CT = "real CT (InVesalius 0051)"
GOALS = {"brain median HU": (15.0, 45.0), "core bone %": 0.5, "bone mean tolerance": 0.3}


def real_scans(atlases, bundle) -> tuple[dict, dict]:
    """QC of every method on the real T1w scans, and the real head CT's; images for mosaics."""
    import nibabel as nib

    from bids_synth.refdata import reference_file

    summary, images = {}, {}
    scans = (
        REAL_PAIRS
        if _uses_t2w(bundle)
        else {name: (*files, None) for name, files in REAL_SCANS.items()}
    )
    for name, (file, brain_file, t2w_file) in scans.items():
        path = str(reference_file(file))
        t1w, head, brain = preprocess(ants.image_read(path))
        t2w = None
        if t2w_file:
            raw = ants.image_read(str(reference_file(t2w_file)))
            t2w = ants.n4_bias_field_correction(raw, mask=head, shrink_factor=2)
        synthetic = synthesize(
            t1w, head, brain, atlases, bundle, affine=nib.load(path).affine, t2w=t2w
        )
        brain_voxels = (
            reference_brain(reference_file(brain_file), nib.load(path))
            if brain_file
            else brain.numpy() > 0.5
        )
        summary[name] = {
            m: {
                **sct_methods.ct_qc(hu, head.numpy() > 0.5, brain_voxels),
                "SkullThicknessMm": ct_skull_thickness(hu, nib.load(path).affine),
            }
            for m, hu in synthetic.items()
        }
        images[name] = {"T1w": t1w.numpy(), **synthetic}
    real = ants.image_read(str(reference_file("ct_head_invesalius0051.nii.gz")))
    real_head = head_mask(real, modality="CT")
    depth = ants.iMath(real_head, "MaurerDistance").numpy()  # negative inside the mask
    hu = real.numpy()
    inside = real_head.numpy() > 0.5
    real_brain = inside & (depth <= -REAL_CT_BRAIN_DEPTH_MM) & (hu > -20) & (hu < 100)
    summary[REAL_CT] = {
        "-": {
            **sct_methods.ct_qc(hu, inside, real_brain),
            "SkullThicknessMm": ct_skull_thickness(
                hu, nib.load(reference_file("ct_head_invesalius0051.nii.gz")).affine
            ),
        }
    }
    return summary, images


def meets_goals(qc: dict, real_ct: dict) -> bool:
    """The goals on one scan; bone against ``real_ct``'s mean HU of its bone-range voxels."""
    low, high = GOALS["brain median HU"]
    bone = qc["MeanHUBone"] or 0.0
    return (
        low <= qc["MedianHUBrain"] <= high
        and 100 * (qc["BoneFractionBrainCore"] or 0.0) < GOALS["core bone %"]
        and abs(bone / real_ct["MeanHUBone"] - 1) <= GOALS["bone mean tolerance"]
    )


def record(bundle, rows: list[dict], real: dict, args) -> None:
    """Held-out MAE and the real-scan check into the bundle's metadata and card."""
    from bids_synth.models.card import record_evaluation

    scans = [name for name in real if "model" in real[name]]
    real_ct = real[REAL_CT]["-"]
    passed = bool(scans) and all(meets_goals(real[name]["model"], real_ct) for name in scans)
    summary = "; ".join(
        f"{name}: brain median {real[name]['model']['MedianHUBrain']:.0f} HU, "
        f"{100 * (real[name]['model']['BoneFractionBrainCore'] or 0):.2f} % bone-range in the "
        f"brain core, bone mean {real[name]['model']['MeanHUBone'] or 0:.0f} HU"
        for name in scans
    )
    metrics = []
    for key, units in (("mae", "HU"), ("psnr", "dB"), ("ssim", "")):
        values = [r[key] for r in rows if r["method"] == "model"]
        if values:
            metrics.append({
                "name": key.upper(), "value": float(np.mean(values)), "units": units,
                "dataset": f"{len(values)} held-out {args.label_source} heads, {args.spacing} mm",
            })  # fmt: skip
    record_evaluation(
        bundle.path,
        metrics,
        checks={
            "real_scans": {
                "passed": passed,
                "summary": summary + " (goals: brain median 15–45 HU, < 0.5 % bone-range in the "
                f"brain core, bone mean within ±30 % of a real head CT's {real_ct['MeanHUBone']:.0f} HU)",
            }
        },  # fmt: skip
    )


def real_table(summary: dict) -> str:
    lines = [
        "| scan | method | median HU brain | mean HU brain | bone-range in brain core | "
        "mean HU bone (≥300) | skull over the vertex (mm) | goals met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scan, methods in summary.items():
        for method, qc in methods.items():
            core = qc["BoneFractionBrainCore"]
            bone = "–" if qc["MeanHUBone"] is None else f"{qc['MeanHUBone']:.0f}"
            met = (
                "–"
                if method == "-"
                else ("yes" if meets_goals(qc, summary[REAL_CT]["-"]) else "no")
            )
            skull = qc["SkullThicknessMm"]
            lines.append(
                f"| {scan} | {method} | {qc['MedianHUBrain']:.1f} | {qc['MeanHUBrain']:.1f} | "
                f"{'–' if core is None else f'{100 * core:.2f} %'} | {bone} | "
                f"{skull['median']:.1f} [{skull['p25']:.1f}, {skull['p75']:.1f}] | {met} |"
            )
    return "\n".join(lines)


def mosaic(images: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(images), figsize=(2.6 * len(images), 7.5))
    for column, (name, volume) in enumerate(images.items()):
        window = (0, np.percentile(volume, 99.5)) if name == "T1w" else (-200, 1800)
        for row in range(3):
            cut = np.take(volume, volume.shape[row] // 2, axis=row)
            axes[row, column].imshow(np.rot90(cut), cmap="gray", vmin=window[0], vmax=window[1])
            axes[row, column].axis("off")
        axes[0, column].set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    methods = sorted({r["method"] for r in rows}, key=["model", "bulk", "atlas"].index)
    lines = [
        "| method | MAE (HU) | PSNR (dB) | SSIM | skull over the vertex (mm): truth → method |",
        "|---|---|---|---|---|",
    ]
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        cell = {
            k: (np.mean([r[k] for r in mine]), np.std([r[k] for r in mine]))
            for k in ("mae", "psnr", "ssim")
        }
        lines.append(
            f"| {method} | {cell['mae'][0]:.1f} ± {cell['mae'][1]:.1f} | "
            f"{cell['psnr'][0]:.2f} ± {cell['psnr'][1]:.2f} | "
            f"{cell['ssim'][0]:.3f} ± {cell['ssim'][1]:.3f} | "
            f"{np.mean([r['truth_skull_mm'] for r in mine]):.1f} → "
            f"{np.mean([r['skull_mm'] for r in mine]):.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--spacing", type=float, default=2.0, help="simulation grid (mm)")
    parser.add_argument(
        "--label-source", default="colin27", help="held-out anatomy (default: colin27)"
    )
    parser.add_argument("--atlas-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--bundle", help="sct bundle folder (default: none, model not scored)")
    parser.add_argument("--no-atlas", action="store_true", help="skip the (slow) atlas method")
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the figures and the real-scan check into the bundle (decides the default)",
    )
    parser.add_argument("--append", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    bundle = None
    if args.bundle:
        from bids_synth.models import find_bundle

        bundle = find_bundle(args.bundle)
    RESULTS.mkdir(exist_ok=True)
    atlases = [] if args.no_atlas else head_model_atlases(args.atlas_seeds, args.spacing)
    rows, example, tissues = held_out(args, atlases, bundle)
    if example is not None:
        mosaic(example, RESULTS / "sct_held_out_mosaic.png")
    real, real_images = real_scans(atlases, bundle)
    for name, images in real_images.items():
        mosaic(images, RESULTS / f"sct_{name.lower()}_mosaic.png")
    (RESULTS / "sct.json").write_text(
        json.dumps({"held_out": rows, "held_out_tissues": tissues, "real": real}, indent=2)
    )
    body = (
        f"Held-out {args.label_source} heads ({args.subjects}, {args.spacing} mm):\n\n{table(rows)}"
        f"\n\nPer tissue label of the held-out heads (the MAE is the sum of the last numbers):"
        f"\n\n{tissue_table(tissues)}"
        if rows
        else ""
    )
    body += "\n\nReal scans → sCT, and the real head CT (another person):\n\n"
    body += real_table(real) + "\n"
    print(body)
    if args.record and bundle is not None:
        record(bundle, rows, real, args)
    if args.append:
        sys.path.insert(0, str(Path(__file__).parent))
        from harness import append_section

        append_section(
            "Synthetic CT", "python benchmarks/bench_sct.py " + " ".join(argv or sys.argv[1:]), body
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
