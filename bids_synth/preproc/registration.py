"""Linear registration to the T1w reference with Mattes mutual information (antspyx).

Reproducibility: ANTs samples the metric at jittered points seeded by ``--random-seed``, but it
treats a seed of 0 as "no seed" (clock-seeded), so :func:`ants_seed` maps every seed to a non-zero
one. Multi-threaded metric sums are also accumulated in a varying order, so bitwise-identical
transforms need one ITK thread; ITK reads its thread count once per process, which is why
:func:`register_files` is run in a fresh single-threaded process (``python -m`` this module).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import ants
import numpy as np
from ants.config import set_ants_deterministic

#: multi-resolution schedule in millimetres, whatever the voxel size: (resolution, smoothing σ,
#: iterations); the shrink factor of each level is its resolution over the finest voxel size
LEVELS_MM = ((8.0, 4.0, 1000), (4.0, 2.0, 500), (2.0, 1.0, 250), (1.0, 0.0, 100))


def schedule(spacing) -> dict:
    """antspyx arguments of the linear stages for images of this voxel size."""
    finest = float(np.min(spacing))
    return {
        "aff_shrink_factors": tuple(max(1, round(res / finest)) for res, _, _ in LEVELS_MM),
        "aff_smoothing_sigmas": tuple(sigma for _, sigma, _ in LEVELS_MM),
        "aff_iterations": tuple(iterations for _, _, iterations in LEVELS_MM),
        "smoothing_in_mm": True,
    }


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
    ``"affine"``, by an affine stage starting from it. The pyramid is set in millimetres (see
    :data:`LEVELS_MM`), so 3 mm images are not shrunk to 18 mm voxels at the coarsest level. The
    final moving→fixed transform is written to ``out_matrix`` as an ITK ``.mat`` (the linear
    stages are collapsed into one matrix).
    """
    levels = schedule(fixed.spacing)
    set_ants_deterministic(on=False, seed_value=ants_seed(seed))  # only passes --random-seed
    result = ants.registration(
        fixed,
        moving,
        type_of_transform="Rigid",
        mask=fixed_mask,
        aff_metric="mattes",
        outprefix=os.path.join(workdir, "rigid_"),
        **levels,
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
            **levels,
        )
        matrix = result["fwdtransforms"][0]
    shutil.copyfile(matrix, out_matrix)
    return ants.apply_transforms(
        fixed, moving, [out_matrix], interpolator="linear", defaultvalue=background
    )


def ants_seed(seed: int) -> int:
    """A non-zero 31-bit seed for ANTs (which clock-seeds its sampling when given 0)."""
    return seed % (2**31 - 1) + 1


def register_files(
    *,
    fixed: str,
    moving: str,
    fixed_mask: str | None,
    transform: str,
    background: float,
    seed: int,
    workdir: str,
    out_matrix: str,
    out_file: str,
) -> None:
    """:func:`register` on image files; writes ``out_matrix`` and the resampled ``out_file``."""
    registered = register(
        ants.image_read(fixed),
        ants.image_read(moving),
        transform=transform,
        fixed_mask=ants.image_read(fixed_mask) if fixed_mask else None,
        background=background,
        seed=seed,
        workdir=workdir,
        out_matrix=out_matrix,
    )
    registered.to_filename(out_file)


if __name__ == "__main__":  # python -m bids_synth.preproc.registration '<register_files kwargs>'
    register_files(**json.loads(sys.argv[1]))
