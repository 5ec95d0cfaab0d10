"""Linear registration to the T1w reference with Mattes mutual information (antspyx)."""

from __future__ import annotations

import os
import shutil

import ants
from ants.config import set_ants_deterministic


def register(
    fixed: ants.ANTsImage,
    moving: ants.ANTsImage,
    *,
    transform: str = "rigid",
    fixed_mask: ants.ANTsImage | None = None,
    background: float = 0.0,
    seed: int = 0,
    workdir: str,
    out_matrix: str,
) -> ants.ANTsImage:
    """Align ``moving`` to ``fixed`` and return it resampled (linear) on the fixed grid.

    A rigid stage (initialised by the centres of mass) is followed, when ``transform`` is
    ``"affine"``, by an affine stage starting from it. The final moving→fixed transform is written
    to ``out_matrix`` as an ITK ``.mat`` (the linear stages are collapsed into one matrix).
    """
    set_ants_deterministic(on=False, seed_value=seed)  # only passes --random-seed to ANTs
    result = ants.registration(
        fixed,
        moving,
        type_of_transform="Rigid",
        mask=fixed_mask,
        aff_metric="mattes",
        outprefix=os.path.join(workdir, "rigid_"),
    )
    matrix = result["fwdtransforms"][0]
    if transform == "affine":
        result = ants.registration(
            fixed,
            moving,
            type_of_transform="Affine",
            initial_transform=matrix,
            mask=fixed_mask,
            aff_metric="mattes",
            outprefix=os.path.join(workdir, "affine_"),
        )
        matrix = result["fwdtransforms"][0]
    shutil.copyfile(matrix, out_matrix)
    return ants.apply_transforms(
        fixed, moving, [out_matrix], interpolator="linear", defaultvalue=background
    )
