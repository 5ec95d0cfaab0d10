"""Predict with a model bundle on its declared grid: RAS, its spacing, its normalisation.

Every learned task (sct, translate, denoise model, learned harmonization) runs its bundle through
:func:`predict_on_grid`; torch is imported only when a prediction is made.
"""

from __future__ import annotations

import numpy as np

SPACING_TOLERANCE = 0.1  # relative: closer to the contract's spacing than this runs as is
#: the input contract's ``grid``: resample to its ``spacing_mm``, or run on the image's own voxels
#: (a denoiser: noise is independent per acquired voxel, and interpolation correlates it)
GRIDS = ("spacing", "acquired")
HEAD_MARGIN_VOXELS = 4  # context kept around the head's bounding box


def head_box(head: np.ndarray, margin: int = HEAD_MARGIN_VOXELS) -> tuple[slice, ...]:
    """The bounding box of ``head`` grown by ``margin`` voxels (the whole grid when empty)."""
    found = np.argwhere(head)
    if not len(found):
        return tuple(slice(0, n) for n in head.shape)
    low = np.maximum(found.min(0) - margin, 0)
    high = np.minimum(found.max(0) + 1 + margin, head.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def ras_spacing(affine: np.ndarray) -> np.ndarray:
    """The voxel size along the RAS+ voxel axes of an image with ``affine``."""
    from nibabel import orientations as ornt

    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return spacing[np.argsort(ornt.io_orientation(affine)[:, 0])]


def _canonical(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``data`` reoriented to RAS+ voxel axes."""
    from nibabel import orientations as ornt

    to_ras = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt("RAS"))
    return ornt.apply_orientation(data, to_ras)


def model_spacing(input_contract: dict, spacing: np.ndarray) -> np.ndarray:
    """The voxel size at which a bundle whose input contract is ``input_contract`` sees an image
    of RAS voxel size ``spacing``."""
    if input_contract.get("grid", "spacing") == "acquired":
        return spacing
    return np.asarray(input_contract.get("spacing_mm", spacing), float)


def needs_resampling(spacing: np.ndarray, wanted: np.ndarray) -> bool:
    """Whether ``spacing`` is further than :data:`SPACING_TOLERANCE` from ``wanted``."""
    return bool(np.any(np.abs(spacing / wanted - 1) > SPACING_TOLERANCE))


def to_model_grid(data: np.ndarray, affine: np.ndarray, input_contract: dict, *, order: int = 1):
    """``data`` as a bundle of ``input_contract`` sees it, in training as in
    :func:`predict_on_grid`: RAS voxel axes, resampled to the contract's spacing (spline
    ``order``) when it differs by more than 10 %."""
    from scipy.ndimage import zoom

    ras, spacing = _canonical(data, affine), ras_spacing(affine)
    wanted = model_spacing(input_contract, spacing)
    return zoom(ras, spacing / wanted, order=order) if needs_resampling(spacing, wanted) else ras


def predict_on_grid(
    bundle,
    channels: list[np.ndarray],
    affine: np.ndarray,
    *,
    device: str,
    mask: np.ndarray | None = None,
    batch_size: int = 2,
    adapt_steps: int | None = None,
) -> tuple[np.ndarray, dict]:
    """The bundle's prediction for ``channels`` (same grid, ``affine``), on that grid.

    The volumes are reoriented to RAS, resampled (linear) to the contract's spacing when it
    differs by more than 10 % (never for an ``acquired`` grid, see :data:`GRIDS`), normalised as
    the contract declares (statistics inside ``mask``, the head mask, as in training, when
    given), predicted with :func:`predict_volume` (3D bundles) or :func:`predict_volume_slabs`
    (2.5D bundles, ``inference.mode`` ``slabs``), only in the mask's bounding box when given (air
    costs no windows; outside it the prediction's minimum), and mapped back. A bundle that
    declares an ``inference.adaptation`` (:mod:`bids_synth.nn.adaptation`) is first fine-tuned
    on the image itself, its noise σ estimated in the mask as the denoising sidecars do;
    ``adapt_steps`` overrides its steps (0: none; a 2.5D bundle that declares none is then
    adapted with the default settings). Returns the prediction and predict_volume's info.
    """
    from nibabel import orientations as ornt
    from scipy.ndimage import zoom

    from bids_synth.errors import ModelBundleError
    from bids_synth.nn.adaptation import normalisation_gains
    from bids_synth.nn.inference import predict_volume
    from bids_synth.nn.slabs import ENSEMBLE_SIZES, FUSIONS, predict_volume_slabs

    inference = bundle.meta.get("inference", {})
    if inference.get("fusion", "mean") not in FUSIONS:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: unknown inference fusion {inference['fusion']!r} "
            f"(expected one of {', '.join(FUSIONS)})"
        )
    adaptation = _adaptation(bundle, adapt_steps)
    if inference.get("symmetries", 1) not in ENSEMBLE_SIZES:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: an ensemble of {inference['symmetries']!r} lattice "
            f"symmetries (expected one of {', '.join(map(str, ENSEMBLE_SIZES))})"
        )
    if not isinstance(inference.get("mirror", False), bool):
        raise ModelBundleError(
            f"model bundle {bundle.ref}: inference mirror {inference['mirror']!r} "
            "(expected true or false)"
        )
    grid = bundle.meta["input"].get("grid", "spacing")
    if grid not in GRIDS:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: unknown input grid {grid!r} "
            f"(expected one of {', '.join(GRIDS)})"
        )

    contract = bundle.meta["input"]
    shape = _canonical(channels[0], affine).shape
    volume = np.stack(
        [to_model_grid(np.asarray(c, np.float32), affine, contract) for c in channels]
    )
    spacing = ras_spacing(affine)
    resample = needs_resampling(spacing, model_spacing(contract, spacing))
    foreground = None
    if mask is not None:
        foreground = to_model_grid((mask > 0.5).astype(np.uint8), affine, contract, order=0) > 0
    network = bundle.load_network("cpu")
    empty = foreground is not None and not foreground.any()
    if adaptation is not None and (empty or not normalisation_gains(network)):
        raise ModelBundleError(
            f"model bundle {bundle.ref}: cannot adapt to this image (it needs normalisation "
            "gains in the network and a non-empty mask)"
        )
    box = head_box(foreground) if foreground is not None else (slice(None),) * 3
    common = dict(
        batch_size=batch_size,
        device=device,
        input_norm=bundle.meta["input"].get("normalization"),
        output_norm=bundle.meta["output"].get("normalization"),
        foreground=None if foreground is None else foreground[box],
    )
    inside_volume = np.ascontiguousarray(volume[(slice(None), *box)])
    if inference.get("mode") == "slabs":
        inside, info = predict_volume_slabs(
            network,
            inside_volume,
            slices=inference["slices"],
            axes=inference.get("axes", (0, 1, 2)),
            amp=inference.get("amp", "auto"),
            fusion=inference.get("fusion", "mean"),
            symmetries=inference.get("symmetries", 1),
            mirror=inference.get("mirror", False),
            adaptation=adaptation,
            noise_sigma=None if adaptation is None else _noise_sigma(inside_volume[0], common),
            **common,
        )
    else:
        inside, info = predict_volume(
            network,
            inside_volume,
            patch=inference.get("patch", [64, 64, 64]),
            overlap=inference.get("overlap", 0.5),
            **common,
        )
    if inside.ndim == 4:
        inside = inside[0]
    prediction = np.full(volume.shape[1:], inside.min(), np.float32)
    prediction[box] = inside
    if resample:  # back onto the participant's grid
        prediction = zoom(prediction, np.asarray(shape) / np.asarray(prediction.shape), order=1)
    back = ornt.ornt_transform(ornt.axcodes2ornt("RAS"), ornt.io_orientation(affine))
    return ornt.apply_orientation(prediction, back).astype(np.float32), info


def predict_mr_in_head(
    bundle, channels: list[np.ndarray], affine: np.ndarray, head: np.ndarray, *, device: str
) -> tuple[np.ndarray, dict]:
    """An MR-valued prediction (translation, learned harmonization): :func:`predict_on_grid` with
    head-mask statistics, clipped at 0 and 0 outside ``head``. Returns the image and the info."""
    predicted, info = predict_on_grid(bundle, channels, affine, device=device, mask=head)
    return np.where(head, np.maximum(predicted, 0), 0).astype(np.float32), info


def _noise_sigma(image: np.ndarray, common: dict) -> float:
    """The noise σ of ``image`` in its foreground (all of it without one), as the denoising
    sidecars estimate it."""
    from bids_synth.metrics import wavelet_noise_sigma

    foreground = common["foreground"]
    return wavelet_noise_sigma(
        image, np.ones(image.shape, bool) if foreground is None else foreground
    )


def _adaptation(bundle, steps: int | None):
    """The :class:`~bids_synth.nn.adaptation.SureAdaptation` that the bundle declares, with
    ``steps`` when given (0: none)."""
    from dataclasses import replace

    from bids_synth.errors import ModelBundleError
    from bids_synth.nn.adaptation import SureAdaptation

    inference = bundle.meta.get("inference", {})
    declared = inference.get("adaptation")
    try:
        adaptation = SureAdaptation.from_dict(declared) if declared else None
    except (TypeError, ValueError) as exc:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: inference adaptation {declared!r} ({exc})"
        ) from exc
    if steps is not None:
        adaptation = replace(adaptation or SureAdaptation(), steps=steps) if steps else None
    if adaptation is not None and inference.get("mode") != "slabs":
        raise ModelBundleError(f"model bundle {bundle.ref}: only 2.5D bundles adapt to an image")
    return adaptation
