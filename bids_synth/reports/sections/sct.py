"""Synthetic CT: bone window, bone over the MR, μ-map, and the difference to a real CT when aligned."""

from __future__ import annotations

import numpy as np

from bids_synth.metrics import ct_mae, ct_psnr
from bids_synth.modalities import SCORING_HU_RANGE
from bids_synth.reports import rows
from bids_synth.reports.html import Html, figure, join
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.sections import register
from bids_synth.reports.session import Derivative, SessionFiles
from bids_synth.reports.synthesis import head_cuts, output_block
from bids_synth.reports.volumes import Volume

BONE_HU = 300.0  # overlay threshold: cancellous and cortical bone
DIFFERENCE_HU = (-400.0, 400.0)
MUMAP_WINDOW = (0.0, 0.15)  # cm⁻¹ at 511 keV: air 0, water 0.096, cortical bone ≈ 0.15+


@register("sct", "Synthetic CT", order=40)
def synthetic_ct(files: SessionFiles) -> Html | None:
    outputs = files.select("CT", desc="synthetic")
    return join(_block(files, output) for output in outputs) if outputs else None


def _block(files: SessionFiles, output: Derivative) -> Html:
    sct = files.volume(output.path)
    head, brain = files.mask_volume("head", like=sct), files.mask_volume("brain", like=sct)
    space = output.entities.get("space")
    picture = [rows.image("synthetic CT\nbone window", sct, window=rows.BONE_WINDOW, colorbar="HU")]
    if files.t1w is not None:
        picture.append(rows.overlay(
            f"bone ≥{BONE_HU:.0f} HU\non T1w", files.volume(files.t1w), head, sct,
            window=(BONE_HU, 1500.0), threshold=BONE_HU, cmap="autumn", units="HU",
        ))  # fmt: skip
    mumap = files.find("mumap", desc="synthetic", space=space)
    if mumap is not None:
        picture.append(
            rows.image("μ-map\n511 keV", files.volume(mumap), window=MUMAP_WINDOW, colorbar="1/cm")
        )
    caption = (
        f"{output.name}: bone window (level 500, width 2000 HU); bone (≥ {BONE_HU:.0f} HU) in "
        "colour over the preprocessed T1w"
        + (f"; {mumap.name}: attenuation at 511 keV" if mumap else "")
        + "."
    )
    figures = [figure(mosaic(picture, head_cuts(files, sct)), caption, alt="synthetic CT mosaic")]
    scores = _qc(sct.data, head, brain)
    core_bone = files.sidecar(output.path).get("BoneFractionBrainCore")
    if core_bone is not None:
        scores.append(("bone-range voxels in the brain core", f"{100 * core_bone:.2f} %"))
    real_path = files.find("CT", space=space, desc="preproc")
    if real_path is not None:
        real = files.volume(real_path).on_grid_of(sct, fill=SCORING_HU_RANGE[0])
        scores += _agreement(real, sct, head)
        figures.append(figure(
            mosaic([rows.image("real CT\n(aligned)", real, window=rows.BONE_WINDOW, colorbar="HU"),
                    rows.difference("synthetic\n− real CT", sct, real, head, units="HU", window=DIFFERENCE_HU)],
                   head_cuts(files, sct)),
            f"Reference {real_path.name} (the participant's CT aligned to the T1w) and the difference "
            f"synthetic − real inside the head mask (±{DIFFERENCE_HU[1]:.0f} HU). A misaligned real CT "
            "shows as paired red/blue rims along the skull.",
            alt="synthetic CT against the real CT",
        ))  # fmt: skip
    return output_block(files, output, scores, figures)


def _qc(hu: np.ndarray, head: Volume | None, brain: Volume | None) -> list[tuple[str, str]]:
    """Mean HU in the brain and in bone, and the share of voxels outside the SynthRAD HU range."""
    scores = []
    if brain is not None and brain.data.any():
        scores.append(("mean HU in brain", f"{hu[brain.data > 0.5].mean():.1f}"))
    bone = hu >= BONE_HU if head is None else (hu >= BONE_HU) & (head.data > 0.5)
    scores.append(("mean HU in bone", f"{hu[bone].mean():.0f}" if bone.any() else "no bone"))
    low, high = SCORING_HU_RANGE
    outside = np.mean((hu < low) | (hu > high))
    scores.append((f"voxels outside [{low:.0f}, {high:.0f}] HU", f"{100 * outside:.2f} %"))
    return scores


def _agreement(real: Volume, sct: Volume, head: Volume | None) -> list[tuple[str, str]]:
    mask = rows.inside(head)
    return [
        ("MAE vs real CT", f"{ct_mae(real.data, sct.data, mask):.1f} HU"),
        ("PSNR", f"{ct_psnr(real.data, sct.data, mask):.2f} dB"),
    ]
