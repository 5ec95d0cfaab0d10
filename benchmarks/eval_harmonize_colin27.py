"""Held-out metric of a harmonization bundle on the never-seen colin27 anatomy.

A traveling subject (colin27 anatomy, seed 7, 1.5 mm) is acquired at sites 1 and 2 (bias, noise,
no N4), harmonized to site 0 as the pipeline does, and compared with its noise- and bias-free
site-0 T1w inside the head mask: MAE (site-0 scanner units) and PSNR (data range of the truth).

    python benchmarks/eval_harmonize_colin27.py bids_synth/models/bundles/harmonize-t1w-site0-slab
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch

from bids_synth.models import Bundle
from bids_synth.models.prediction import predict_mr_in_head
from bids_synth.simulate.anatomy import draw_anatomy
from bids_synth.simulate.scanner import ScannerStyle
from bids_synth.simulate.subject import acquire


def main() -> None:
    torch.set_num_threads(1)
    bundle = Bundle.read(sys.argv[1])
    target = bundle.meta["harmonization"]["target_site"]
    anatomy = draw_anatomy(7, label_source="colin27", spacing=bundle.meta["input"]["spacing_mm"])
    head = anatomy.head_mask.numpy()
    style = ScannerStyle.for_site(target)
    truth = acquire(anatomy, style, contrasts=("T1w",), site=target, noise=0.0).clean["T1w"]
    truth = truth.numpy()[head]
    rows = {}
    for site in sorted({0, 1, 2} - {target}):
        draw = acquire(anatomy, ScannerStyle.for_site(site), contrasts=("T1w",), site=site)
        image = draw.images["T1w"].numpy()
        out, _ = predict_mr_in_head(bundle, [image], anatomy.affine, head, device="cpu")
        error = out[head] - truth
        data_range = float(truth.max() - truth.min())
        rows[f"site{site}"] = {
            "MAE": float(np.abs(error).mean()),
            "PSNR": 10 * math.log10(data_range**2 / float((error**2).mean())),
        }
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
