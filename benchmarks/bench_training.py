"""Training throughput (steps/s) of the training modes, on CPU or a GPU.

    python benchmarks/bench_training.py [--device cpu|cuda] [--patch 64] [--batch 2] [--steps 3]

Each configuration builds its trainer (seeded), takes one warm-up step, then times ``--steps``
steps on random batches. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bids_synth.nn.devices import resolve_device
from bids_synth.nn.trainers import build_trainer

CONFIGS = [  # (label, mode, architecture, network kwargs, amp)
    ("regression, default U-Net", "regression", "unet", {}, "off"),
    ("regression, default U-Net", "regression", "unet", {}, "bf16"),
    ("pix2pix, default U-Net + PatchGAN", "pix2pix", "unet", {}, "off"),
    ("wgan-gp, RED (32×4) + critic, 5 critic steps", "wgan-gp", "red", {}, "off"),
]


def throughput(mode, architecture, kwargs, amp, *, device, patch, batch, steps) -> float:
    trainer = build_trainer(
        mode, architecture=architecture, network_kwargs=kwargs, device=device, amp=amp, seed=0
    )
    generator = torch.Generator().manual_seed(0)
    shape = (batch, 1, patch, patch, patch)
    data = {
        "source": torch.rand(shape, generator=generator),
        "target": torch.rand(shape, generator=generator),
        "mask": torch.ones(shape),
    }
    trainer.train_step(data)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(data)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"Patch {args.patch}³, batch {args.batch}, {name}, torch {torch.__version__}, {platform.machine()}\n"
    )
    print("| configuration | amp | steps/s | patches/s |")
    print("|---|---|---|---|")
    for label, mode, architecture, kwargs, amp in CONFIGS:
        if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            continue
        rate = throughput(
            mode,
            architecture,
            kwargs,
            amp,
            device=device,
            patch=args.patch,
            batch=args.batch,
            steps=args.steps,
        )
        print(f"| {label} | {amp} | {rate:.3f} | {rate * args.batch:.2f} |", flush=True)


if __name__ == "__main__":
    main()
