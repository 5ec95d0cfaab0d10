"""Which slice-profile shape should ``self`` train for when only the thickness is known?

The SPM avg152 T1/T2/PD templates (real, 2 mm; never used by the super-resolution goal grid of
``superres_goal.py``) are degraded along their axial axis exactly as there (``factor`` × 2 mm
apart, a Gaussian or box profile, with or without a gap), then super-resolved by ``self`` given
the thickness and trained for a box, for a Gaussian, or for the shape the image's power spectrum
suggests (``estimate_slice_profile``, what ``self`` does). PSNR in the head against the
template. The regret of a choice: the better trained shape's PSNR minus the choice's. Prints a
markdown table and each choice's mean and largest regret.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factors", nargs="+", type=float, default=[4.0, 2.0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| template | factor | true profile | gap | PSNR trained box | trained Gaussian | "
          "spectral choice |\n|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    regrets = {"box": [], "gaussian": [], "spectral choice": []}
    for name in TEMPLATES:
        truth = np.clip(np.asarray(nib.load(reference_file(name)).dataobj, np.float32), 0, None)
        head = truth > 0.1 * np.percentile(truth, 99)
        for factor in args.factors:
            for profile in sr.SLICE_PROFILES:
                for gap in (False, True):
                    thickness = factor * (0.7 if gap else 1.0)
                    thick, affine = acquire_slices(truth, factor, thickness, profile)
                    scores = {}
                    for shape in sr.SLICE_PROFILES:
                        out, _, _ = sr.smore(thick, affine, thickness_mm=thickness,
                                             profile=shape, device="cpu")  # fmt: skip
                        n = min(out.shape[2], truth.shape[2])
                        scores[shape] = psnr(truth[..., :n], out[..., :n], head[..., :n])
                    chosen, _ = sr.estimate_slice_profile(thick / thick.max(), 2, factor, thickness)
                    best = max(scores.values())
                    for shape in sr.SLICE_PROFILES:
                        regrets[shape].append(best - scores[shape])
                    regrets["spectral choice"].append(best - scores[chosen])
                    print(f"| {name.split('/')[-1]} | {factor:g}× | {profile} | "
                          f"{'yes' if gap else 'no'} | {scores['box']:.2f} | "
                          f"{scores['gaussian']:.2f} | {chosen} |", flush=True)  # fmt: skip
    print("\n| trained for | mean regret (dB) | largest regret (dB) |\n|---|---|---|")
    for choice, values in regrets.items():
        print(f"| {choice} | {np.mean(values):.2f} | {np.max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
