"""Anatomical preprocessing: the bias-corrected T1w with its brain and head masks."""

from __future__ import annotations

import numpy as np

from bids_synth.reports import rows
from bids_synth.reports.html import Html, facts, figure, join
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.sections import register
from bids_synth.reports.session import SessionFiles
from bids_synth.reports.volumes import Volume, cut_positions

CUTS = 7
BRAIN_TO_HEAD = (0.15, 0.8)  # plausible range of the brain mask's share of the head mask volume


@register("anatomy", "Anatomical preprocessing", order=20)
def anatomy(files: SessionFiles) -> Html | None:
    if files.t1w is None:
        return None
    t1w = files.volume(files.t1w)
    head, brain = files.mask_volume("head"), files.mask_volume("brain")
    outlines = tuple(
        (m, c) for m, c in ((head, rows.HEAD_COLOR), (brain, rows.BRAIN_COLOR)) if m is not None
    )
    png = mosaic(
        [rows.image("T1w", t1w, head, outlines=outlines)],
        cut_positions(t1w, rows.inside(head, t1w), CUTS),
    )
    volumes = [
        (f"{kind} mask", f"{_millilitres(m):.0f} mL")
        for kind, m in (("head", head), ("brain", brain))
        if m is not None
    ]
    _check_brain_share(files, head, brain)
    return join([
        facts(volumes + _brain_method(files), class_="score"),
        figure(
            png,
            f"{files.t1w.name}: N4 bias-field corrected T1w, the reference grid of every other "
            "output. Outlines: brain mask in red, head mask in green. Grey scale: 0.5–99.5th "
            "percentile inside the head.",
            alt="T1w mosaic with mask outlines",
        ),
    ])  # fmt: skip


def _brain_method(files: SessionFiles) -> list[tuple[str, str]]:
    """How the brain mask was found (its sidecar's ``Method``, and ``Model``)."""
    path = files.mask("brain")
    sidecar = files.sidecar(path) if path is not None else {}
    if "Method" not in sidecar:
        return []
    model = sidecar.get("Model")
    return [("brain mask by", f"{model['Id']} {model['Version']}" if model else sidecar["Method"])]


def _millilitres(mask: Volume) -> float:
    return float((mask.data > 0.5).sum() * np.prod(mask.zooms) / 1000)


def _check_brain_share(files: SessionFiles, head: Volume | None, brain: Volume | None) -> None:
    if head is None or brain is None or not _millilitres(head):
        return
    share = _millilitres(brain) / _millilitres(head)
    if not BRAIN_TO_HEAD[0] <= share <= BRAIN_TO_HEAD[1]:
        files.warnings.append(
            f"the brain mask is {100 * share:.1f} % of the head mask's volume (expected "
            f"{100 * BRAIN_TO_HEAD[0]:.0f}–{100 * BRAIN_TO_HEAD[1]:.0f} %): check the brain extraction"
        )
