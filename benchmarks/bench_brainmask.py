"""Brain masks of T1w images: a learned ``brainmask`` bundle against the morphological rule.

Both methods see what the pipeline gives them: the T1w after N4 inside its head mask
(:mod:`bids_synth.preproc.masks`). Scored by Dice with an independent brain:
- real scans: Colin27 (its BET brain, ch2bet), SPM's avg152T1 (the SPM TPM's GM + WM + CSF > ½);
  the KmeansTest T1 has none (its brain volume and mosaic only);
- simulated held-out heads (the ``colin27`` and ``ct0051`` anatomies, never trained on; seeds
  900000…, each in a random scanner style, T1w at 2 mm): their true brain (the brain and its
  CSF, :func:`bids_synth.simulate.tissues.brain_region`).
With ``--record`` the real-scan check goes into the bundle (it decides the default method): the
model's Dice is at least the morphological rule's on each real scan with a reference brain.

    python benchmarks/bench_brainmask.py --bundle B [--subjects 4] [--record] [--append]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ants
import nibabel as nib
import numpy as np

from bids_synth.metrics.segmentation import dice_per_label
from bids_synth.preproc import masks
from bids_synth.refdata import reference_file

sys.path.insert(0, str(Path(__file__).parent))
from harness import reference_brain  # noqa: E402

RESULTS = Path(__file__).parent / "results"
HELD_OUT_SEED = 900_000
HELD_OUT_SOURCES = ("colin27", "ct0051")
#: real T1w → independent brain (None: no reference)
REAL_T1W = {
    "Colin27": ("ch2.nii.gz", "ch2bet.nii.gz"),
    "avg152T1": ("spm/avg152T1.nii.gz", "spm/TPM.nii.gz"),
    "KmeansTest": ("KmeansTest_T1UCharRaw.nii.gz", None),
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks (the package's per-label Dice, label 1)."""
    return dice_per_label(a, b, labels=[1])[1]


def preprocessed(data: np.ndarray, affine: np.ndarray) -> tuple[ants.ANTsImage, np.ndarray]:
    """The T1w after N4 inside its head mask, as the pipeline's brain-mask node gets it, and
    the head mask."""
    nifti = nib.Nifti1Image(data.astype(np.float32), affine)
    nifti.header.set_xyzt_units("mm", "sec")
    image = ants.from_nibabel_nifti(nifti)
    head = masks.head_mask(image)
    corrected = ants.n4_bias_field_correction(image, mask=head, shrink_factor=4)
    return corrected, head.numpy() > 0


def brain_masks(data: np.ndarray, affine: np.ndarray, bundle) -> dict[str, np.ndarray]:
    """Method → brain mask of one T1w."""
    corrected, head = preprocessed(data, affine)
    found = {"morphology": masks.brain_mask(corrected, corrected.new_image_like(
        head.astype(np.float32))).numpy() > 0}  # fmt: skip
    if bundle is not None:
        found["model"], _ = masks.learned_brain_mask(corrected.numpy(), affine, head, bundle)
    return found


def held_out(sources, subjects: int, bundle) -> list[dict]:
    from bids_synth.simulate import simulate_subject
    from bids_synth.simulate.tissues import brain_region

    rows = []
    for source in sources:
        for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + subjects):
            draw = simulate_subject(seed, label_source=source, spacing=2.0, contrasts=("T1w",))
            truth = brain_region(draw.labels, 2.0).numpy()
            found = brain_masks(draw.images["T1w"].numpy(), draw.affine, bundle)
            style = draw.params["style"]
            sequence = style["mr"]["T1w"]["sequence"]
            row = {"source": source, "seed": seed,
                   "style": f"{style['field_strength_T']:g} T {sequence['kind']}"}  # fmt: skip
            row.update({method: dice(mask, truth) for method, mask in found.items()})
            print(row, flush=True)
            rows.append(row)
    return rows


def real_scans(bundle) -> tuple[dict, dict]:
    """Scan → method → {dice, litres}; and scan → (image, masks) for the mosaics."""
    summary, images = {}, {}
    for name, (image_file, reference) in REAL_T1W.items():
        scan = nib.as_closest_canonical(nib.load(reference_file(image_file)))
        data = np.asarray(scan.dataobj, dtype=np.float32)
        found = brain_masks(data, scan.affine, bundle)
        litres = float(np.prod(scan.header.get_zooms()[:3])) / 1e6
        truth = reference_brain(reference_file(reference), scan) if reference else None
        summary[name] = {
            method: {
                "dice": None if truth is None else dice(mask, truth),
                "litres": float(mask.sum() * litres),
            }
            for method, mask in found.items()
        }
        if truth is not None:
            summary[name]["reference"] = {"dice": 1.0, "litres": float(truth.sum() * litres)}
        images[name] = (data, found, truth)
    return summary, images


def mosaic(images: dict, path: Path) -> None:
    """Three orthogonal centre slices per scan, the masks' outlines over the T1w."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"morphology": "r", "model": "y"}
    fig, axes = plt.subplots(len(images), 3, figsize=(12, 4 * len(images)), squeeze=False)
    for row, (name, (data, found, truth)) in enumerate(images.items()):
        centre = [s // 2 for s in data.shape]
        cuts = [np.s_[centre[0], :, :], np.s_[:, centre[1], :], np.s_[:, :, centre[2]]]
        for col, cut in enumerate(cuts):
            ax = axes[row, col]
            ax.imshow(np.rot90(data[cut]), cmap="gray")
            outlines = {**found, **({"reference": truth} if truth is not None else {})}
            for method, mask in outlines.items():
                ax.contour(np.rot90(mask[cut].astype(float)), [0.5],
                           colors=colours.get(method, "c"), linewidths=0.8)  # fmt: skip
            ax.set_axis_off()
        axes[row, 0].set_title(f"{name}: morphology red, model yellow, reference cyan")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def tables(rows: list[dict], real: dict) -> str:
    methods = [m for m in ("morphology", "model") if any(m in r for r in rows)]
    lines = ["| held-out head (2 mm T1w) | scanner style | " + " | ".join(methods) + " |"]
    lines.append("|---|---|" + "---|" * len(methods))
    for r in rows:
        scores = " | ".join(f"{r[m]:.3f}" for m in methods)
        lines.append(f"| {r['source']} {r['seed']} | {r['style']} | {scores} |")
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        cells = " | ".join(
            f"{np.median([r[m] for r in mine]):.3f} ({min(r[m] for r in mine):.3f})"
            for m in methods
        )
        lines.append(f"| **{source}: median (worst)** | | {cells} |")
    lines += [
        "",
        "| real T1w | method | Dice with the reference brain | brain (L) |",
        "|---|---|---|---|",
    ]
    for scan, found in real.items():
        for method, values in found.items():
            score = "–" if values["dice"] is None else f"{values['dice']:.3f}"
            lines.append(f"| {scan} | {method} | {score} | {values['litres']:.2f} |")
    return "\n".join(lines)


def record(bundle, rows: list[dict], real: dict) -> None:
    """The held-out Dice and the real-scan check into the bundle's metadata and card."""
    from bids_synth.models.card import record_evaluation

    scored = {scan: found for scan, found in real.items() if found["model"]["dice"] is not None}
    passed = bool(scored) and all(
        found["model"]["dice"] >= found["morphology"]["dice"] for found in scored.values()
    )
    summary = "; ".join(
        f"{scan}: Dice {found['model']['dice']:.3f} (morphology {found['morphology']['dice']:.3f})"
        for scan, found in scored.items()
    )
    metrics = [
        {
            "name": "Dice",
            "value": float(np.median([r["model"] for r in rows if r["source"] == source])),
            "units": "",
            "dataset": f"median of {sum(r['source'] == source for r in rows)} held-out {source} "
            "heads, T1w of random scanner styles, 2 mm",
        }
        for source in sorted({r["source"] for r in rows})
    ]
    record_evaluation(
        bundle.path,
        metrics,
        checks={
            "real_scans": {
                "passed": passed,
                "summary": summary + " (goal: at least the morphological rule's Dice on each)",
            }
        },
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="brainmask bundle folder (default: morphology only)")
    parser.add_argument("--subjects", type=int, default=4, help="held-out heads per anatomy")
    parser.add_argument("--record", action="store_true", help="write the check into the bundle")
    parser.add_argument("--append", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    bundle = None
    if args.bundle:
        from bids_synth.models import find_bundle

        bundle = find_bundle(args.bundle)
    RESULTS.mkdir(exist_ok=True)
    rows = held_out(HELD_OUT_SOURCES, args.subjects, bundle)
    real, images = real_scans(bundle)
    mosaic(images, RESULTS / "brainmask_real_mosaic.png")
    (RESULTS / "brainmask.json").write_text(json.dumps({"held_out": rows, "real": real}, indent=2))
    body = tables(rows, real)
    print(body)
    if args.record and bundle is not None:
        record(bundle, rows, real)
    if args.append:
        from harness import append_section

        append_section(
            "Brain masks", "python benchmarks/bench_brainmask.py " + " ".join(argv or sys.argv[1:]),
            body,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
