"""Denoising benchmark: model vs self (noise2self) vs NLM at 3/5/7/9 % Rician noise.

Held-out simulated subjects (seeds 90001…, never used for training or tuning) drawn from
real-anatomy label maps (``label_source="tpm"``, needs the reference data). Each noise level is
the head model's own acquisition with that σ (fraction of the reference tissue signal); the
truth is the same acquisition without noise. PSNR/SSIM inside the head mask, run time per image.
Prints a markdown table; ``--append`` adds it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from bids_synth.metrics import psnr, ssim
from bids_synth.synthesis import denoising


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--spacing", type=float, default=2.0, help="simulation grid (mm)")
    parser.add_argument("--levels", type=float, nargs="+", default=[3, 5, 7, 9], help="noise %%")
    parser.add_argument("--methods", nargs="+", default=["model", "self", "nlm"])
    parser.add_argument("--model", default="denoise-red-t1w", help="bundle for the model method")
    parser.add_argument("--self-steps", type=int, default=300)
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from bids_synth.simulate import simulate_subject

    network = meta = None
    if "model" in args.methods:
        from bids_synth.models import find_bundle

        bundle = find_bundle(args.model)
        network, meta = bundle.load_network(), bundle.meta
    rows = {}
    for index in range(args.subjects):
        seed = 90001 + index
        for level in args.levels:
            try:
                draw = simulate_subject(seed, label_source="tpm", spacing=args.spacing,
                                        contrasts=("T1w",), noise=level / 100,
                                        resolution=args.spacing)  # fmt: skip
            except (FileNotFoundError, OSError) as exc:
                print(f"skipped: real-anatomy label maps unavailable ({exc})")
                return 0
            noisy = draw.acquired["T1w"][0].numpy().astype(np.float32)
            truth = draw.noise_free["T1w"][0].numpy().astype(np.float32)
            mask = draw.head_mask.numpy() > 0
            results = {"input": (noisy, 0.0)}
            for method in args.methods:
                started = time.perf_counter()
                if method == "model":
                    out, _ = denoising.model_denoise(noisy, mask, network, meta)
                elif method == "self":
                    out, _ = denoising.self_supervised_denoise(noisy, mask, seed=seed,
                                                               steps=args.self_steps)  # fmt: skip
                else:
                    out = denoising.nlm_denoise(noisy, mask, (args.spacing,) * 3)
                results[method] = (out, time.perf_counter() - started)
            for method, (out, seconds) in results.items():
                rows.setdefault((level, method), []).append(
                    (psnr(truth, out, mask), ssim(truth, out, mask), seconds)
                )
            print(f"subject {seed} {level:g} %: " + ", ".join(
                f"{m} {rows[(level, m)][-1][0]:.2f} dB" for m in results), flush=True)
    lines = ["| noise | method | PSNR (dB) | SSIM | seconds / image |", "|---|---|---|---|---|"]
    for (level, method), values in rows.items():
        p, s, t = np.mean(values, axis=0)
        lines.append(f"| {level:g} % | {method} | {p:.2f} | {s:.4f} | {t:.1f} |")
    body = "\n".join(lines)
    print(body)
    if args.append:
        from harness import append_section

        append_section("Denoising (model vs self vs NLM, held-out tpm heads)",
                       shlex.join(["python", *sys.argv]), body)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
