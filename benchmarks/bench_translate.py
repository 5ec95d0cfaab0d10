"""Contrast translation benchmark: a translate bundle on held-out simulated heads.

Held-out heads are drawn from the real-anatomy ``colin27`` label maps, which no shipped model saw
(the default bundles trained on ``mni2009a``, ``tpm`` and ``phantom`` heads). The source T1w is
preprocessed as the app does (head mask, N4, :func:`bench_sct.preprocess`) and translated; the
truth is the target contrast's clean image of the same head. Both are divided by their 99.5th
percentile in the head (a synthetic contrast has no absolute scale) and scored inside the head
mask (PSNR with data range 1, SSIM). The rescaled source itself is scored too, as the floor.

    python benchmarks/bench_translate.py --bundle translate-t1w-t2w-slab [--subjects 3] [--append]
        [--record]

``--record`` writes the model's PSNR and SSIM into the bundle's card (weights untouched).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from bench_sct import HELD_OUT_SEED, _ants, preprocess
from harness import mosaic

from bids_synth.metrics.image import psnr, ssim

RESULTS = Path(__file__).resolve().parent / "results"


def _unit_scale(image: np.ndarray, head: np.ndarray) -> np.ndarray:
    return image / max(float(np.percentile(image[head], 99.5)), 1e-6)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", required=True, help="translate bundle: folder, id or id@version"
    )
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--spacing", type=float, default=1.0, help="simulation grid (mm)")
    parser.add_argument("--label-source", default="colin27", help="held-out anatomy")
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--record", action="store_true", help="write the model's row into the card")
    args = parser.parse_args(argv)
    import torch

    from bids_synth.models import find_bundle
    from bids_synth.models.prediction import predict_on_grid
    from bids_synth.simulate import simulate_subject

    torch.set_num_threads(1)
    bundle = find_bundle(args.bundle)
    source, target = bundle.meta["input"]["suffixes"][0], bundle.meta["output"]["suffix"]
    rows = []
    for index in range(args.subjects):
        seed = HELD_OUT_SEED + index
        draw = simulate_subject(
            seed, label_source=args.label_source, spacing=args.spacing, contrasts=(source, target)
        )
        image, head_image, _ = preprocess(_ants(draw.images[source].numpy(), draw.affine))
        head = head_image.numpy() > 0.5
        started = time.perf_counter()
        predicted, _ = predict_on_grid(
            bundle, [image.numpy()], np.diag([args.spacing] * 3 + [1.0]), device="cpu", mask=head
        )
        seconds = time.perf_counter() - started
        truth = _unit_scale(draw.clean[target].numpy(), head)
        scored = {"model": _unit_scale(predicted, head), f"{source} (floor)": _unit_scale(
            image.numpy(), head)}  # fmt: skip
        for name, volume in scored.items():
            rows.append((name, psnr(truth, volume, head, data_range=1.0),
                         ssim(truth, volume, head, data_range=1.0), seconds))  # fmt: skip
        print(f"seed {seed}: " + ", ".join(f"{r[0]} {r[1]:.2f} dB {r[2]:.3f}" for r in rows[-2:]))
        if index == 0:
            RESULTS.mkdir(exist_ok=True)
            shown = {
                f"{source} (input)": scored[f"{source} (floor)"],
                f"{target} synthetic": np.where(head, scored["model"], 0),
                f"{target} truth": truth,
            }
            mosaic(shown, RESULTS / f"translate_{source}_{target}_mosaic.png",
                   windows=dict.fromkeys(shown, (0.0, 1.0)))  # fmt: skip
    lines = [
        f"Bundle {bundle.ref} ({source} → {target}), {args.subjects} held-out {args.label_source} "
        f"heads at {args.spacing:g} mm; PSNR (data range 1) and SSIM in the head, both images "
        "divided by their 99.5th percentile:",
        "",
        "| image scored against the truth | PSNR (dB) | SSIM | seconds / image |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(r[0] for r in rows):
        mine = np.array([r[1:] for r in rows if r[0] == name])
        p, s, t = mine.mean(axis=0)
        seconds = f"{t:.1f}" if name == "model" else "–"
        lines.append(f"| {name} | {p:.2f} ± {mine[:, 0].std():.2f} | {s:.3f} | {seconds} |")
    lines += ["", f"Mosaic: `benchmarks/results/translate_{source}_{target}_mosaic.png`."]
    body = "\n".join(lines)
    print(body)
    if args.record:
        record(bundle, np.array([r[1:3] for r in rows if r[0] == "model"]), args)
    if args.append:
        from harness import append_section

        append_section(
            f"Contrast translation {source} → {target}", shlex.join(["python", *sys.argv]), body
        )
    return 0


def record(bundle, scores: np.ndarray, args) -> None:
    """The model's mean PSNR and SSIM over the held-out heads, into the bundle's card."""
    from bids_synth.models.card import record_evaluation

    dataset = (f"{args.subjects} held-out {args.label_source} heads (anatomies never trained on), "
               f"{args.spacing:g} mm, in the head, both images / 99.5th percentile, data range 1")  # fmt: skip
    psnr_mean, ssim_mean = scores.mean(axis=0)
    record_evaluation(bundle.path, [
        {"name": "PSNR", "value": round(float(psnr_mean), 2), "units": "dB", "dataset": dataset},
        {"name": "SSIM", "value": round(float(ssim_mean), 3), "units": "", "dataset": dataset},
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
