"""Registration quality: each aligned modality under the T1w's tissue outlines and in a checkerboard."""

from __future__ import annotations

from bids_synth.reports import rows
from bids_synth.reports.html import Html, figure, join, tag
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.quality import registered_images, registration_scores
from bids_synth.reports.sections import register
from bids_synth.reports.session import SessionFiles
from bids_synth.reports.tissues import TISSUES, t1w_tissues
from bids_synth.reports.volumes import cut_positions

CUTS = 5


@register("registration", "Registration to the T1w", order=30)
def registration(files: SessionFiles) -> Html | None:
    images = registered_images(files)
    if files.t1w is None or not images:
        return None
    t1w = files.volume(files.t1w)
    head, brain = files.mask_volume("head", like=t1w), files.mask_volume("brain", like=t1w)
    outlines = _t1w_outlines(files, head, brain)
    scores = registration_scores(files)
    cuts = cut_positions(t1w, rows.inside(head), CUTS)
    parts = []
    for suffix, path in images.items():
        moved = files.volume(path)
        png = mosaic(
            [
                rows.image(f"{suffix}\n+ T1w outlines", moved, head, outlines=outlines),
                rows.checkerboard(f"T1w | {suffix}\ncheckerboard", t1w, moved, head),
            ],
            cuts,
        )
        parameters = _describe(files.sidecar(path).get("Parameters", {}))
        score = join([
            "Normalised mutual information with the T1w in the head mask: ",
            tag("b", f"{scores[suffix]:.3f}"),
            f" (1: one image a function of the other, 0: independent; compare across participants "
            f"for {suffix} only).",
        ])  # fmt: skip
        caption = (
            f"{path.name} ({parameters}). Top: the aligned {suffix} under outlines drawn from the "
            "T1w (yellow: white matter, red: brain mask, green: head mask); tissue borders should "
            f"follow them. Bottom: alternating cubes of the T1w and the {suffix}; anatomy should "
            "continue across cube borders."
        )
        parts += [
            tag("h4", f"{suffix} → T1w"),
            tag("p", score, class_="score"),
            figure(png, caption, alt=f"{suffix} registration check"),
        ]
    return join(parts)


def _t1w_outlines(files: SessionFiles, head, brain) -> tuple:
    """(volume, colour) outlines from the T1w: white matter, brain mask, head mask."""
    outlines = []
    tissues = t1w_tissues(files)
    if tissues is not None:
        white_matter = TISSUES.index("WM") + 1
        outlines.append((tissues.with_data(tissues.data == white_matter), rows.TISSUE_COLOR))
    outlines += [
        (mask, color)
        for mask, color in ((brain, rows.BRAIN_COLOR), (head, rows.HEAD_COLOR))
        if mask is not None
    ]
    return tuple(outlines)


def _describe(parameters: dict) -> str:
    if not parameters:
        return "no registration parameters recorded"
    return ", ".join(f"{key} {value}" for key, value in sorted(parameters.items()))
