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

#: the brain and the CSF around and inside it: what a brain mask holds
BRAIN_TISSUES = (
    Tissue.CSF,
    Tissue.VENTRICLE,
    Tissue.GM,
    Tissue.WM,
    Tissue.DEEP_GM,
    Tissue.LESION,
)

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
