"""Network families on a CPU: training voxels per second and whole-head inference time.

    python benchmarks/bench_families.py [--threads 1] [--steps 3] [--append]

Training: forward + backward + Adam of each family on random batches of its training shape
(one warm-up step, then ``--steps`` timed), fp32 and bf16 autocast; the 3D U-Net of the earlier
shipped sct bundle (16–128 channels, batch 2 of 48³) is the baseline. Also timed: drawing one
contrast-randomised slab batch (``bids_synth.nn.slabs.RandomisedSlabs``) from a simulated head.
Inference: the 2.5D network of the ``sct-t1w-slab`` recipe on a 1 mm head box (160×200×180, the
size of the Colin27 head), three orientations fused, fp32 and bf16.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bids_synth.nn.factory import build_network
from bids_synth.nn.slabs import predict_slabs
from bids_synth.nn.trainers import RegressionTrainer
from bids_synth.training.recipes import RECIPES

HEAD_BOX = (160, 200, 180)


def _families():
    slab = RECIPES["sct-t1w-slab"]
    return [  # label, network kwargs, batch shape
        (
            "3D U-Net 16–128, 48³ × 2 (earlier sct bundle)",
            {"channels": [16, 32, 64, 128]},
            (2, 1, 48, 48, 48),
        ),
        ("3D U-Net 16–128, 64³ × 1", {"channels": [16, 32, 64, 128]}, (1, 1, 64, 64, 64)),
        (
            f"2.5D U-Net {slab.channels[0]}–{slab.channels[-1]}, {slab.slices} slices, "
            f"{slab.size}² × {slab.batch_size} (sct-t1w-slab)",
            slab.architecture()["kwargs"],
            (slab.batch_size, slab.slices, slab.size, slab.size),
        ),
    ]


def train_seconds(kwargs: dict, shape: tuple, amp: str, steps: int) -> float:
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    kwargs.setdefault("in_channels", shape[1])
    net = build_network("unet", **kwargs)
    trainer = RegressionTrainer(
        {"generator": net}, lr=1e-4, device=torch.device("cpu"), amp=amp, seed=0, ssim_weight=0.0
    )
    out_shape = (shape[0], 1, *shape[2:])
    batch = {
        "source": torch.rand(shape),
        "target": torch.rand(out_shape),
        "mask": torch.ones(out_shape),
    }
    trainer.train_step(batch)
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    return (time.perf_counter() - started) / steps


def batch_seconds(count: int = 5) -> float:
    from bids_synth.nn.slabs import RandomisedSlabs
    from bids_synth.simulate.randomise import simulate_label_head

    head = simulate_label_head(1, label_source="phantom")
    slab = RECIPES["sct-t1w-slab"]
    source = RandomisedSlabs(
        [head], [head], slices=slab.slices, size=slab.size, batch_size=slab.batch_size
    )
    started = time.perf_counter()
    for _ in source.epoch_batches(0, count):
        pass
    return (time.perf_counter() - started) / count


def inference_seconds(amp_dtype) -> float:
    slab = RECIPES["sct-t1w-slab"]
    kwargs = slab.architecture()["kwargs"]
    net = build_network("unet", **kwargs).eval()
    volume = torch.rand(1, *HEAD_BOX)
    started = time.perf_counter()
    predict_slabs(net, volume, slices=slab.slices, dtype=amp_dtype, multiple=net.multiple)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [
        "| family | amp | s/step | output voxels/s | × earlier sct bundle (fp32) |",
        "|---|---|---|---|---|",
    ]
    baseline = None
    for label, kwargs, shape in _families():
        for amp in ("off", "bf16"):
            seconds = train_seconds(kwargs, shape, amp, args.steps)
            voxels = shape[0] * int(np.prod(shape[2:])) / seconds
            baseline = baseline or voxels
            lines.append(
                f"| {label} | {amp} | {seconds:.2f} | {voxels / 1e6:.2f} M | "
                f"{voxels / baseline:.1f}× |"
            )
            print(lines[-1], flush=True)
    body = "\n".join(lines)
    body += (
        f"\n\nDrawing one contrast-randomised slab batch: {batch_seconds():.2f} s."
        f"\n\nInference of the 2.5D network on a 1 mm head box {HEAD_BOX}, 3 orientations, "
        f"{args.threads} thread(s): fp32 {inference_seconds(None):.1f} s, bf16 "
        f"{inference_seconds(torch.bfloat16):.1f} s.\n"
    )
    print(body)
    if args.append:
        sys.path.insert(0, str(Path(__file__).parent))
        from harness import append_section

        append_section(
            "Network families on a CPU",
            "python benchmarks/bench_families.py " + " ".join(argv or sys.argv[1:]),
            body,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
