"""Score derivatives against reference images: pairing by BIDS entities, then :mod:`bids_synth.metrics`.

Pairing, per task (prediction in the derivatives dataset → reference of the same subject/session):

=========  ================================  ==================================================
task       prediction                        reference
=========  ================================  ==================================================
sct        ``desc-synthetic_CT``             raw ``_CT`` of the reference dataset
translate  ``desc-synthetic_<MR>``           raw ``_<MR>`` of the reference dataset
denoise    ``desc-denoised_<MR>``            ground truth ``desc-clean_<MR>``
superres   ``desc-superres_<MR>``            ground truth ``desc-clean_<MR>`` (same ``res-`` first)
harmonize  ``desc-harmonized_<MR>``          ground truth ``desc-clean_<MR>``
=========  ================================  ==================================================

The ground truth is the derivatives dataset ``REFERENCE_BIDS/derivatives/ground-truth`` that
``bids-synth simulate`` writes. The reference is brought onto the prediction's grid through the
``from-<suffix>_to-<space>_mode-image_xfm.mat`` transform of the derivatives when one exists
(antspyx), else kept as is when the grids agree, else resampled by the image affines; the
``reference_resampling`` column says which (``transform:<file>``, ``none``, ``affine``). Metrics
are computed in the derivatives' ``desc-head_mask`` when present, else in a threshold mask of the
reference (CT > −500 HU; MR > 10 % of its 99th percentile; holes filled), named in ``mask``.

Columns: CT — ``mae``, ``psnr``, ``ssim`` (SynthRAD) and ``ms_ssim``; MR — ``psnr``, ``ssim``,
``nrmse``, ``ms_ssim`` (n/a below 11 voxels along an axis), ``wasserstein`` (intensity
distributions), ``edge_sharpness_ratio`` (prediction / reference on the reference's edges),
``noise_sigma_prediction``/``_reference`` (wavelet estimate) and, with a ``desc-brain_mask``,
``dice_class1..3``/``dice_mean`` of a 3-class intensity k-means of each image. Translated MR has
arbitrary units, so both images are first divided by their 99th percentile in the mask.
Cross-site harmonization distances need several sessions at once: the harmonization benchmark
computes them with :func:`bids_synth.metrics.intensity_wasserstein`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from bids import BIDSLayout
from bids.layout import Query
from scipy import ndimage

from bids_synth import metrics
from bids_synth.bids import same_t1w_first
from bids_synth.errors import InputDatasetError, InvalidImageError, UsageError
from bids_synth.fileio import atomic_write_json, atomic_write_text, load_image
from bids_synth.modalities import AIR_HU, MR_SUFFIXES
from bids_synth.resampling import resample_onto

LOG = logging.getLogger("bids_synth.evaluation")

GROUND_TRUTH_DIR = Path("derivatives") / "ground-truth"
GROUND_TRUTH_DESC = "clean"
CT_BODY_THRESHOLD_HU = -500.0
ID_COLUMNS = (
    "subject",
    "session",
    "task",
    "prediction",
    "reference",
    "mask",
    "reference_resampling",
)
TSV_NAME, SUMMARY_NAME = "metrics.tsv", "summary.json"
_NIFTI = [".nii", ".nii.gz"]


@dataclass(frozen=True)
class PairingRule:
    """Which derivatives a task scores and where their references live."""

    desc: str
    suffixes: tuple[str, ...]
    reference_in_ground_truth: bool


RULES = {
    "sct": PairingRule("synthetic", ("CT",), reference_in_ground_truth=False),
    "translate": PairingRule("synthetic", MR_SUFFIXES, reference_in_ground_truth=False),
    "denoise": PairingRule("denoised", MR_SUFFIXES, reference_in_ground_truth=True),
    "superres": PairingRule("superres", MR_SUFFIXES, reference_in_ground_truth=True),
    "harmonize": PairingRule("harmonized", MR_SUFFIXES, reference_in_ground_truth=True),
}


def evaluate_derivatives(
    derivatives_dir: str | Path,
    reference_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    participant_labels: Sequence[str] | None = None,
) -> list[dict]:
    """One row per scored prediction: :data:`ID_COLUMNS` plus metric columns.

    Predictions without a reference, or whose images cannot be read, are skipped with a warning.
    """
    tasks = list(tasks or RULES)
    if unknown := sorted(set(tasks) - set(RULES)):
        raise UsageError(f"unknown evaluation task(s) {unknown}; choose from {list(RULES)}")
    derivatives = _layout(derivatives_dir, "derivatives", derivative=True)
    raw = _layout(reference_dir, "reference", derivative=False)
    ground_truth_dir = Path(reference_dir) / GROUND_TRUTH_DIR
    ground_truth = (
        _layout(ground_truth_dir, "ground truth", derivative=True)
        if ground_truth_dir.is_dir()
        else None
    )
    subjects = [label.removeprefix("sub-") for label in participant_labels or []]
    rows = []
    unscored = []
    for task in tasks:
        rule = RULES[task]
        references = ground_truth if rule.reference_in_ground_truth else raw
        for prediction in derivatives.get(
            desc=rule.desc,
            suffix=list(rule.suffixes),
            extension=_NIFTI,
            subject=subjects or Query.ANY,
        ):
            name = Path(prediction.path).name
            reference = _find_reference(prediction, rule, references)
            if reference is None:  # the normal case (no CT of the subject): one line at the end
                unscored.append(f"{name} (no reference {_reference_wanted(prediction, rule)})")
                continue
            try:
                rows.append(_score(task, prediction, reference, derivatives))
            except (InvalidImageError, ValueError) as exc:  # unreadable image, empty or tiny mask
                LOG.warning("%s skipped: %s", name, exc)
    if unscored:
        LOG.info("%d output(s) not scored, e.g. %s", len(unscored), unscored[0])
    return rows


def write_evaluation(rows: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``metrics.tsv`` (the rows) and ``summary.json`` (per task and metric) atomically.

    The summary gives mean, median, sample std (None below 2 values) and n of each metric over its
    finite values (an identical image pair has PSNR = inf, which is left out).
    """
    out_dir = Path(out_dir)
    columns = list(ID_COLUMNS) + [key for key in _ordered_keys(rows) if key not in ID_COLUMNS]
    lines = ["\t".join(columns)] + [
        "\t".join(_tsv_cell(row.get(c)) for c in columns) for row in rows
    ]
    tsv = atomic_write_text(out_dir / TSV_NAME, "\n".join(lines) + "\n")
    summary = {
        task: {
            "n": len(task_rows),
            "metrics": {
                key: _statistics([row[key] for row in task_rows if key in row])
                for key in _ordered_keys(task_rows)
                if key not in ID_COLUMNS
            },
        }
        for task in RULES
        if (task_rows := [row for row in rows if row["task"] == task])
    }
    return tsv, atomic_write_json(out_dir / SUMMARY_NAME, summary)


# --- pairing ---------------------------------------------------------------------------------------


def _layout(path: str | Path, what: str, derivative: bool) -> BIDSLayout:
    path = Path(path)
    if not path.is_dir():
        raise InputDatasetError(f"{what} folder {path} does not exist or is not a directory")
    try:
        if derivative:
            return BIDSLayout(path, validate=False, config=["bids", "derivatives"])
        return BIDSLayout(path, validate=False)
    except Exception as exc:  # pybids raises many kinds for unreadable datasets
        raise InputDatasetError(f"cannot index {what} folder {path}: {exc}") from exc


def _same_acquisition(prediction) -> dict:
    entities = prediction.get_entities()
    return {"subject": entities["subject"], "session": entities.get("session", Query.NONE)}


def _find_reference(prediction, rule: PairingRule, references: BIDSLayout | None):
    if references is None:
        return None
    suffix = prediction.get_entities()["suffix"]
    filters = {"desc": GROUND_TRUTH_DESC} if rule.reference_in_ground_truth else {}
    candidates = references.get(
        **_same_acquisition(prediction),
        suffix=[suffix, suffix.lower()],  # CT is also spelt ct
        extension=_NIFTI,
        **filters,
    )
    resolution = prediction.get_entities().get("res")
    candidates.sort(key=lambda f: (f.get_entities().get("res") != resolution, f.path))
    if len(candidates) > 1:
        LOG.info(
            "%d references for %s, using %s",
            len(candidates),
            prediction.filename,
            candidates[0].filename,
        )
    return candidates[0] if candidates else None


def _reference_wanted(prediction, rule: PairingRule) -> str:
    entities = prediction.get_entities()
    where = (
        f"ground truth {GROUND_TRUTH_DIR}"
        if rule.reference_in_ground_truth
        else "reference dataset"
    )
    desc = f"desc-{GROUND_TRUTH_DESC}_" if rule.reference_in_ground_truth else ""
    session = f" ses-{entities['session']}" if "session" in entities else ""
    return f"{desc}{entities['suffix']} of sub-{entities['subject']}{session} in the {where}"


def _find_derivative(derivatives: BIDSLayout, prediction, **filters):
    found = derivatives.get(**_same_acquisition(prediction), **filters)
    return same_t1w_first(found, prediction)[0] if found else None


# --- scoring ---------------------------------------------------------------------------------------


def _score(task: str, prediction, reference, derivatives: BIDSLayout) -> dict:
    pred_img = load_image(prediction.path, what="prediction")
    pred = pred_img.get_fdata(dtype=np.float64)
    is_ct = task == "sct"
    ref, resampling = _reference_on_grid(reference, prediction, pred_img, derivatives, is_ct)
    mask, mask_source = _evaluation_mask(derivatives, prediction, pred_img, ref, is_ct)
    row = {
        **{key: prediction.get_entities().get(key, "n/a") for key in ("subject", "session")},
        "task": task,
        "prediction": prediction.relpath,
        "reference": reference.relpath,
        "mask": mask_source,
        "reference_resampling": resampling,
    }
    if is_ct:
        return row | metrics.ct_metrics(ref, pred, mask)
    if task == "translate":
        ref, pred = (image / np.percentile(image[mask], 99) for image in (ref, pred))
    brain = _find_derivative(derivatives, prediction, desc="brain", suffix="mask", extension=_NIFTI)
    brain_mask = None if brain is None else _mask_on_grid(brain, pred_img)
    return row | _mr_metrics(ref, pred, mask, brain_mask, pred_img.header.get_zooms()[:3])


def _mr_metrics(ref, pred, mask, brain_mask, spacing) -> dict:
    edges = metrics.edge_mask(ref, mask, spacing=spacing)
    scores = {
        "psnr": metrics.psnr(ref, pred, mask),
        "ssim": metrics.ssim(ref, pred, mask),
        "nrmse": metrics.nrmse(ref, pred, mask),
        "ms_ssim": (
            metrics.ms_ssim(ref, pred, mask)
            if min(ref.shape) >= metrics.MS_SSIM_WINDOW
            else math.nan
        ),
        "wasserstein": metrics.intensity_wasserstein(ref, pred, mask, mask),
        "edge_sharpness_ratio": (
            metrics.mean_edge_gradient(pred, edges, spacing)
            / metrics.mean_edge_gradient(ref, edges, spacing)
        ),
        "noise_sigma_prediction": metrics.wavelet_noise_sigma(pred, mask),
        "noise_sigma_reference": metrics.wavelet_noise_sigma(ref, mask),
    }
    if brain_mask is not None and brain_mask.any():
        dice = metrics.dice_per_label(
            metrics.intensity_classes(ref, brain_mask),
            metrics.intensity_classes(pred, brain_mask),
            labels=(1, 2, 3),
        )
        scores |= {f"dice_class{label}": value for label, value in dice.items()}
        scores["dice_mean"] = metrics.mean_dice(dice)
    return scores


def _reference_on_grid(
    reference, prediction, pred_img, derivatives, is_ct
) -> tuple[np.ndarray, str]:
    """The reference on the prediction grid and how it got there: transform:<file>, none or affine."""
    ref_img = load_image(
        reference.path, what="reference"
    )  # also checks the file before ANTs reads it
    background = AIR_HU if is_ct else 0.0
    transform = _find_transform(derivatives, prediction, reference)
    if transform is not None:
        import ants  # slow to import: only when a transform is used

        moved = ants.apply_transforms(
            fixed=ants.image_read(prediction.path),
            moving=ants.image_read(reference.path),
            transformlist=[transform.path],
            interpolator="linear",
            defaultvalue=background,
        )
        return moved.numpy().astype(np.float64), f"transform:{transform.filename}"
    if _same_grid(ref_img, pred_img):
        return ref_img.get_fdata(dtype=np.float64), "none"
    data = np.asanyarray(ref_img.dataobj)
    moved = resample_onto(data, ref_img.affine, pred_img.shape, pred_img.affine, cval=background)
    return moved.astype(np.float64), "affine"


def _find_transform(derivatives, prediction, reference):
    """``from-<reference suffix>_to-<prediction space>_mode-image_xfm.mat`` (ANTs), if any."""
    space = prediction.get_entities().get("space")
    if space is None:
        return None
    return _find_derivative(
        derivatives,
        prediction,
        suffix="xfm",
        extension=".mat",
        mode="image",
        **{"from": reference.get_entities()["suffix"], "to": space},
    )


def _mask_on_grid(mask_file, pred_img) -> np.ndarray:
    """A ``_mask`` file as a boolean array on the prediction grid (nearest neighbour)."""
    try:  # not load_image, which rejects constant images
        mask_img = nib.load(mask_file.path)
        inside = np.asanyarray(mask_img.dataobj) > 0
    except Exception as exc:  # nibabel raises many kinds for corrupt files
        raise InvalidImageError(f"mask {mask_file.filename}: unreadable NIfTI ({exc})") from exc
    if _same_grid(mask_img, pred_img):
        return inside
    moved = resample_onto(
        inside.astype(np.uint8), mask_img.affine, pred_img.shape, pred_img.affine, order=0
    )
    return moved > 0


def _same_grid(image: nib.Nifti1Image, target: nib.Nifti1Image) -> bool:
    return image.shape == target.shape and np.allclose(image.affine, target.affine, atol=1e-4)


def _evaluation_mask(derivatives, prediction, pred_img, ref, is_ct) -> tuple[np.ndarray, str]:
    head = _find_derivative(derivatives, prediction, desc="head", suffix="mask", extension=_NIFTI)
    if head is not None:
        mask = _mask_on_grid(head, pred_img)
        if mask.any():
            return mask, head.filename
        LOG.warning(
            "%s is empty on the grid of %s: thresholding the reference",
            head.filename,
            prediction.filename,
        )
    threshold = CT_BODY_THRESHOLD_HU if is_ct else 0.1 * np.percentile(ref, 99)
    return ndimage.binary_fill_holes(ref > threshold), f"reference>{threshold:.4g}"


# --- tables ----------------------------------------------------------------------------------------


def _ordered_keys(rows: Iterable[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _tsv_cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.6g}"
    return str(value)


def _statistics(values: list[float]) -> dict:
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if not finite.size:
        return {"mean": None, "median": None, "std": None, "n": 0}
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else None,
        "n": int(finite.size),
    }
