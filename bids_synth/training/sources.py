"""Training data of a :class:`~bids_synth.training.spec.TrainingSpec`: image pairs of a BIDS
dataset (pybids) or heads of the generative head model, normalised as the bundle declares."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bids_synth.errors import InputDatasetError, NothingToProcessError
from bids_synth.resampling import resample_onto
from bids_synth.training.spec import TrainingSpec

LOG = logging.getLogger("bids_synth")


def training_data(spec: TrainingSpec, inputs: dict, output: dict):
    """The batches to train on and a ``data`` description for the bundle (``kind``,
    ``description``, ``validation``, and the ``subjects`` of a BIDS dataset)."""
    patch_options = {"patch": tuple(spec.patch), "batch_size": spec.batch_size}
    if spec.simulated:
        return simulated_data(spec, patch_options)
    return bids_data(spec, inputs, output, patch_options)


def bids_sets(bids_dir: Path, sources: list[str], anchor: str) -> list[dict]:
    """One dict per subject/session with an ``anchor`` image: its ``sources``, ``target`` (the
    anchor) and ``mask`` (a ``desc-body_mask`` derivative, or None) files."""
    from bids import BIDSLayout
    from bids.layout import Query

    if not (bids_dir / "dataset_description.json").is_file():
        raise InputDatasetError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    layout = BIDSLayout(
        str(bids_dir), validate=False, derivatives=(bids_dir / "derivatives").is_dir()
    )
    images = {"extension": [".nii", ".nii.gz"]}
    sets = []
    for anchor_file in layout.get(suffix=anchor, scope="raw", **images):
        where = {
            "subject": anchor_file.entities["subject"],
            "session": anchor_file.entities.get("session", Query.NONE),
        }
        found = [layout.get(suffix=suffix, scope="raw", **where, **images) for suffix in sources]
        if not all(found):
            LOG.warning(
                "skipping %s: missing %s",
                anchor_file.filename,
                [s for s, f in zip(sources, found) if not f],
            )
            continue
        masks = layout.get(suffix="mask", desc="body", scope="derivatives", **where, **images)
        sets.append(
            {
                "subject": where["subject"],
                "sources": [files[0].path for files in found],
                "target": anchor_file.path,
                "mask": masks[0].path if masks else None,
            }
        )
    if not sets:
        raise NothingToProcessError(
            f"{bids_dir}: no subject/session with {'+'.join(sources)} and {anchor}"
        )
    return sets


def load_set(entry: dict, inputs: dict, output: dict):
    """Normalised (sources, target, mask) arrays of one subject/session, on its first source's
    grid as the bundle will see it at inference (RAS, at the contract's spacing or, for a
    network on the acquired voxels, at its own)."""
    from bids_synth.fileio import load_image
    from bids_synth.models.prediction import to_model_grid
    from bids_synth.nn.intensity import normalize_channels, output_map

    reference = load_image(entry["sources"][0], what="source")

    def on_model_grid(path, what, order):
        data = _on_grid(load_image(path, what=what), reference, order)
        return to_model_grid(data, reference.affine, inputs, order=order)

    sources = np.stack([on_model_grid(path, "source", 1) for path in entry["sources"]])
    sources, maps = normalize_channels(sources, inputs["normalization"])
    target = on_model_grid(entry["target"], "target", 1)
    target = output_map(output["normalization"], maps[0]).apply(target)[None]
    mask = None if entry["mask"] is None else (on_model_grid(entry["mask"], "mask", 0) > 0)[None]
    return sources, target, mask


def _on_grid(img, reference, order: int) -> np.ndarray:
    """``img``'s data (float32) on ``reference``'s voxel grid, its minimum outside."""
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    voxel_map = np.linalg.inv(img.affine) @ reference.affine
    if np.allclose(voxel_map, np.eye(4)) and data.shape == reference.shape[:3]:
        return data
    return resample_onto(
        data, img.affine, reference.shape[:3], reference.affine, order=order, cval=float(data.min())
    )


def bids_data(spec: TrainingSpec, inputs: dict, output: dict, patch_options: dict):
    """Patches of a BIDS dataset's image sets; the last subject is held out when there are two
    or more. For a network on the acquired voxels, ``inputs["spacing_mm"]`` becomes the
    median voxel size it trains at."""
    from bids_synth.fileio import load_image
    from bids_synth.models.prediction import ras_spacing
    from bids_synth.nn.data import BlindSpot, HeldOut, VolumePatches

    self_supervised = spec.mode == "noise2self"
    anchor = spec.source[0] if self_supervised else spec.target
    sets = bids_sets(spec.bids_dir, list(spec.source), anchor)
    if inputs.get("grid") == "acquired":
        spacings = [ras_spacing(load_image(e["sources"][0], what="source").affine) for e in sets]
        inputs["spacing_mm"] = [round(float(s), 3) for s in np.median(spacings, axis=0)]
    loaded = [load_set(entry, inputs, output) for entry in sets]
    subjects = sorted({entry["subject"] for entry in sets})
    held_out = subjects[-1] if len(subjects) > 1 else None
    train = [item for entry, item in zip(sets, loaded) if entry["subject"] != held_out]
    held = [item for entry, item in zip(sets, loaded) if entry["subject"] == held_out]

    def patches(items, seed):
        masks = [m if m is not None else np.ones_like(t) for _, t, m in items]
        return VolumePatches(
            [s for s, _, _ in items],
            None if self_supervised else [t for _, t, _ in items],
            masks,
            seed=seed,
            paired=spec.mode != "cyclegan",
            pair_fn=BlindSpot() if self_supervised else None,
            **patch_options,
        )

    data = patches(train, spec.seed)
    if held:
        data = HeldOut(data, patches(held, spec.seed))
    description = (
        f"BIDS dataset {spec.bids_dir.resolve().name}: {len(sets)} image sets from "
        f"{len(subjects)} subjects, {'+'.join(spec.source)} → {output['suffix']}"
    )
    validation = (
        f"held-out subject sub-{held_out}"
        if held
        else "held-out random patches of the training images"
    )
    info = {"kind": "bids", "description": description, "subjects": subjects}
    return data, {**info, "validation": validation}


def simulated_data(spec: TrainingSpec, patch_options: dict):
    """Head-model pairs, normalised by the head model as the contracts declare."""
    from bids_synth.nn.data import SimulatedPairs, SimulatedPool

    target = "clean" if spec.denoising else spec.target
    options = dict(
        source=list(spec.source),
        target=target,
        seed=spec.seed,
        label_sources=tuple(spec.label_sources),
        noise=(spec.noise[0] / 100, spec.noise[1] / 100),
        spacing=spec.spacing,
        **patch_options,
    )
    if spec.harmonizing:
        options.update(target_site=spec.target_site, source_sites=spec.source_site_numbers())
    if spec.pool:
        pairs = SimulatedPool(
            subjects=spec.pool, validation_subjects=spec.validation_subjects, **options
        )
        heads = f"a pool of {spec.pool} simulated heads"
        validation = f"{spec.validation_subjects} held-out simulated heads (separate seed stream)"
    else:
        pairs = SimulatedPairs(**options)
        heads, validation = (
            "simulated heads drawn on the fly",
            "held-out simulated heads (separate seed stream)",
        )
    description = (
        f"{heads} from the bids-synth generative head model ({', '.join(spec.label_sources)} "
        f"anatomies, {spec.spacing:g} mm, MR noise {spec.noise[0]:g}-{spec.noise[1]:g} %), "
        f"{'+'.join(spec.source)} → {target}"
    )
    if spec.harmonizing:
        styles = ", ".join(
            "random" if s is None else f"site{s}" for s in spec.source_site_numbers()
        )
        description += (
            f" at site {spec.target_site} (traveling subjects: sources acquired with "
            f"{styles} scanner styles, with bias field and noise; target the same "
            f"anatomy's noise- and bias-free {target} at site {spec.target_site})"
        )
    return pairs, {"kind": "simulated", "description": description, "validation": validation}
