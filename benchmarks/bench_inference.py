"""Sliding-window inference on a 1 mm head: bids-synth ``predict_volume`` vs MONAI.

Every method runs in its own subprocess (so the peak resident memory, ``ru_maxrss``, is its
own) on the same volume with the same network weights (the default U-Net, seeded), ROI, overlap,
Gaussian blending and patch batch; outputs are compared with MONAI fp32. Usage::

    python benchmarks/bench_inference.py [--shape 182 218 182] [--patch 96] [--overlap 0.5]
                                         [--batch 4] [--threads N] [--repeats 1]

The head is Colin27 (``ch2.nii.gz`` from the reference data) padded to the shape when available,
else a smooth synthetic head. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("monai-fp32", "monai-bf16", "ours-fp32", "ours-bf16")


def head_volume(shape: tuple[int, ...]) -> np.ndarray:
    """Colin27 T1 (or a synthetic head) in a ``shape`` box, scaled to [0, 1]."""
    from bids_synth.refdata import reference_file

    try:
        import nibabel as nib

        data = np.asanyarray(nib.load(reference_file("ch2.nii.gz")).dataobj, dtype=np.float32)
    except FileNotFoundError:
        grid = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
        data = (sum(g**2 for g in grid) < 0.8).astype(np.float32) * (1 + 0.3 * np.sin(8 * grid[0]))
    out = np.zeros(shape, np.float32)
    crop = tuple(slice(0, min(a, b)) for a, b in zip(shape, data.shape))
    out[crop] = data[crop]
    return out / out.max()


def network():
    import torch

    from bids_synth.nn.factory import build_network

    torch.manual_seed(0)
    return build_network("unet").eval()  # default U-Net: channels 16-32-64-128, instance norm


def run_method(method: str, volume_path: Path, output_path: Path, args) -> dict:
    """Run one method in this process; save its output; return time and peak memory."""
    import torch

    torch.set_num_threads(args.threads)
    volume = np.load(volume_path)
    net = network()
    roi = (args.patch,) * 3
    if method.startswith("monai"):
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(volume)[None, None]
        amp = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if method.endswith("bf16")
            else torch.autocast("cpu", enabled=False)
        )

        def predict():
            with torch.inference_mode(), amp:
                return (
                    sliding_window_inference(
                        x, roi, args.batch, net, overlap=args.overlap, mode="gaussian"
                    )[0, 0]
                    .float()
                    .numpy()
                )
    else:
        from bids_synth.nn.inference import predict_volume

        def predict():
            return predict_volume(
                net,
                volume,
                patch=roi,
                overlap=args.overlap,
                batch_size=args.batch,
                device="cpu",
                amp="bf16" if method.endswith("bf16") else "off",
            )[0]

    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = predict()
        times.append(time.perf_counter() - started)
    np.save(output_path, result.astype(np.float32))
    return {
        "seconds": min(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", nargs=3, type=int, default=[182, 218, 182])
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--method", choices=METHODS, help=argparse.SUPPRESS
    )  # internal: one method, in a subprocess
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(
            json.dumps(
                run_method(
                    args.method, args.work / "volume.npy", args.work / f"{args.method}.npy", args
                )
            )
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "volume.npy", head_volume(tuple(args.shape)))
        results = {}
        for method in args.methods:
            command = [
                sys.executable,
                __file__,
                "--method",
                method,
                "--work",
                str(work),
                *sys.argv[1:],
            ]
            results[method] = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout
            )
            print(f"{method}: {results[method]}", file=sys.stderr)
        reference = np.load(work / f"{args.methods[0]}.npy")
        output_range = (float(reference.min()), float(reference.max()))
        for method in args.methods:
            results[method]["max_abs_diff"] = float(
                np.abs(np.load(work / f"{method}.npy") - reference).max()
            )
    base = results[args.methods[0]]["seconds"]
    print(
        f"Volume {tuple(args.shape)}, default U-Net, ROI {args.patch}³, overlap {args.overlap}, "
        f"Gaussian blending, patch batch {args.batch}, {args.threads} threads, output range "
        f"[{output_range[0]:.3g}, {output_range[1]:.3g}]; "
        f"{platform.processor() or platform.machine()}, torch {__import__('torch').__version__}\n"
    )
    print(
        f"| method | seconds | speed-up vs {args.methods[0]} | peak RSS (MiB) | max abs diff vs {args.methods[0]} |"
    )
    print("|---|---|---|---|---|")
    for method, r in results.items():
        print(
            f"| {method} | {r['seconds']:.1f} | {base / r['seconds']:.2f}× | {r['peak_rss_mib']:.0f} | {r['max_abs_diff']:.2e} |"
        )


if __name__ == "__main__":
    main()
