"""Which slice-profile shape should ``self`` train for when only the thickness is known?

Development images, never used by the super-resolution goal grid of ``superres_goal.py``: the SPM
avg152 T1/T2/PD templates (real, 2 mm) and, with ``--simulated``, two 1 mm heads of the head model
(a ``tpm`` T1w and a ``phantom`` T2w, seeds 11 and 12, acquired at 1 mm isotropic, 2 % noise).
Each is degraded along its axial axis exactly as there (``factor`` voxels apart, a Gaussian or box
profile, with or without a gap), then super-resolved by ``self`` given the thickness and trained
for a box, for a Gaussian, for both (each training pair degraded with one drawn at random: what
``self`` does when the shape is not given), or for the shape the image's power spectrum suggests
(``estimate_slice_profile``). PSNR in the head against the original. The regret of a choice: the
best of the three trainings' PSNR minus the choice's. Prints a markdown table and each choice's
mean and largest regret.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bids_synth.metrics import psnr
from bids_synth.refdata import reference_file
from bids_synth.synthesis import superresolution as sr

sys.path.insert(0, str(Path(__file__).parent))
from superres_goal import acquire_slices  # noqa: E402

TEMPLATES = ("spm/avg152T1.nii.gz", "spm/avg152T2.nii.gz", "spm/avg152PD.nii.gz")
SIMULATED = (("tpm", 11, "T1w"), ("phantom", 12, "T2w"))  #: label source, seed, contrast
TRAININGS = {"box": "box", "gaussian": "gaussian", "both": None}  #: column → ``profile``


def development_images(simulated: bool):
    """``(name, volume)``: the templates, then (``simulated``) the 1 mm head-model heads."""
    for name in TEMPLATES:
        yield name.split("/")[-1], np.asarray(nib.load(reference_file(name)).dataobj, np.float32)
    if simulated:
        from bids_synth.simulate import simulate_subject

        for source, seed, contrast in SIMULATED:
            draw = simulate_subject(seed, label_source=source, contrasts=(contrast,), noise=0.02,
                                    resolution=1.0)  # fmt: skip
            yield f"{source} {contrast} (simulated, 1 mm)", draw.images[contrast].numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factors", nargs="+", type=float, default=[4.0, 2.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--simulated", action="store_true", help="add the 1 mm simulated heads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| image | factor | true profile | gap | PSNR trained box | trained Gaussian | trained "
          "for both | spectral choice |\n|---|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    regrets = {**{f"trained for {c}": [] for c in TRAININGS}, "spectral choice": []}
    for name, volume in development_images(args.simulated):
        truth = np.clip(volume, 0, None)
        head = truth > 0.1 * np.percentile(truth, 99)
        for factor in args.factors:
            for profile in sr.SLICE_PROFILES:
                for gap in (False, True):
                    thickness = factor * (0.7 if gap else 1.0)
                    thick, affine = acquire_slices(truth, factor, thickness, profile)
                    scores = {}
                    for column, shape in TRAININGS.items():
                        out, _, _ = sr.smore(thick, affine, thickness_mm=thickness,
                                             profile=shape, device="cpu")  # fmt: skip
                        n = min(out.shape[2], truth.shape[2])
                        scores[column] = psnr(truth[..., :n], out[..., :n], head[..., :n])
                    chosen, _ = sr.estimate_slice_profile(thick / thick.max(), 2, factor, thickness)
                    best = max(scores.values())
                    for column in TRAININGS:
                        regrets[f"trained for {column}"].append(best - scores[column])
                    regrets["spectral choice"].append(best - scores[chosen])
                    print(f"| {name} | {factor:g}× | {profile} | {'yes' if gap else 'no'} | "
                          f"{scores['box']:.2f} | {scores['gaussian']:.2f} | {scores['both']:.2f} "
                          f"| {chosen} |", flush=True)  # fmt: skip
    print("\n| choice | mean regret (dB) | largest regret (dB) |\n|---|---|---|")
    for choice, values in regrets.items():
        print(f"| {choice} | {np.mean(values):.2f} | {np.max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
