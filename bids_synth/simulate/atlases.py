"""Real-anatomy label maps from files, converted to tissue fractions in their own space.

The files come from the reference-data folder (:mod:`bids_synth.refdata`, never bundled):

- ``spm/TPM.nii.gz``: SPM's 6 tissue probability maps (GM, WM, CSF, bone, soft tissue, air), 1.5 mm;
- ``spm/labels_Neuromorphometrics.nii.gz`` + ``.xml``: brain labels (same grid as the TPM; its
  licence is CC BY-NC: fine for tests and benchmarks, not for training shipped models);
- ``ch2.nii.gz`` + ``ch2bet.nii.gz``: Colin27, segmented here by intensity (a crude 1 mm anatomy);
- ``ct_head_invesalius0051.nii.gz``: a real head CT, whose skull, sinuses and scalp are read from its
  HU (:func:`load_ct_head`), with the MNI 2009a brain fitted into its cranial cavity.

What the maps lack is derived with simple morphology: ventricles are CSF deeper than
:data:`VENTRICLE_DEPTH_MM` inside the brain; the scalp is split by depth below the head surface
into skin, fat and muscle; the TPM's bone prior (skulls averaged over subjects: thick and faint)
becomes one skull of about a real head's thickness; bone is split into cortical tables of
:data:`TABLE_MM` and marrow (diploë) between them; air enclosed by the head is sinus air, made one
subject's sinuses the same way (the TPM's air prior inside the head is a faint haze).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from bids_synth.refdata import reference_file
from bids_synth.simulate.ct import HU_DISTRIBUTIONS
from bids_synth.simulate.tissues import BRAIN_TISSUES, N_TISSUES, Tissue

VENTRICLE_DEPTH_MM = 10.0
SKULL_SHELL_MM = 15.0
#: widest gap between the brain and the skull's dark outer table that is bone (Colin27)
SKULL_GAP_MM = 8.0
#: CSF between the brain mask and the inner table (Colin27)
SUBARACHNOID_MM = 1.0
SKIN_MM, FAT_MM = 2.0, 5.0
#: the bone prior ramps from no bone to bone between 0.5 ∓ half of this
BONE_PRIOR_RAMP = 0.5
#: the air prior inside the head ramps from no air to air over this width around its level
AIR_PRIOR_RAMP = 0.05
#: the air prior this close to the head's surface stays as it is (nostrils, mouth, ear canals:
#: a sharpened prior there would eat into the skin)
AIR_SURFACE_MM = 5.0
#: thickness of the skull's inner and outer cortical tables: with 1.5 mm the vault of a TPM head
#: has the real head CT's HU against depth in the bone (on a 1.5 mm grid, 658/1036/813/651 HU at
#: 0–1.5/1.5–3/3–4.5/> 4.5 mm; TPM head 619/1040/762/636; with 2 mm 635/1209/960/673, 43 % of
#: the vault ≥ 1,000 HU against the real 28 %: BENCHMARKS.md)
TABLE_MM = 1.5
MNI_HEAD_CENTRE_MM = (0.0, -15.0, -5.0)


@dataclass(frozen=True)
class LabelVolume:
    """Tissue fractions ``(N_TISSUES, X, Y, Z)`` (float32, sum 1) on a grid with ``affine``."""

    fractions: np.ndarray
    affine: np.ndarray
    head_centre_mm: tuple[float, float, float]


def _voxel_mm(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(axis=0))


def _depth_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to the nearest voxel outside it; the mask is
    continued beyond the array edges (a head cut by the field of view has no surface there)."""
    padded = np.pad(mask, 1, mode="edge")
    depth = ndimage.distance_transform_edt(padded, sampling=_voxel_mm(affine))
    return depth[1:-1, 1:-1, 1:-1].astype(np.float32)


def _fill_head(head: np.ndarray) -> np.ndarray:
    closed = ndimage.binary_closing(head, iterations=2)
    return ndimage.binary_fill_holes(closed)


def _split_scalp(
    f: np.ndarray, soft: np.ndarray, head_depth: np.ndarray, *, fat_layer: bool = True
) -> None:
    """Soft tissue by depth below the head's surface: skin to :data:`SKIN_MM`, then (``fat_layer``:
    for sources that cannot tell fat by its intensity) subcutaneous fat to :data:`FAT_MM`, muscle
    deeper."""
    skin = head_depth < SKIN_MM
    fat = ~skin & (head_depth < FAT_MM) if fat_layer else np.zeros_like(skin)
    f[Tissue.SKIN] += soft * skin
    f[Tissue.FAT] += soft * fat
    f[Tissue.MUSCLE] += soft * (~skin & ~fat)


def _split_bone(f: np.ndarray, bone: np.ndarray, affine: np.ndarray) -> None:
    """Cortical bone within :data:`TABLE_MM` of the bone's surface, marrow deeper inside."""
    depth = _depth_mm(bone > 0.5, affine)
    marrow = np.clip(depth - TABLE_MM, 0, 1)
    f[Tissue.MARROW] += bone * marrow
    f[Tissue.CORTICAL_BONE] += bone * (1 - marrow)


def _sharpened(prior: np.ndarray, level: float, ramp: float) -> np.ndarray:
    """``prior`` ramped from 0 to 1 over ``ramp`` around ``level``."""
    return np.clip((prior - level) / ramp + 0.5, 0, 1).astype(np.float32)


def _refilled(
    old: np.ndarray, new: np.ndarray, others: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """The other tissues filling what a tissue gives up (``old`` → ``new`` fraction), in
    proportion to their probabilities."""
    scale = np.divide(1 - new, 1 - old, out=np.zeros_like(old), where=old < 1)
    return tuple(other * scale for other in others)


def _individual_skull(
    bone: np.ndarray, others: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One subject's skull from a population prior of bone: bone where the prior is above 1/2
    (a ramp of :data:`BONE_PRIOR_RAMP`); the other tissues fill what the bone gives up."""
    skull = _sharpened(bone, 0.5, BONE_PRIOR_RAMP)
    return skull, _refilled(bone, skull, others)


def _volume_keeping_level(prior: np.ndarray) -> float:
    """The level above which as many voxels of ``prior`` lie as its fractions sum to."""
    if prior.size == 0:
        return 1.0
    descending = np.sort(prior)[::-1]
    return float(descending[min(int(round(prior.sum())), prior.size - 1)])


def _place_air(f: np.ndarray, air: np.ndarray, head: np.ndarray, affine: np.ndarray) -> None:
    """Air prior → background outside ``head`` and one subject's sinuses inside it.

    Deeper than :data:`AIR_SURFACE_MM` the prior is sharpened (ramp :data:`AIR_PRIOR_RAMP`) at
    the level whose air volume is the prior's own there, so the haze of a population's sinuses
    becomes air cavities of the same volume; the tissues already in ``f`` fill what it gives up.
    """
    inner = np.clip(_depth_mm(head, affine) / AIR_SURFACE_MM, 0, 1) * head
    level = _volume_keeping_level(air[inner >= 1])
    sinus = inner * _sharpened(air, level, AIR_PRIOR_RAMP) + (1 - inner) * air * head
    f[:] = np.stack(_refilled(air * head, sinus, tuple(f)))
    f[Tissue.SINUS] = sinus
    f[Tissue.BACKGROUND] = air * ~head


def _split_csf(f: np.ndarray, csf: np.ndarray, brain_depth: np.ndarray) -> None:
    deep = brain_depth > VENTRICLE_DEPTH_MM
    f[Tissue.VENTRICLE] += csf * deep
    f[Tissue.CSF] += csf * ~deep


def _normalised(f: np.ndarray) -> np.ndarray:
    f[Tissue.BACKGROUND] += np.clip(1 - f.sum(axis=0), 0, None)
    return (f / f.sum(axis=0, keepdims=True)).astype(np.float32)


def load_tpm() -> LabelVolume:
    """SPM TPM → fractions (probabilities are already partial-volume maps)."""
    img = nib.load(reference_file("spm/TPM.nii.gz"))
    tpm = np.clip(np.asarray(img.dataobj, dtype=np.float32), 0, 1)
    gm, wm, csf, bone, soft, air = np.moveaxis(tpm, -1, 0)
    bone, (gm, wm, csf, soft, air) = _individual_skull(bone, (gm, wm, csf, soft, air))
    f = np.zeros((N_TISSUES, *gm.shape), dtype=np.float32)
    f[Tissue.GM], f[Tissue.WM] = gm, wm
    head = _fill_head(air < 0.5)
    brain = gm + wm + csf > 0.5
    _split_csf(f, csf, _depth_mm(brain, img.affine))
    _split_bone(f, bone, img.affine)
    _split_scalp(f, soft, _depth_mm(head, img.affine))
    _place_air(f, air, head, img.affine)
    return LabelVolume(_normalised(f), img.affine, MNI_HEAD_CENTRE_MM)


_NEUROMORPHOMETRICS_CLASSES = (  # first matching pattern wins; everything else is cortex
    (r"Ventricle|Lat Vent|Inf Lat Vent", Tissue.VENTRICLE),
    (r"^CSF$", Tissue.CSF),
    (r"White Matter|Brain Stem|Optic Chiasm|vessel|Ventral DC", Tissue.WM),
    (r"Caudate|Putamen|Pallidum|Thalamus|Accumbens|Basal Forebrain", Tissue.DEEP_GM),
)


def neuromorphometrics_tissue(name: str) -> Tissue:
    """Tissue class of a Neuromorphometrics label name."""
    for pattern, tissue in _NEUROMORPHOMETRICS_CLASSES:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return tissue
    return Tissue.GM


def load_neuromorphometrics() -> LabelVolume:
    """Neuromorphometrics brain labels inside the TPM's head (bone, scalp, air from the TPM)."""
    img = nib.load(reference_file("spm/labels_Neuromorphometrics.nii.gz"))
    labels = np.asarray(img.dataobj).astype(np.int32)
    names = {
        int(node.findtext("index")): node.findtext("name")
        for node in ET.parse(reference_file("spm/labels_Neuromorphometrics.xml")).iter("label")
    }
    lookup = np.full(labels.max() + 1, -1, dtype=np.int32)
    for index, name in names.items():
        if index <= labels.max():
            lookup[index] = neuromorphometrics_tissue(name)
    classes = lookup[labels]
    tpm = load_tpm()
    if (
        not np.allclose(tpm.affine, img.affine, atol=1e-3)
        or classes.shape != tpm.fractions.shape[1:]
    ):
        raise ValueError("Neuromorphometrics labels and TPM are not on the same grid")
    labelled = classes >= 0
    f = tpm.fractions * ~labelled
    for tissue in np.unique(classes[labelled]):
        f[tissue] += classes == tissue
    return LabelVolume(_normalised(f), img.affine, MNI_HEAD_CENTRE_MM)


def _kmeans_1d(values: np.ndarray, centres: list[float], iterations: int = 20) -> np.ndarray:
    centres = np.asarray(centres, dtype=float)
    for _ in range(iterations):
        nearest = np.abs(values[:, None] - centres[None]).argmin(axis=1)
        centres = np.array([values[nearest == k].mean() for k in range(len(centres))])
    return np.sort(centres)


def _memberships(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Fuzzy memberships ``(K, ...)``: linear between consecutive class centres."""
    out = np.zeros((len(centres), *values.shape), dtype=np.float32)
    clipped = np.clip(values, centres[0], centres[-1])
    for k in range(len(centres) - 1):
        inside = (clipped >= centres[k]) & (clipped <= centres[k + 1])
        t = (clipped - centres[k]) / (centres[k + 1] - centres[k])
        out[k] += np.where(inside & (clipped < centres[k + 1]), 1 - t, 0)
        out[k + 1] += np.where(inside, t, 0) * (out[k + 1] == 0)
    return out


def _ball(radius_mm: float, affine: np.ndarray) -> np.ndarray:
    half = np.floor(radius_mm / _voxel_mm(affine)).astype(int)
    grid = np.mgrid[tuple(slice(-h, h + 1) for h in half)]
    mm = grid * _voxel_mm(affine)[:, None, None, None]
    return (mm**2).sum(axis=0) <= radius_mm**2


def _colin27_skull(
    brain: np.ndarray, tables: np.ndarray, darker_than_gm: np.ndarray, affine: np.ndarray
) -> np.ndarray:
    """The skull between the brain and the dark bone bands of a T1w.

    Only the skull's outer cortical table is dark enough to tell from CSF; the inner table and
    the diploë between them (grey in a T1w) lie in the gap between that band and the brain, so
    the gap is closed (:data:`SKULL_GAP_MM` wide at most) and kept where it is darker than grey
    matter and within :data:`SKULL_GAP_MM` of the band.
    """
    closed = ndimage.binary_closing(brain | tables, structure=_ball(SKULL_GAP_MM / 2, affine))
    near_band = ndimage.distance_transform_edt(~tables, sampling=_voxel_mm(affine)) <= SKULL_GAP_MM
    return tables | (closed & ~brain & near_band & darker_than_gm)


def load_colin27() -> LabelVolume:
    """Colin27 (T1 with head + brain mask) segmented by intensity and distance to the brain.

    Brain: fuzzy CSF/GM/WM memberships between 1D k-means centres. Outside the brain: the skull
    (:func:`_colin27_skull`) within :data:`SKULL_SHELL_MM` of the brain, very dark voxels farther
    out are sinus air, CSF-dark voxels next to the brain are CSF, bright voxels are fat, the rest
    is skin and muscle.
    """
    img = nib.load(reference_file("ch2.nii.gz"))
    t1 = np.asarray(img.dataobj, dtype=np.float32)
    brain = np.asarray(nib.load(reference_file("ch2bet.nii.gz")).dataobj) > 0
    csf_c, gm_c, wm_c = _kmeans_1d(t1[brain], [np.percentile(t1[brain], q) for q in (10, 50, 90)])
    head = _fill_head(t1 > 0.5 * csf_c) & ~brain
    f = np.zeros((N_TISSUES, *t1.shape), dtype=np.float32)
    csf, gm, wm = _memberships(t1, np.array([csf_c, gm_c, wm_c])) * brain
    f[Tissue.GM], f[Tissue.WM] = gm, wm
    _split_csf(f, csf, _depth_mm(brain, img.affine))
    to_brain = ndimage.distance_transform_edt(~brain, sampling=_voxel_mm(img.affine))
    very_dark = head & (t1 < 0.6 * csf_c)
    bright = head & (t1 > 0.5 * (gm_c + wm_c))
    skull = _colin27_skull(brain, very_dark & (to_brain < SKULL_SHELL_MM), t1 < gm_c, img.affine)
    skull &= head & ~bright & (to_brain < SKULL_SHELL_MM) & (to_brain > SUBARACHNOID_MM)
    csf_dark = head & ~very_dark & ~skull & (t1 < 0.5 * (csf_c + gm_c)) & (to_brain < 4)
    _split_bone(f, skull.astype(np.float32), img.affine)
    f[Tissue.SINUS] += very_dark & ~skull & (to_brain >= SKULL_SHELL_MM)
    f[Tissue.CSF] += csf_dark | (very_dark & ~skull & (to_brain < SKULL_SHELL_MM))
    f[Tissue.FAT] += bright
    soft = (head & ~skull & ~very_dark & ~csf_dark & ~bright).astype(np.float32)
    # the T1w has found the fat (bright): the rest of the soft tissue is not fat at any depth
    _split_scalp(f, soft, _depth_mm(head | brain, img.affine), fat_layer=False)
    return LabelVolume(_normalised(f), img.affine, MNI_HEAD_CENTRE_MM)


def load_mni2009a() -> LabelVolume:
    """MNI ICBM152 2009a at 1 mm: its sharp GM/WM maps inside the SPM TPM's CSF, skull, scalp and
    air (both in MNI space; the TPM is resampled onto the 2009a grid through the two affines)."""
    gm_img = nib.load(reference_file("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"))
    wm_img = nib.load(reference_file("mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"))
    gm, wm = (np.asarray(i.dataobj, dtype=np.float32) for i in (gm_img, wm_img))
    scale = max(float(gm.max()), float(wm.max()), 1.0)  # stored as 0–255 probabilities
    gm, wm = np.clip(gm / scale, 0, 1), np.clip(wm / scale, 0, 1)
    tpm_img = nib.load(reference_file("spm/TPM.nii.gz"))
    voxel_to_tpm = np.linalg.inv(tpm_img.affine) @ gm_img.affine
    tpm = np.stack(
        [
            ndimage.affine_transform(
                np.asarray(tpm_img.dataobj[..., k], dtype=np.float32),
                voxel_to_tpm[:3, :3],
                voxel_to_tpm[:3, 3],
                output_shape=gm.shape,
                order=1,
                mode="nearest",
            )
            for k in range(6)
        ]
    )
    tpm_gm, tpm_wm, csf, bone, soft, air = np.clip(tpm, 0, 1)
    bone, (_, _, csf, soft, air) = _individual_skull(bone, (tpm_gm, tpm_wm, csf, soft, air))
    brain_tissue = np.clip(gm + wm, 0, 1)
    wm = np.minimum(wm, brain_tissue - gm).clip(0)
    csf = np.clip(csf, 0, 1 - brain_tissue)
    rest = np.clip(1 - brain_tissue - csf, 0, None)
    outside = bone + soft + air
    share = np.divide(rest, outside, out=np.zeros_like(rest), where=outside > 1e-6)
    bone, soft, air = bone * share, soft * share, air * share
    f = np.zeros((N_TISSUES, *gm.shape), dtype=np.float32)
    f[Tissue.GM], f[Tissue.WM] = gm, wm
    head = _fill_head(air < 0.5)
    _split_csf(f, csf, _depth_mm(brain_tissue + csf > 0.5, gm_img.affine))
    _split_bone(f, bone, gm_img.affine)
    _split_scalp(f, soft, _depth_mm(head, gm_img.affine))
    _place_air(f, air, head, gm_img.affine)
    return LabelVolume(_normalised(f), gm_img.affine, MNI_HEAD_CENTRE_MM)


#: the real head CT's voxels mix the two tissues whose mean HU (:data:`HU_DISTRIBUTIONS`) bracket
#: their own, along this ladder; bone only within :data:`CT_BONE_REACH_MM` of bone (the noise of
#: soft tissue is no marrow) and fat only farther than :data:`CT_AIR_EDGE_MM` from air (an
#: air–skin edge is no fat)
CT_LADDER = (Tissue.SINUS, Tissue.FAT, Tissue.MUSCLE, Tissue.MARROW, Tissue.CORTICAL_BONE)
CT_HEAD_HU, CT_BONE_HU = -400.0, 250.0
CT_BONE_REACH_MM, CT_AIR_EDGE_MM = 2.0, 1.5
#: the cranial cavity is soft tissue of this HU range, cut from the scalp by an opening of this
#: radius (the foramina and orbits are narrower than it)
CT_CAVITY_HU, CT_CAVITY_OPENING_MM = (-20.0, 100.0), 5.0


def _ladder_fractions(hu: np.ndarray, tissues: tuple[Tissue, ...]) -> np.ndarray:
    """Two-tissue partial volumes along ``tissues`` (ascending mean HU): ``(len(tissues), ...)``."""
    anchors = np.array([HU_DISTRIBUTIONS[t][0] for t in tissues], dtype=np.float32)
    clipped = np.clip(hu, anchors[0], anchors[-1])
    out = np.zeros((len(tissues), *hu.shape), dtype=np.float32)
    for k in range(len(tissues) - 1):
        inside = (clipped >= anchors[k]) & (clipped < anchors[k + 1])
        t = (clipped - anchors[k]) / (anchors[k + 1] - anchors[k])
        out[k] += np.where(inside, 1 - t, 0)
        out[k + 1] += np.where(inside, t, 0)
    out[-1] += clipped >= anchors[-1]
    return out


def _resampled_1mm(img) -> tuple[np.ndarray, np.ndarray]:
    """``img`` (any orientation and voxel size) on a 1 mm RAS grid over its field of view."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in data.shape], indexing="ij"))
    world = nib.affines.apply_affine(img.affine, corners.reshape(3, -1).T)
    low, high = world.min(axis=0), world.max(axis=0)
    affine = np.eye(4)
    affine[:3, 3] = low
    shape = tuple(int(n) for n in np.floor(high - low) + 1)
    to_source = np.linalg.inv(img.affine) @ affine
    resampled = ndimage.affine_transform(
        data, to_source[:3, :3], to_source[:3, 3], output_shape=shape, order=1, cval=data.min()
    )
    return resampled, affine


def _slicewise_filled(mask: np.ndarray) -> np.ndarray:
    """Holes filled in each axial slice (air of the airway and sinuses open below the field of
    view is still inside the head)."""
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=2), in_plane)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("the head CT has no head")
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _head_without_rest(body: np.ndarray) -> np.ndarray:
    """The head of a CT's ``body`` mask, not the thin head rest it lies on: the largest component
    of the mask eroded by 2 voxels, grown back inside it."""
    core = _largest_component(ndimage.binary_erosion(body, iterations=2))
    return ndimage.binary_dilation(core, iterations=2) & body


def _cranial_cavity(hu: np.ndarray, head: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The largest soft-tissue region once the scalp's bridges to it are opened, restored to its
    full extent and with its holes filled."""
    soft = head & (hu > CT_CAVITY_HU[0]) & (hu < CT_CAVITY_HU[1])
    ball = _ball(CT_CAVITY_OPENING_MM, affine)
    core = _largest_component(ndimage.binary_erosion(soft, ball))
    return ndimage.binary_fill_holes(ndimage.binary_dilation(core, ball) & soft)


#: the head CT's world → MNI space (RAS mm): the affine that fits the MNI 2009a brain and CSF into
#: the CT's cranial cavity, found by antspyx (``scripts/fit_ct_head.py``)
MNI_FROM_CT_HEAD = np.array(
    [
        [1.093548, -0.025732, 0.008876, 138.320476],
        [-0.012579, 0.987064, 0.341531, -146.969664],
        [-0.010955, -0.385405, 1.099632, -45.250489],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def ct_head_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The head CT on a 1 mm RAS grid: HU, affine, head mask and cranial cavity."""
    hu, affine = _resampled_1mm(nib.load(reference_file("ct_head_invesalius0051.nii.gz")))
    head = _slicewise_filled(_head_without_rest(hu > CT_HEAD_HU))
    return hu, affine, head, _cranial_cavity(hu, head, affine)


def _on_ct_grid(mni: LabelVolume, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """``mni``'s fractions through :data:`MNI_FROM_CT_HEAD` on the head CT's grid (linear)."""
    to_mni = np.linalg.inv(mni.affine) @ MNI_FROM_CT_HEAD @ affine
    matrix, offset = to_mni[:3, :3], to_mni[:3, 3]
    return np.stack(
        [
            ndimage.affine_transform(channel, matrix, offset, output_shape=shape, order=1)
            for channel in mni.fractions
        ]
    )


def load_ct_head() -> LabelVolume:
    """A real head CT (InVesalius 0051, skull base to vertex) → fractions on a 1 mm grid.

    Outside the cranial cavity every voxel is read from its HU along :data:`CT_LADDER` (the real
    skull's tables and diploë, sinuses and mastoid air, scalp fat), soft tissue split by depth into
    skin and muscle. The cavity holds the MNI 2009a brain and CSF, affinely fitted into it
    (:data:`MNI_FROM_CT_HEAD`) and rescaled to fill it. Below the field of view is air.
    """
    hu, affine, head, cavity = ct_head_grid()
    bone_zone = ndimage.distance_transform_edt(hu < CT_BONE_HU, sampling=_voxel_mm(affine))
    air_zone = ndimage.distance_transform_edt(hu > CT_HEAD_HU, sampling=_voxel_mm(affine))
    ladder = _ladder_fractions(hu, CT_LADDER)
    sinus, fat, soft, marrow, cortical = ladder
    near_bone = bone_zone <= CT_BONE_REACH_MM
    soft = np.where(near_bone, soft, soft + marrow + cortical)
    marrow, cortical = marrow * near_bone, cortical * near_bone
    near_air = air_zone <= CT_AIR_EDGE_MM
    soft, fat = np.where(near_air, soft + fat, soft), fat * ~near_air
    f = np.zeros((N_TISSUES, *hu.shape), dtype=np.float32)
    outside = (head & ~cavity).astype(np.float32)
    f[Tissue.CORTICAL_BONE], f[Tissue.MARROW] = cortical * outside, marrow * outside
    f[Tissue.FAT], f[Tissue.SINUS] = fat * outside, sinus * outside
    _split_scalp(f, soft * outside, _depth_mm(head, affine), fat_layer=False)
    mni = load_mni2009a()
    brain = _on_ct_grid(mni, hu.shape, affine)[list(BRAIN_TISSUES)]
    total = brain.sum(axis=0)
    share = np.divide(1.0, total, out=np.zeros_like(total), where=total > 1e-3)
    brain = brain * share
    brain[BRAIN_TISSUES.index(Tissue.CSF)] += total <= 1e-3  # what the fitted brain misses
    for tissue, channel in zip(BRAIN_TISSUES, brain):
        f[tissue] += channel * cavity
    centroid = nib.affines.apply_affine(affine, np.argwhere(cavity).mean(axis=0))
    mni_brain = mni.fractions[list(BRAIN_TISSUES)].sum(axis=0) > 0.5
    mni_centroid = nib.affines.apply_affine(mni.affine, np.argwhere(mni_brain).mean(axis=0))
    centre = centroid + np.asarray(MNI_HEAD_CENTRE_MM) - mni_centroid
    return LabelVolume(_normalised(f), affine, tuple(float(c) for c in centre))


def brain_depth_and_normal(fractions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(4, ...)``: every voxel's depth (mm) below the surface of the brain and its CSF (0
    inside), then the unit outward normal in world axes (the gradient of the smoothed depth)."""
    brain = fractions[list(BRAIN_TISSUES)].sum(axis=0) > 0.5
    depth = ndimage.distance_transform_edt(~brain, sampling=_voxel_mm(affine))
    gradient = np.stack(np.gradient(ndimage.gaussian_filter(depth, 2.0)))  # per voxel index
    normal = np.einsum("ij,j...->i...", np.linalg.inv(affine[:3, :3]).T, gradient)
    normal /= np.maximum(np.linalg.norm(normal, axis=0), 1e-6)
    return np.concatenate([depth[None], normal]).astype(np.float32)


FILE_SOURCES = {
    "tpm": load_tpm,
    "mni2009a": load_mni2009a,
    "neuromorphometrics": load_neuromorphometrics,
    "colin27": load_colin27,
    "ct0051": load_ct_head,
}
