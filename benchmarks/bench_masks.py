"""Head masks of MR images: the clip level (bids-synth) against Otsu's threshold (its former rule).

Both thresholds go through the same morphology (:func:`bids_synth.preproc.masks.head_region`).
Scored by Dice against the true head of held-out simulated T1w heads (``colin27`` anatomy, seeds
900000…, random scanner styles, 2 mm), and as the agreement of the two masks on the real T1w
images of the reference data (no truth there).

    python benchmarks/bench_masks.py [--subjects 6] [--append]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import ants
import numpy as np
from skimage.filters import threshold_otsu

from bids_synth.preproc import masks
from bids_synth.refdata import reference_file

HELD_OUT_SEED = 900_000
REAL_T1W = (
    "ch2.nii.gz",
    "KmeansTest_T1UCharRaw.nii.gz",
    "spm/avg152T1.nii.gz",
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
)
RULES = {"clip level": masks.clip_level, "Otsu": threshold_otsu}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def main(argv=None) -> str:
    from bids_synth.simulate import simulate_subject

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--append", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    lines = [
        "| held-out head (colin27, 2 mm): Dice with its true head | " + " | ".join(RULES) + " |"
    ]
    lines.append("|---|---|---|")
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + args.subjects):
        draw = simulate_subject(seed, label_source="colin27", spacing=2.0, contrasts=("T1w",))
        image = ants.from_numpy(draw.images["T1w"].numpy(), spacing=(2.0, 2.0, 2.0))
        truth = draw.head_mask.numpy().astype(bool)
        scores = [
            dice(masks.head_region(image, rule(image.numpy())), truth) for rule in RULES.values()
        ]
        lines.append(f"| seed {seed} | " + " | ".join(f"{s:.3f}" for s in scores) + " |")
    lines += ["", "| real T1w | voxels (clip level) | voxels (Otsu) | Dice between them |"]
    lines.append("|---|---|---|---|")
    for name in REAL_T1W:
        image = ants.image_read(str(reference_file(name)))
        clip, otsu = (masks.head_region(image, rule(image.numpy())) for rule in RULES.values())
        lines.append(f"| {name} | {clip.sum()} | {otsu.sum()} | {dice(clip, otsu):.3f} |")
    command = "python benchmarks/bench_masks.py " + shlex.join(argv or sys.argv[1:])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    text = f"Command: `{command.strip()}`  \nMachine: {machine}\n\n" + "\n".join(lines)
    print(text)
    if args.append:
        with open(Path(__file__).parents[1] / "BENCHMARKS.md", "a") as handle:
            handle.write("\n\n## Head masks of MR images\n\n" + text + "\n")
    return text


if __name__ == "__main__":
    main()
