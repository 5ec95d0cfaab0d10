"""MR/CT atlas pairs drawn from the generative head model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ATLAS_LABEL_SOURCE = "phantom"


def write_head_model_atlas(seed: int, spacing: float, folder: str | Path) -> tuple[str, str]:
    """Draw head-model subject ``seed`` at ``spacing`` mm; write its clean T1w and CT (HU).

    Clean images (no bias, noise or resampling) stand in for a bias-corrected T1w and a CT.
    Returns the two NIfTI paths.
    """
    import nibabel as nib

    from bids_synth.simulate import simulate_subject

    draw = simulate_subject(
        seed, label_source=ATLAS_LABEL_SOURCE, spacing=spacing, contrasts=("T1w", "CT")
    )
    folder = Path(folder)
    paths = []
    for contrast in ("T1w", "CT"):
        data = draw.clean[contrast].cpu().numpy().astype(np.float32)
        path = folder / f"atlas-{seed}_{contrast}.nii.gz"
        nib.save(nib.Nifti1Image(data, draw.affine), str(path))
        paths.append(str(path))
    return paths[0], paths[1]


def propagate_files(*, t1w: str, head_mask: str, atlases: list, seed: int, out_file: str) -> None:
    """:func:`~bids_synth.synthesis.sct_methods.atlas_ct` on files; the HU image to ``out_file``.

    Run as ``python -m bids_synth.synthesis.sct_atlas '<JSON kwargs>'`` in a process with one ITK
    thread: multi-threaded ANTs metrics are not bitwise reproducible (see
    :mod:`bids_synth.preproc.registration`).
    """
    import ants

    from bids_synth.synthesis.sct_methods import atlas_ct

    pairs = [(ants.image_read(m), ants.image_read(c)) for m, c in atlases]
    hu = atlas_ct(ants.image_read(t1w), ants.image_read(head_mask), pairs, seed=seed)
    hu.to_filename(out_file)


if __name__ == "__main__":
    import json
    import sys

    propagate_files(**json.loads(sys.argv[1]))
