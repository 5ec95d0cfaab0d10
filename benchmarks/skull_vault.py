"""The skull vault of simulated heads' CT against the real head CT of the reference data.

Both CTs on one 1.5 mm isotropic grid (linear resampling of the real CT's 0.96 × 0.96 × 1.5 mm
voxels and of the simulation's 1 mm): the bone (≥ 300 HU, its largest component) in the top 35 %
of the head's height is the vault. Per CT: the mean HU of all bone and of the vault, the vault's
quartiles and share at ≥ 1,000 HU, the skull's thickness over the vertex (as ``bench_sct``
measures it: :func:`bids_synth.metrics.skull_thickness_mm`) and the vault's mean HU against depth
below the bone's surface — the cortical tables show as the
peak, the diploë as the dip behind it. This is the evidence for the head model's table thickness
(:data:`bids_synth.simulate.atlases.TABLE_MM`). The air enclosed by the head (below
:data:`ENCLOSED_AIR_HU` inside each axial slice's filled body, as the head CT's label source fills it) shows whether its sinuses are
cavities of air or a haze: its volume, its share below :data:`DEEP_AIR_HU` and its median HU.

    python benchmarks/skull_vault.py tpm:9002 mni2009a:100 colin27:90001 [--append]
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np
from scipy import ndimage

from bids_synth.metrics import skull_thickness_mm
from bids_synth.simulate.atlases import CT_HEAD_HU, _slicewise_filled
from bids_synth.synthesis.sct_methods import BONE_QC_HU

GRID_MM = 1.5
DENSE_HU = 1000.0
VAULT_SHARE = 0.35
DEPTH_BINS_MM = ((0.0, 1.6), (1.6, 3.1), (3.1, 4.6), (4.6, np.inf))
ENCLOSED_AIR_HU, DEEP_AIR_HU = -200.0, -800.0


def on_grid(hu: np.ndarray, spacing_mm) -> np.ndarray:
    """``hu`` resampled linearly to :data:`GRID_MM` isotropic voxels."""
    return ndimage.zoom(hu.astype(np.float32), np.asarray(spacing_mm) / GRID_MM, order=1)


def vault_figures(hu: np.ndarray) -> dict:
    """The figures of one RAS CT on the :data:`GRID_MM` grid (see the module's docstring)."""
    head = ndimage.binary_fill_holes(hu > CT_HEAD_HU)
    labels, count = ndimage.label(hu >= BONE_QC_HU)
    sizes = ndimage.sum(labels > 0, labels, range(1, count + 1))
    bone = labels == 1 + int(np.argmax(sizes))
    levels = np.nonzero(head.any(axis=(0, 1)))[0]
    vault = bone.copy()
    vault[..., : int(levels.max() - VAULT_SHARE * (levels.max() - levels.min()))] = False
    depths = ndimage.distance_transform_edt(bone, sampling=GRID_MM)[vault]
    values = hu[vault]
    return {
        "bone": float(hu[hu >= BONE_QC_HU].mean()),
        "vault": float(values.mean()),
        "quartiles": np.percentile(values, [25, 50, 75]).round().tolist(),
        "dense": float(np.mean(values >= DENSE_HU)),
        "thickness": skull_thickness_mm(hu >= BONE_QC_HU, hu > CT_HEAD_HU, [GRID_MM] * 3)["median"],
        "by_depth": [float(values[(depths > a) & (depths <= b)].mean()) for a, b in DEPTH_BINS_MM],
        **enclosed_air(hu),
    }


def enclosed_air(hu: np.ndarray) -> dict:
    """Volume (mL), share below :data:`DEEP_AIR_HU` and median HU of the air inside the head."""
    air = hu[_slicewise_filled(hu > CT_HEAD_HU) & (hu < ENCLOSED_AIR_HU)]
    return {
        "air_ml": air.size * GRID_MM**3 / 1000,
        "air_deep": float(np.mean(air < DEEP_AIR_HU)),
        "air_median": float(np.median(air)),
    }


def real_ct() -> np.ndarray:
    """The real head CT (InVesalius 0051) in RAS on the grid."""
    import nibabel as nib

    from bids_synth.refdata import reference_file

    image = nib.as_closest_canonical(nib.load(reference_file("ct_head_invesalius0051.nii.gz")))
    return on_grid(np.asanyarray(image.dataobj, np.float32), image.header.get_zooms()[:3])


def simulated_ct(source: str, seed: int) -> np.ndarray:
    """The CT of one 1 mm label head of ``source`` (RAS) on the grid."""
    from bids_synth.simulate.randomise import simulate_label_head

    head = simulate_label_head(seed, label_source=source, physics_contrasts=("T1w",))
    return on_grid(head.ct, [head.spacing_mm] * 3)


def row(name: str, figures: dict) -> str:
    q25, q50, q75 = figures["quartiles"]
    return (
        f"| {name} | {figures['bone']:.0f} | {figures['vault']:.0f} | {q25:.0f} / {q50:.0f} / "
        f"{q75:.0f} | {figures['dense']:.0%} | {figures['thickness']:.1f} | "
        + " / ".join(f"{value:.0f}" for value in figures["by_depth"])
        + f" | {figures['air_ml']:.0f} mL, {figures['air_deep']:.0%}, {figures['air_median']:.0f} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("heads", nargs="+", help="label source:seed of each simulated head")
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    from bids_synth.simulate.randomise import HEAD_MODEL_REVISION

    lines = [
        "| CT | bone mean (HU) | vault mean | vault quartiles | vault ≥ 1,000 HU | skull over the "
        "vertex (mm) | vault HU at 0–1.5 / 1.5–3 / 3–4.5 / > 4.5 mm deep | enclosed air: "
        "volume, share < −800 HU, median |",
        "|---|---|---|---|---|---|---|---|",
        row("real head CT (InVesalius 0051)", vault_figures(real_ct())),
    ]
    for head in args.heads:
        source, seed = head.split(":")
        figures = vault_figures(simulated_ct(source, int(seed)))
        lines.append(row(f"`{source}` seed {seed} (revision {HEAD_MODEL_REVISION})", figures))
        print(lines[-1], flush=True)
    body = f"On a {GRID_MM:g} mm grid:\n\n" + "\n".join(lines)
    print(body)
    if args.append:
        from harness import append_section

        title = "The skull vault of simulated heads against the real head CT"
        append_section(title, shlex.join(["python", *sys.argv]), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
