"""Small analytic head images and BIDS folders for the foundation tests."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

# tissue intensities (T1w, T2w, CT HU) of the analytic phantom
TISSUES = {
    "air": (0.0, 0.0, -1000.0),
    "skin": (0.7, 0.6, 40.0),
    "skull": (0.05, 0.05, 1000.0),
    "csf": (0.2, 1.0, 5.0),
    "gm": (0.55, 0.75, 40.0),
    "wm": (0.85, 0.5, 25.0),
}


def phantom_labels(shape=(44, 52, 44), spacing=3.0) -> np.ndarray:
    """Nested ellipsoids: skin, skull, CSF, GM, WM, and two ventricles (label = tissue order)."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radius = (np.array(shape) - 1) / 2 * spacing  # mm
    coords = [(g - c) * spacing for g, c in zip(grid, centre)]

    def ellipsoid(scale, offset=(0, 0, 0)):
        return sum(((x - o) / (r * scale)) ** 2 for x, r, o in zip(coords, radius, offset)) <= 1

    labels = np.zeros(shape, np.int8)
    for index, scale in enumerate((0.92, 0.85, 0.78, 0.74, 0.6), start=1):
        labels[ellipsoid(scale)] = index
    for side in (-1, 1):
        labels[ellipsoid(0.12, (side * 12, 5, 5))] = 3
    labels[ellipsoid(0.1, (-15, -14, 10))] = 3  # asymmetric landmarks, so rotations are defined
    labels[ellipsoid(0.12, (14, 16, -10))] = 5
    return labels


def contrast(labels: np.ndarray, kind: str) -> np.ndarray:
    column = {"T1w": 0, "T2w": 1, "CT": 2}[kind]
    table = np.array([values[column] for values in TISSUES.values()], np.float32)
    image = table[labels]
    return image * 1000 if kind != "CT" else image


def affine(spacing=3.0, shape=(44, 52, 44)) -> np.ndarray:
    out = np.diag([spacing, spacing, spacing, 1.0])
    out[:3, 3] = -(np.array(shape) - 1) / 2 * spacing
    return out


def save(path: Path, data: np.ndarray, aff: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), aff), str(path))
    return path


def write_bids(root: Path, layout: dict, *, description: bool = True) -> Path:
    """Write a BIDS folder: ``layout`` maps 'sub-01' or 'sub-01/ses-a' to suffixes to write."""
    root.mkdir(parents=True, exist_ok=True)
    if description:
        (root / "dataset_description.json").write_text(
            json.dumps({"Name": "test", "BIDSVersion": "1.9.0"})
        )
    labels = phantom_labels()
    aff = affine()
    rng = np.random.default_rng(0)
    for unit, suffixes in layout.items():
        prefix = unit.replace("/", "_")
        for suffix in suffixes:
            kind = {"ct": "CT", "FLAIR": "T2w", "PD": "T2w"}.get(
                suffix.split("_")[-1], suffix.split("_")[-1]
            )
            image = contrast(labels, kind)
            if kind != "CT":
                image = image + rng.normal(0, 10, image.shape)
            save(root / unit / "anat" / f"{prefix}_{suffix}.nii.gz", image, aff)
    return root


def brainmask_bundle(folder):
    """A tiny, untrained ``brainmask`` bundle (the contract the recipes export)."""
    import torch

    from bids_synth.models.bundle import save_bundle
    from bids_synth.nn.factory import build_network

    torch.manual_seed(0)
    kwargs = {"in_channels": 3, "out_channels": 1, "channels": [4, 8], "dims": 2}
    meta = {
        "id": "brainmask-test-slab",
        "version": "0.0.1",
        "task": "brainmask",
        "architecture": {"name": "unet", "kwargs": kwargs},
        "inference": {"mode": "slabs", "slices": 3, "axes": [0, 1, 2]},
        "input": {
            "suffixes": ["T1w", "T2w", "FLAIR", "PD"],
            "channels": 1,
            "spacing_mm": [3.0] * 3,
            "orientation": "RAS",
            "normalization": {"method": "percentile", "low": 0.5, "high": 99.5},
        },
        "output": {"suffix": "mask", "normalization": {"method": "scale", "scale": 1.0}},
    }
    return save_bundle(folder, build_network("unet", **kwargs), meta=meta)
