"""MR → CT without a network: bulk tissue classes and atlas propagation, plus QC and the μ-map.

Bulk HU per class come from the generative head model's CT table
(:data:`bids_synth.simulate.ct.HU_DISTRIBUTIONS`, itself the DESIGN.md tissue table checked against
the reference head CT); nothing here is tuned on test draws.
"""

from __future__ import annotations

import numpy as np

from bids_synth.fileio import private_tempdir
from bids_synth.modalities import CT_HU_RANGE, SCORING_HU_RANGE
from bids_synth.simulate.ct import HU_DISTRIBUTIONS
from bids_synth.simulate.tissues import Tissue

BONE_QC_HU = 300.0  # voxels at or above this HU count as bone in the QC
BRAIN_CORE_EROSION_VOXELS = 3
BRAIN_CORE_BONE_LIMIT = 0.005  # bone-range share of the brain core above which sct warns


def _mean_hu(*tissues: Tissue) -> float:
    return float(np.mean([HU_DISTRIBUTIONS[t][0] for t in tissues]))


#: HU of each bulk class (head-model means; bone: cortical and cancellous bone averaged)
BULK_HU = {
    "air": _mean_hu(Tissue.BACKGROUND),
    "sinus": _mean_hu(Tissue.SINUS),
    "bone": _mean_hu(Tissue.CORTICAL_BONE, Tissue.MARROW),
    "soft": _mean_hu(Tissue.SKIN, Tissue.MUSCLE),
    "fat": _mean_hu(Tissue.FAT),
    "csf": _mean_hu(Tissue.CSF),
    "gm": _mean_hu(Tissue.GM),
    "wm": _mean_hu(Tissue.WM),
}
#: dark voxels (air or bone on MR) within this distance of the brain are bone, farther ones air
BONE_SHELL_MM = 15.0


def bulk_ct(t1w, head_mask, brain_mask, *, bone_shell_mm: float = BONE_SHELL_MM):
    """Synthetic CT (ANTsImage, HU) from tissue classes of the T1w and a fixed HU per class.

    Inside the brain mask, Atropos (k-means initialisation) separates CSF, GM and WM; outside it
    but inside the head, Atropos separates dark (bone or air), intermediate (skin, muscle) and
    bright (fat) tissue. Dark voxels within ``bone_shell_mm`` of the brain are bone, the others
    air (sinuses, airway). Outside the head mask: air.
    """
    import ants

    head = head_mask.numpy() > 0.5
    brain = (brain_mask.numpy() > 0.5) & head
    hu = np.full(head.shape, BULK_HU["air"], np.float32)
    brain_classes = _atropos(t1w, brain, 3)
    for index, name in enumerate(("csf", "gm", "wm"), start=1):
        hu[brain_classes == index] = BULK_HU[name]
    extra = head & ~brain
    extra_classes = _atropos(t1w, extra, 3)
    hu[extra_classes == 2] = BULK_HU["soft"]
    hu[extra_classes == 3] = BULK_HU["fat"]
    distance = ants.iMath(brain_mask.new_image_like(brain.astype(np.float32)), "MaurerDistance")
    near_brain = distance.numpy() <= bone_shell_mm
    dark = extra_classes == 1
    hu[dark & near_brain] = BULK_HU["bone"]
    hu[dark & ~near_brain] = BULK_HU["sinus"]
    return t1w.new_image_like(hu)


def _atropos(image, mask: np.ndarray, classes: int) -> np.ndarray:
    """Labels 1..classes (by increasing mean intensity) inside ``mask``, 0 outside.

    Atropos with k-means initialisation, its random generator at a constant seed (by default
    Atropos seeds it from the clock, and ``ANTS_RANDOM_SEED`` does not reach it), so that every
    run gives the same classes; where its Gaussian fit is singular (a class of one constant
    value, e.g. noise-free images) the k-means classes themselves are used.
    """
    import ants

    values = image.numpy()
    if mask.sum() < classes * 10:
        return np.zeros(mask.shape, np.uint8)
    try:
        with private_tempdir():  # its probability images would stay in the system temp folder
            result = ants.atropos(
                a=image,
                x=image.new_image_like(mask.astype(np.float32)),
                i=f"kmeans[{classes}]",
                m="[0.1,1x1x1]",
                c="[5,0]",
                verbose=0,
                **{"use-random-seed": 0},
            )
            labels = result["segmentation"].numpy().astype(np.uint8)
    except Exception:  # antspyx raises a bare Exception when Atropos exits non-zero
        labels = np.zeros(mask.shape, np.uint8)
        labels[mask] = _kmeans_1d(values[mask], classes) + 1
    means = [
        values[labels == k].mean() if (labels == k).any() else np.inf for k in range(1, classes + 1)
    ]
    ordered = np.zeros_like(labels)
    for rank, label in enumerate(np.argsort(means), start=1):
        ordered[labels == label + 1] = rank
    return ordered


def _kmeans_1d(values: np.ndarray, classes: int, iterations: int = 50) -> np.ndarray:
    """Class index (0..classes-1) of each value by 1-D k-means started at spread percentiles."""
    centres = np.percentile(values, np.linspace(10, 90, classes))
    for _ in range(iterations):
        assignment = np.abs(values[:, None] - centres[None]).argmin(axis=1)
        centres = np.array(
            [
                values[assignment == k].mean() if (assignment == k).any() else centres[k]
                for k in range(classes)
            ]
        )
    return assignment


def atlas_ct(
    t1w, head_mask, atlases, *, seed: int = 0, transform: str = "antsRegistrationSyNQuick[s]"
):
    """Synthetic CT propagated from MR/CT atlas pairs ``[(atlas_t1w, atlas_ct), ...]``.

    Each atlas T1w is registered to the subject (``transform``: affine + SyN by default, Mattes
    MI for the affine, cross-correlation for SyN), its CT resampled through the same transforms
    (linear, air outside); several atlases are fused by their voxel-wise median. Outside the head
    mask: air.
    """
    import ants
    from ants.config import set_ants_deterministic

    from bids_synth.preproc.registration import ants_seed

    set_ants_deterministic(on=False, seed_value=ants_seed(seed))  # only passes --random-seed
    fixed = t1w * head_mask
    propagated = []
    for atlas_t1w, atlas_ct_image in atlases:
        registration = ants.registration(
            fixed=fixed,
            moving=atlas_t1w,
            type_of_transform=transform,
            random_seed=ants_seed(seed),
            verbose=False,
        )
        warped = ants.apply_transforms(
            fixed=t1w,
            moving=atlas_ct_image,
            transformlist=registration["fwdtransforms"],
            interpolator="linear",
            defaultvalue=BULK_HU["air"],
        )
        propagated.append(warped.numpy())
    hu = np.median(np.stack(propagated), axis=0).astype(np.float32)
    hu[head_mask.numpy() <= 0.5] = BULK_HU["air"]
    return t1w.new_image_like(hu)


def clip_hu(hu: np.ndarray) -> np.ndarray:
    """HU clipped to the CT range a scanner writes (−1024 … 3071)."""
    return np.clip(hu, *CT_HU_RANGE).astype(np.float32)


def brain_core(brain: np.ndarray, erosion: int = BRAIN_CORE_EROSION_VOXELS) -> np.ndarray:
    """The brain mask eroded by ``erosion`` voxels: no voxel of it should hold bone."""
    from scipy import ndimage

    return ndimage.binary_erosion(brain, iterations=erosion) if brain.any() else brain


def ct_qc(hu: np.ndarray, head: np.ndarray, brain: np.ndarray) -> dict:
    """QC values for the sidecar: mean and median HU in the brain, mean HU in bone, share outside
    [−1024, 3000], and the anatomical check: the share of bone-range voxels in the brain core
    (above :data:`BRAIN_CORE_BONE_LIMIT` it adds a ``Warnings`` entry)."""
    bone = (hu >= BONE_QC_HU) & head
    outside = (hu < SCORING_HU_RANGE[0]) | (hu > SCORING_HU_RANGE[1])
    core = brain_core(brain)
    core_bone = float((hu[core] >= BONE_QC_HU).mean()) if core.any() else None
    qc = {
        "MeanHUBrain": round(float(hu[brain].mean()), 2) if brain.any() else None,
        "MedianHUBrain": round(float(np.median(hu[brain])), 2) if brain.any() else None,
        "MeanHUBone": round(float(hu[bone].mean()), 2) if bone.any() else None,
        "BoneThresholdHU": BONE_QC_HU,
        "BoneFractionBrainCore": None if core_bone is None else round(core_bone, 6),
        "FractionOutsideRange": round(float(outside.mean()), 6),
        "QCRangeHU": list(SCORING_HU_RANGE),
    }
    if core_bone is not None and core_bone > BRAIN_CORE_BONE_LIMIT:
        qc["Warnings"] = [
            f"implausible synthetic CT: {100 * core_bone:.1f} % of the brain core (brain mask "
            f"eroded by {BRAIN_CORE_EROSION_VOXELS} voxels) is bone-range (≥ {BONE_QC_HU:.0f} HU); "
            "check the input image and the method"
        ]
    return qc


def attenuation_map(hu: np.ndarray, *, kvp: int = 120) -> np.ndarray:
    """511 keV linear attenuation (cm⁻¹) by the head model's bilinear Carney 2006 conversion."""
    import torch

    from bids_synth.simulate.ct import mu_map

    return mu_map(torch.from_numpy(np.asarray(hu, np.float32)), kvp=kvp).numpy().astype(np.float32)
