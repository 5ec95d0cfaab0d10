"""Synthetic CT benchmark: model vs bulk vs atlas on held-out simulated heads, and Colin27.

Held-out subjects are drawn from the real-anatomy ``colin27`` label maps, which no shipped model
saw (the default bundle trained on ``tpm`` + ``phantom`` heads; the atlases use ``phantom``); each is preprocessed like the app does
(head mask, N4, brain mask) and scored with the SynthRAD metrics against its simulated acquired CT
inside the head mask. The real Colin27 T1 goes through the same methods and its brain/bone HU are
compared with the real head CT of the reference data (another person: distributions, not voxels).

    python benchmarks/bench_sct.py [--subjects 3] [--spacing 2] [--bundle DIR] [--append]
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


def synthesize(t1w, head, brain, atlases, bundle) -> dict[str, np.ndarray]:
    out = {"bulk": sct_methods.bulk_ct(t1w, head, brain).numpy()}
    out["atlas"] = sct_methods.atlas_ct(t1w, head, atlases).numpy()
    if bundle is not None:
        from bids_synth.synthesis.bundle_inference import predict_on_grid

        affine = np.diag([*t1w.spacing, 1.0])
        out["model"], _ = predict_on_grid(
            bundle, [t1w.numpy()], affine, device="cpu", mask=head.numpy() > 0.5
        )
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


def held_out(args, atlases, bundle) -> tuple[list[dict], dict]:
    from bids_synth.simulate import simulate_subject

    rows, example = [], None
    for index in range(args.subjects):
        seed = HELD_OUT_SEED + index
        draw = simulate_subject(
            seed, label_source=args.label_source, spacing=args.spacing, contrasts=("T1w", "CT")
        )
        t1w, head, brain = preprocess(_ants(draw.images["T1w"].numpy(), draw.affine))
        started = time.perf_counter()
        synthetic = synthesize(t1w, head, brain, atlases, bundle)
        ct = draw.images["CT"].numpy()
        body = draw.head_mask.numpy().astype(bool)
        for method, hu in synthetic.items():
            scores = ct_metrics(ct, hu, body)
            rows.append(
                {"seed": seed, "method": method, **{k: float(v) for k, v in scores.items()}}
            )
            print(
                f"seed {seed} {method}: MAE {scores['mae']:.1f} HU, PSNR {scores['psnr']:.2f} dB, "
                f"SSIM {scores['ssim']:.3f}",
                flush=True,
            )
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        if example is None:
            example = {"T1w": t1w.numpy(), "real CT (simulated)": ct, **synthetic}
    return rows, example


def colin27(atlases, bundle) -> tuple[dict, dict]:
    from bids_synth.refdata import reference_file

    t1w, head, brain = preprocess(ants.image_read(str(reference_file("ch2.nii.gz"))))
    synthetic = synthesize(t1w, head, brain, atlases, bundle)
    brain_voxels = brain.numpy() > 0.5
    summary = {
        m: sct_methods.ct_qc(hu, head.numpy() > 0.5, brain_voxels) for m, hu in synthetic.items()
    }
    real = ants.image_read(str(reference_file("ct_head_invesalius0051.nii.gz")))
    real_head = head_mask(real, modality="CT")
    depth = ants.iMath(real_head, "MaurerDistance").numpy()  # negative inside the mask
    hu = real.numpy()
    inside = real_head.numpy() > 0.5
    real_brain = inside & (depth <= -REAL_CT_BRAIN_DEPTH_MM) & (hu > -20) & (hu < 100)
    summary["real CT (InVesalius 0051)"] = sct_methods.ct_qc(hu, inside, real_brain)
    return summary, {"T1w": t1w.numpy(), **synthetic}


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
    lines = ["| method | MAE (HU) | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        cell = {
            k: (np.mean([r[k] for r in mine]), np.std([r[k] for r in mine]))
            for k in ("mae", "psnr", "ssim")
        }
        lines.append(
            f"| {method} | {cell['mae'][0]:.1f} ± {cell['mae'][1]:.1f} | "
            f"{cell['psnr'][0]:.2f} ± {cell['psnr'][1]:.2f} | "
            f"{cell['ssim'][0]:.3f} ± {cell['ssim'][1]:.3f} |"
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
    parser.add_argument("--append", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    bundle = None
    if args.bundle:
        from bids_synth.models import Bundle

        bundle = Bundle.read(args.bundle)
    RESULTS.mkdir(exist_ok=True)
    atlases = head_model_atlases(args.atlas_seeds, args.spacing)
    rows, example = held_out(args, atlases, bundle)
    if example is not None:
        mosaic(example, RESULTS / "sct_held_out_mosaic.png")
    colin, colin_images = colin27(atlases, bundle)
    mosaic(colin_images, RESULTS / "sct_colin27_mosaic.png")
    (RESULTS / "sct.json").write_text(json.dumps({"held_out": rows, "colin27": colin}, indent=2))
    body = (
        f"Held-out {args.label_source} heads ({args.subjects}, {args.spacing} mm):\n\n{table(rows)}"
        if rows
        else ""
    )
    body += "\n\nColin27 T1 → sCT vs the real head CT (another person):\n\n"
    body += "| | mean HU brain | mean HU bone (≥300) | outside [−1024, 3000] |\n|---|---|---|---|\n"
    for name, qc in colin.items():
        brain = "–" if qc["MeanHUBrain"] is None else f"{qc['MeanHUBrain']:.1f}"
        bone = "–" if qc["MeanHUBone"] is None else f"{qc['MeanHUBone']:.0f}"
        body += f"| {name} | {brain} | {bone} | {100 * qc['FractionOutsideRange']:.2f} % |\n"
    print(body)
    if args.append:
        sys.path.insert(0, str(Path(__file__).parent))
        from harness import append_section

        append_section(
            "Synthetic CT", "python benchmarks/bench_sct.py " + " ".join(argv or sys.argv[1:]), body
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
