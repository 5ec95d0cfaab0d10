"""Contrast translation on real images: the co-registered SPM templates avg152T1 → avg152T2/PD.

The templates (2 mm, averages of the same 152 ICBM subjects, co-registered) are the closest thing
in the reference data to a real same-subject T1w/T2w/PD set. Each translate bundle whose input is
T1w and whose output is T2w or PD is applied to avg152T1 as the app applies it
(:func:`~bids_synth.models.prediction.predict_on_grid`: resampled to the bundle's 1 mm grid and
back; head mask from SPM's TPM); the baseline is the T1w inverted inside the head and histogram-matched to the real target
(quantile mapping inside the head: it borrows the target's histogram, an advantage no model has).
Prediction and truth are each divided by their 99.5th percentile in the head and scored in the
brain (SPM TPM grey + white matter + CSF > 0.5): PSNR with data range 1, SSIM.

There is no real FLAIR in the reference data: T1w → FLAIR bundles are applied to avg152T1 and
shown, and their tissue contrast is reported (mean in the TPM's grey matter, white matter and CSF
> 0.7, relative to white matter; a FLAIR has its CSF nulled and grey matter above white matter).

The real Colin27 T1 (1 mm, one person) goes through every bundle too, as a mosaic to look at.

No shipped model trained on these templates. The ``mni2009a`` label source of the 2.5D recipes is
the nonlinear ICBM152 2009a average (the same population); its T2w/PD intensities are not in the
reference data and were never seen.

    python benchmarks/bench_translate_spm.py [--bundles ID ...] [--append]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from harness import mosaic

from bids_synth.metrics.image import psnr, ssim

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"T2w": "avg152T2", "PD": "avg152PD"}  # BIDS suffix → template


def _load(name: str):
    import nibabel as nib

    from bids_synth.refdata import reference_file

    image = nib.load(reference_file(f"spm/{name}.nii.gz"))
    return np.asanyarray(image.dataobj, dtype=np.float32), image.affine


def _tpm(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """SPM's TPM on the templates' grid, ``(6, *shape)``: GM, WM, CSF, bone, soft tissue, air."""
    import nibabel as nib

    from bids_synth.refdata import reference_file
    from bids_synth.resampling import resample_onto

    tpm = nib.load(reference_file("spm/TPM.nii.gz"))
    classes = np.asanyarray(tpm.dataobj, dtype=np.float32)
    return np.stack([resample_onto(classes[..., k], tpm.affine, shape, affine) for k in range(6)])


def _masks(tpm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(head, brain) from the TPM: not background (class 6) > 0.5, and GM + WM + CSF > 0.5."""
    head = 1.0 - tpm[5] > 0.5
    return head, (tpm[:3].sum(0) > 0.5) & head


def _unit(image: np.ndarray, head: np.ndarray) -> np.ndarray:
    return image / max(float(np.percentile(image[head], 99.5)), 1e-6)


def inverted_matched(t1w: np.ndarray, target: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The T1w inverted inside ``head`` and quantile-mapped onto ``target``'s histogram there."""
    inverted = np.where(head, t1w[head].max() - t1w, 0.0)
    ranks = np.argsort(np.argsort(inverted[head], kind="stable"), kind="stable")
    quantiles = np.sort(target[head])
    out = np.zeros_like(t1w)
    out[head] = quantiles[ranks]
    return out


def _bundles_for(target: str, refs: list[str] | None) -> list:
    """The T1w → ``target`` translate bundles (``refs`` when given, else every installed one)."""
    from bids_synth.models import find_bundle, list_bundles

    bundles = [find_bundle(ref) for ref in refs] if refs else list_bundles()
    return [
        b
        for b in bundles
        if b.task == "translate"
        and b.meta["input"]["suffixes"] == ["T1w"]
        and b.meta["output"]["suffix"] == target
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", nargs="+", help="translate bundles (default: all installed)")
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    from bids_synth.models.prediction import predict_on_grid

    torch.set_num_threads(1)
    t1w, affine = _load("avg152T1")
    tpm = _tpm(t1w.shape, affine)
    head, brain = _masks(tpm)
    lines = [
        "| avg152T1 → | method | PSNR (dB) | SSIM | seconds |",
        "|---|---|---|---|---|",
    ]
    for target, template in TARGETS.items():
        truth, _ = _load(template)
        methods = {"inverted T1w, target histogram (baseline)": (
            inverted_matched(t1w, truth, head), 0.0)}  # fmt: skip
        for bundle in _bundles_for(target, args.bundles):
            started = time.perf_counter()
            predicted, _ = predict_on_grid(bundle, [t1w], affine, device="cpu", mask=head)
            methods[bundle.ref] = (np.where(head, predicted, 0.0), time.perf_counter() - started)
        unit_truth = _unit(truth, head)
        shown = {"avg152T1": _unit(t1w, head), f"{template} (truth)": unit_truth}
        for name, (image, seconds) in methods.items():
            unit = _unit(image, head)
            shown[name.split(" (")[0]] = unit
            lines.append(
                f"| {target} | {name} | {psnr(unit_truth, unit, brain, data_range=1.0):.2f} | "
                f"{ssim(unit_truth, unit, brain, data_range=1.0):.3f} | "
                f"{seconds:.1f} |".replace("| 0.0 |", "| – |")
            )
        RESULTS.mkdir(exist_ok=True)
        mosaic(shown, RESULTS / f"translate_spm_{target}_mosaic.png",
               windows=dict.fromkeys(shown, (0.0, 1.0)))  # fmt: skip
    flair = _flair_contrast(t1w, affine, head, tpm, args.bundles)
    body = "\n".join(
        [
            "Real co-registered SPM templates (2 mm); PSNR (data range 1) and SSIM in the brain "
            "(TPM GM + WM + CSF > 0.5), prediction and truth each divided by their 99.5th "
            "percentile in the head:",
            "",
            *lines,
            "",
            "Mosaics: `benchmarks/results/translate_spm_T2w_mosaic.png`, "
            "`translate_spm_PD_mosaic.png`.",
            *flair,
            *_colin27_mosaic(args.bundles),
        ]
    )
    print(body)
    if args.append:
        from harness import append_section

        append_section(
            "Contrast translation on the real SPM templates",
            shlex.join(["python", *sys.argv]),
            body,
        )
    return 0


def _flair_contrast(t1w, affine, head, tpm, refs) -> list[str]:
    """T1w → FLAIR bundles on avg152T1: a mosaic and the tissue means relative to white matter."""
    from bids_synth.models.prediction import predict_on_grid

    bundles = _bundles_for("FLAIR", refs)
    if not bundles:
        return []
    tissues = {"GM": tpm[0] > 0.7, "WM": tpm[1] > 0.7, "CSF": tpm[2] > 0.7}
    lines = [
        "",
        "No real FLAIR: T1w → FLAIR on avg152T1, tissue means relative to white matter (TPM > 0.7):",
        "",
        "| bundle | GM / WM | CSF / WM | seconds |",
        "|---|---|---|---|",
    ]
    shown = {"avg152T1": _unit(t1w, head)}
    for bundle in bundles:
        started = time.perf_counter()
        predicted, _ = predict_on_grid(bundle, [t1w], affine, device="cpu", mask=head)
        seconds = time.perf_counter() - started
        means = {name: float(predicted[mask].mean()) for name, mask in tissues.items()}
        lines.append(
            f"| {bundle.ref} | {means['GM'] / means['WM']:.2f} | {means['CSF'] / means['WM']:.2f} "
            f"| {seconds:.1f} |"
        )
        shown[bundle.ref] = _unit(np.where(head, predicted, 0.0), head)
    mosaic(shown, RESULTS / "translate_spm_FLAIR_mosaic.png",
           windows=dict.fromkeys(shown, (0.0, 1.0)))  # fmt: skip
    return [*lines, "", "Mosaic: `benchmarks/results/translate_spm_FLAIR_mosaic.png`."]


def _colin27_mosaic(refs) -> list[str]:
    """Every T1w-input translate bundle on the real Colin27 T1 (1 mm, one person: sharper than
    the templates), each image divided by its 99.5th head percentile: a mosaic to look at."""
    from bench_denoise import load_colin27

    from bids_synth.models.prediction import predict_mr_in_head

    colin = load_colin27()
    t1w, head = colin["clean"], colin["head"]
    shown = {"Colin27 T1w": _unit(t1w, head)}
    for target in ("T2w", "PD", "FLAIR"):
        for bundle in _bundles_for(target, refs):
            predicted, _ = predict_mr_in_head(bundle, [t1w], colin["affine"], head, device="cpu")
            shown[bundle.ref] = _unit(predicted, head)
    mosaic(shown, RESULTS / "translate_colin27_mosaic.png",
           windows=dict.fromkeys(shown, (0.0, 1.0)))  # fmt: skip
    return ["", "The real Colin27 T1 through every bundle (no truth; looked at): "
            "`benchmarks/results/translate_colin27_mosaic.png`."]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
