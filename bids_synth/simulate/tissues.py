"""The tissue-class vocabulary shared by every label source, the physics and the ground truth."""

from __future__ import annotations

from enum import IntEnum

import torch


class Tissue(IntEnum):
    """Tissue classes; the value is the label written in ``dseg`` maps and the channel of fractions."""

    BACKGROUND = 0  # air outside the head
    SKIN = 1
    FAT = 2  # subcutaneous fat
    MUSCLE = 3  # muscle and other lean soft tissue
    CORTICAL_BONE = 4
    MARROW = 5  # cancellous bone (diploë, vertebral bodies)
    SINUS = 6  # air inside the head: paranasal sinuses, airway
    CSF = 7  # extra-cerebral CSF and sulci
    VENTRICLE = 8
    GM = 9  # cortical grey matter
    WM = 10
    DEEP_GM = 11  # thalamus, caudate, putamen, pallidum
    LESION = 12  # white-matter hyperintensity


N_TISSUES = len(Tissue)

#: the brain's own tissue, and with its CSF what a brain mask holds
BRAIN_PARENCHYMA = (Tissue.VENTRICLE, Tissue.GM, Tissue.WM, Tissue.DEEP_GM, Tissue.LESION)
BRAIN_TISSUES = (Tissue.CSF, *BRAIN_PARENCHYMA)
#: the brain's CSF (sulci, cisterns) lies within this distance of its tissue; fluid farther away
#: is no brain (the eyes, which the SPM TPM counts as CSF)
BRAIN_CSF_REACH_MM = 8.0

TISSUE_DESCRIPTIONS = {
    Tissue.BACKGROUND: "air outside the head",
    Tissue.SKIN: "skin",
    Tissue.FAT: "subcutaneous fat",
    Tissue.MUSCLE: "muscle and other lean soft tissue",
    Tissue.CORTICAL_BONE: "cortical bone",
    Tissue.MARROW: "cancellous bone and marrow",
    Tissue.SINUS: "air inside the head (sinuses, airway)",
    Tissue.CSF: "extra-cerebral cerebrospinal fluid",
    Tissue.VENTRICLE: "ventricular cerebrospinal fluid",
    Tissue.GM: "cortical grey matter",
    Tissue.WM: "white matter",
    Tissue.DEEP_GM: "deep grey matter",
    Tissue.LESION: "white-matter lesion",
}


def labels_from_fractions(fractions: torch.Tensor) -> torch.Tensor:
    """Hard labels (``uint8``, shape ``fractions.shape[1:]``): the class with the largest fraction
    (the first one on ties, as ``argmax``; one contiguous pass per class is faster than it)."""
    labels = torch.zeros(fractions.shape[1:], dtype=torch.uint8, device=fractions.device)
    best = fractions[0].clone()
    for tissue in range(1, fractions.shape[0]):
        larger = fractions[tissue] > best
        labels[larger] = tissue
        best = torch.maximum(best, fractions[tissue])
    return labels


def head_mask_from_fractions(fractions: torch.Tensor) -> torch.Tensor:
    """Voxels that are more head than outside air."""
    return fractions[Tissue.BACKGROUND] < 0.5


def brain_region(labels: torch.Tensor, spacing_mm: float) -> torch.Tensor:
    """The brain and its CSF (bool, ``labels``' shape): voxels labelled one of
    :data:`BRAIN_TISSUES` within :data:`BRAIN_CSF_REACH_MM` of brain tissue (a box
    neighbourhood)."""
    import torch.nn.functional as F

    reach = max(1, round(BRAIN_CSF_REACH_MM / spacing_mm))
    near = torch.isin(labels, torch.tensor(BRAIN_PARENCHYMA, dtype=labels.dtype))[None, None]
    near = near.float()
    for axis in range(3):
        kernel, padding = [1, 1, 1], [0, 0, 0]
        kernel[axis], padding[axis] = 2 * reach + 1, reach
        near = F.max_pool3d(near, tuple(kernel), stride=1, padding=tuple(padding))
    inside = torch.isin(labels, torch.tensor(BRAIN_TISSUES, dtype=labels.dtype))
    return inside & (near[0, 0] > 0)
