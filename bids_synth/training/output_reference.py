"""The Nyul reference of a harmonization bundle's own outputs at its target site.

A learned harmonizer undoes the contrast of a session's scanner but leaves part of the intensity
scale: its tissue distributions stay further apart than Nyul's, though SSIM/PSNR are better. Its
outputs standardised afterwards by Nyul landmarks in the head mask beat Nyul alone on every
measure in the scanner-upgrade benchmark cohort, with a reference learned from the bundle's
outputs for heads acquired at the target site itself: a reference the bundle can carry, so that
no cohort is needed. The head mask, not the brain mask: the network writes the whole head in the
target style, and preprocessing's brain mask, fitted on the input's contrast, varies with the
scanner (Dice 0.35–0.99 with the truth on the benchmark's simulated sites) where the head mask
does not. The heads are acquired at the target site, freed of their bias field, head-masked as
the pipeline does, then harmonized.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bids_synth.models.bundle import BUNDLE_FILE, Bundle
from bids_synth.synthesis import harmonization as hz
from bids_synth.synthesis.harmonization_reference import BUNDLE_REFERENCE_MASK, write_reference

LOG = logging.getLogger("bids_synth.training")

#: the reference file in the bundle folder (the format of the group level's Nyul references)
OUTPUT_REFERENCE_FILE = "nyul_reference.json"
#: the heads a reference is learned from: seeds apart from the recipes' training (100–) and
#: validation (9001–) heads and from the benchmarks' (1000–)
REFERENCE_FIRST_SEED = 7000
REFERENCE_HEADS = 6


def reference_heads(label_sources) -> list[tuple[str, int]]:
    """(label source, seed) of the reference's heads, taking the label sources in turn."""
    label_sources = sorted(label_sources)
    return [
        (label_sources[index % len(label_sources)], REFERENCE_FIRST_SEED + index)
        for index in range(REFERENCE_HEADS)
    ]


def add_output_reference(
    folder: str | Path, label_sources, *, spacing_mm: float, history: list[dict]
) -> Bundle:
    """Learn the reference from :func:`reference_heads` of ``label_sources`` at ``spacing_mm``,
    write it into the harmonization bundle in ``folder``, record it in its ``bundle.json``
    (``harmonization.output_reference``) and its card (rendered anew with the training
    ``history``). Returns the updated bundle."""
    from bids_synth.fileio import atomic_write_json, atomic_write_text
    from bids_synth.models.bundle import CARD_FILE
    from bids_synth.models.card import render_model_card

    heads = reference_heads(label_sources)
    bundle = Bundle.read(folder)
    suffix = bundle.meta["output"]["suffix"]
    reference = learn_output_reference(bundle, heads, spacing_mm=spacing_mm)
    write_reference(
        bundle.path / OUTPUT_REFERENCE_FILE, reference, suffix=suffix, mask=BUNDLE_REFERENCE_MASK
    )
    meta = dict(bundle.meta)
    meta["harmonization"] = {
        **meta["harmonization"],
        "output_reference": {
            "method": "nyul",
            "file": OUTPUT_REFERENCE_FILE,
            "learned_from": f"the bundle's {suffix} outputs for {len(heads)} heads of the head "
            f"model ({', '.join(sorted(set(label_sources)))} anatomies, seeds "
            f"{heads[0][1]}–{heads[-1][1]}) acquired at {meta['harmonization']['target']} "
            f"({spacing_mm:g} mm; bias removed), in the head mask of preprocessing",
        },
    }
    atomic_write_text(bundle.path / CARD_FILE, render_model_card(meta, history))
    atomic_write_json(bundle.path / BUNDLE_FILE, meta)
    return Bundle.read(folder)


def learn_output_reference(
    bundle: Bundle, heads: list[tuple[str, int]], *, spacing_mm: float
) -> hz.NyulReference:
    """Nyul landmarks of the bundle's outputs, each in its head mask."""
    from bids_synth.models.prediction import predict_mr_in_head

    landmarks, images = [], []
    for label_source, seed in heads:
        channels, head, affine = _target_site_session(bundle, label_source, seed, spacing_mm)
        output, _ = predict_mr_in_head(bundle, channels, affine, head, device="cpu")
        landmarks.append(hz.image_landmarks(hz.masked_values(output, head)))
        images.append({"label_source": label_source, "seed": seed})
        LOG.info("output reference: %s head %d done", label_source, seed)
    if not landmarks:
        raise ValueError("an output reference needs at least one head")
    return hz.learn_nyul(landmarks, images=images)


def _target_site_session(bundle: Bundle, label_source: str, seed: int, spacing_mm: float):
    """The bundle's input contrasts (T1w among them) of one head acquired at the bundle's target
    site, divided by their true bias fields (what N4 estimates in the pipeline), the head mask
    preprocessing would compute from the T1w, and the affine."""
    import ants

    from bids_synth.models.selection import contract
    from bids_synth.preproc.masks import head_mask
    from bids_synth.simulate.anatomy import draw_anatomy
    from bids_synth.simulate.scanner import ScannerStyle
    from bids_synth.simulate.subject import acquire

    site = bundle.meta["harmonization"]["target_site"]
    suffixes = contract(bundle)[0]
    anatomy = draw_anatomy(seed, label_source=label_source, spacing=spacing_mm)
    draw = acquire(anatomy, ScannerStyle.for_site(site), contrasts=suffixes, site=site)
    channels = [(draw.images[s] / draw.bias[s]).numpy().astype(np.float32) for s in suffixes]
    t1w = ants.from_numpy(channels[suffixes.index("T1w")], spacing=(float(spacing_mm),) * 3)
    return channels, head_mask(t1w).numpy() > 0, anatomy.affine
