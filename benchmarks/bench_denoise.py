"""Denoising benchmark: model vs self (noise2self) vs NLM at 3/5/7/9 % Rician noise.

Held-out simulated subjects (seeds 90001…, never used for training or tuning) drawn from the
real-anatomy ``colin27`` label maps, which no shipped model saw (the default bundle trained on
``tpm`` + ``phantom`` heads; needs the reference data). Each noise level is
the head model's own acquisition with that σ (fraction of the reference tissue signal); the
truth is the same acquisition without noise. PSNR/SSIM inside the head mask, run time per image.
Prints a markdown table; ``--append`` adds it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from harness import mosaic

from bids_synth.metrics import psnr, ssim
from bids_synth.synthesis import denoising

RESULTS = Path(__file__).resolve().parent / "results"


def denoise_all(noisy, mask, affine, args, seed, bundle) -> dict:
    """``{method: (denoised, seconds)}`` for the input and each of ``args.methods``."""
    results = {"input": (noisy, 0.0)}
    for method in args.methods:
        started = time.perf_counter()
        if method == "model":
            out, _ = denoising.model_denoise(noisy, mask, bundle, affine)
        elif method == "self":
            out, _ = denoising.self_supervised_denoise(
                noisy, mask, seed=seed, steps=args.self_steps
            )
        else:
            out = denoising.nlm_denoise(noisy, mask, (args.spacing,) * 3)
        results[method] = (out, time.perf_counter() - started)
    return results


def colin27_with_noise(args, bundle, level: float = 5.0) -> str:
    """The real Colin27 T1 with ``level`` % Rician noise added, through every method: PSNR/SSIM
    against the original (itself an average of 27 scans, nearly noise-free) and a mosaic."""
    import nibabel as nib

    from bids_synth.refdata import reference_file

    image = nib.load(reference_file("ch2.nii.gz"))
    clean = np.asanyarray(image.dataobj, dtype=np.float32)
    brain = np.asanyarray(nib.load(reference_file("ch2bet.nii.gz")).dataobj) > 0
    head = clean > 0.1 * np.percentile(clean[brain], 50)
    reference = float(np.median(clean[brain][clean[brain] > np.percentile(clean[brain], 75)]))
    rng = np.random.default_rng(27)
    sigma = level / 100 * reference
    noisy = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
    noisy = noisy.astype(np.float32)
    results = denoise_all(noisy, head, image.affine,
                          argparse.Namespace(**{**vars(args), "spacing": 1.0}), 27,
                          bundle)  # fmt: skip
    lines = [f"Real Colin27 T1 (1 mm) with {level:g} % Rician noise added; scored against the "
             "original in the head:", "", "| method | PSNR (dB) | SSIM | seconds |",
             "|---|---|---|---|"]  # fmt: skip
    for method, (out, seconds) in results.items():
        lines.append(f"| {method} | {psnr(clean, out, head):.2f} | {ssim(clean, out, head):.4f} | "
                     f"{seconds:.1f} |")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "denoise_colin27_mosaic.png"
    mosaic({"original": clean, **{m: out for m, (out, _) in results.items()}}, path)
    lines += ["", f"Mosaic: `benchmarks/results/{path.name}`."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--spacing", type=float, default=2.0, help="simulation grid (mm)")
    parser.add_argument("--levels", type=float, nargs="+", default=[3, 5, 7, 9], help="noise %%")
    parser.add_argument("--methods", nargs="+", default=["model", "self", "nlm"])
    parser.add_argument("--model", default="denoise-red", help="bundle for the model method")
    parser.add_argument("--label-source", default="colin27", help="held-out anatomy")
    parser.add_argument("--real", action="store_true", help="also the real Colin27 T1 + noise")
    parser.add_argument("--self-steps", type=int, default=300)
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from bids_synth.simulate import simulate_subject

    bundle = None
    if "model" in args.methods:
        from bids_synth.models import find_bundle

        bundle = find_bundle(args.model)
    rows = {}
    for index in range(args.subjects):
        seed = 90001 + index
        for level in args.levels:
            try:
                draw = simulate_subject(seed, label_source=args.label_source, spacing=args.spacing,
                                        contrasts=("T1w",), noise=level / 100,
                                        resolution=args.spacing)  # fmt: skip
            except (FileNotFoundError, OSError) as exc:
                print(f"skipped: real-anatomy label maps unavailable ({exc})")
                return 0
            noisy = draw.acquired["T1w"][0].numpy().astype(np.float32)
            truth = draw.noise_free["T1w"][0].numpy().astype(np.float32)
            mask = draw.head_mask.numpy() > 0
            results = denoise_all(noisy, mask, draw.acquired["T1w"][1], args, seed, bundle)
            for method, (out, seconds) in results.items():
                rows.setdefault((level, method), []).append(
                    (psnr(truth, out, mask), ssim(truth, out, mask), seconds)
                )
            print(
                f"subject {seed} {level:g} %: "
                + ", ".join(f"{m} {rows[(level, m)][-1][0]:.2f} dB" for m in results),
                flush=True,
            )
    lines = ["| noise | method | PSNR (dB) | SSIM | seconds / image |", "|---|---|---|---|---|"]
    for (level, method), values in rows.items():
        p, s, t = np.mean(values, axis=0)
        lines.append(f"| {level:g} % | {method} | {p:.2f} | {s:.4f} | {t:.1f} |")
    body = "\n".join(lines)
    if args.real:
        body += "\n\n" + colin27_with_noise(args, bundle)
    print(body)
    if args.append:
        from harness import append_section

        append_section(f"Denoising (model vs self vs NLM, held-out {args.label_source} heads)",
                       shlex.join(["python", *sys.argv]), body)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
