"""Fit the MNI 2009a brain into the cranial cavity of the reference data's head CT (antspyx).

Prints ``MNI_FROM_CT_HEAD`` of :mod:`bids_synth.simulate.atlases`: the affine (RAS mm) that maps
the head CT's world onto MNI space, found by a rigid then an affine registration (Mattes mutual
information, one ITK thread, seed 0) of the MNI brain + CSF map to the CT's cavity mask, both
block-averaged to 3 mm. Rerun it only when the cavity or the MNI maps change::

    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 python scripts/fit_ct_head.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"

import ants  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from bids_synth.preproc.registration import register  # noqa: E402
from bids_synth.simulate import atlases  # noqa: E402

#: ITK's physical space is LPS, NIfTI's world RAS
LPS = np.diag([-1.0, -1.0, 1.0])


def ras_matrix(transform_file: str) -> np.ndarray:
    """An ITK affine ``.mat`` (fixed LPS point → moving LPS point) as a 4×4 RAS matrix."""
    transform = ants.read_transform(transform_file)
    parameters = np.asarray(transform.parameters, dtype=float)
    matrix, translation = parameters[:9].reshape(3, 3), parameters[9:]
    centre = np.asarray(transform.fixed_parameters, dtype=float)
    offset = translation + centre - matrix @ centre
    out = np.eye(4)
    out[:3, :3] = LPS @ matrix @ LPS
    out[:3, 3] = LPS @ offset
    return out


def block_mean(array: np.ndarray, affine: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``array`` averaged over blocks of ``k``³ voxels, and the affine of the coarser grid (masks
    fit as well at 3 mm as at 1 mm, 25× faster)."""
    shape = [n // k for n in array.shape]
    blocks = array[: shape[0] * k, : shape[1] * k, : shape[2] * k]
    coarse = blocks.reshape(shape[0], k, shape[1], k, shape[2], k).mean(axis=(1, 3, 5))
    step = np.diag([k, k, k, 1.0])
    step[:3, 3] = (k - 1) / 2
    return coarse.astype(np.float32), affine @ step


def main() -> np.ndarray:
    _, affine, _, cavity = atlases.ct_head_grid()
    mni = atlases.load_mni2009a()
    brain = mni.fractions[list(atlases.BRAIN_TISSUES)].sum(axis=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, mask, grid in (("cavity", cavity, affine), ("brain", brain, mni.affine)):
            coarse = nib.Nifti1Image(*block_mean(mask.astype(np.float32), grid, 3))
            nib.save(coarse, folder / f"{name}.nii.gz")
        register(
            ants.image_read(str(folder / "cavity.nii.gz")),
            ants.image_read(str(folder / "brain.nii.gz")),
            transform="affine",
            seed=0,
            workdir=tmp,
            out_matrix=str(folder / "mni_to_ct.mat"),
        )
        fitted = ras_matrix(str(folder / "mni_to_ct.mat"))
    print("MNI_FROM_CT_HEAD = np.array(")
    print("    [")
    for row in fitted:
        print("        [" + ", ".join(f"{v:.6f}" for v in row) + "],")
    print("    ]")
    print(")")
    return fitted


if __name__ == "__main__":
    main()
