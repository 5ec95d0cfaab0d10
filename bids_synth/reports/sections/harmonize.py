"""Harmonization: input and harmonized image, and their intensity histograms per tissue."""

from __future__ import annotations

from bids_synth.reports import charts, rows
from bids_synth.reports.html import Html, figure, join
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.sections import register
from bids_synth.reports.session import Derivative, SessionFiles
from bids_synth.reports.synthesis import head_cuts, input_path, output_block
from bids_synth.reports.tissues import TISSUES, t1w_tissues


@register("harmonize", "Harmonization", order=80)
def harmonization(files: SessionFiles) -> Html | None:
    outputs = files.select(desc="harmonized")
    return join(_block(files, output) for output in outputs) if outputs else None


def _block(files: SessionFiles, output: Derivative) -> Html:
    harmonized = files.volume(output.path)
    head = files.mask_volume("head", like=harmonized)
    picture = [rows.image(f"harmonized\n{output.suffix}", harmonized, head)]
    source = input_path(files, output)
    if source is not None:
        original = files.volume(source).on_grid_of(harmonized)
        picture.insert(0, rows.image(f"input\n{output.suffix}", original, head))
    figures = [figure(
        mosaic(picture, head_cuts(files, harmonized)),
        f"{output.name}" + (f" and its input {source.name}" if source else "") + ", each on its own "
        "grey scale (0.5–99.5th percentile in the head).",
        alt="harmonization mosaic",
    )]  # fmt: skip
    classes = t1w_tissues(files)
    if classes is not None:
        tissues = classes.on_grid_of(harmonized, order=0).data.round()
        panels = [("input", original)] if source is not None else []
        panels.append(("harmonized", harmonized))
        figures.append(figure(
            charts.tissue_histograms([
                (title, {name: volume.data[tissues == k + 1] for k, name in enumerate(TISSUES)})
                for title, volume in panels
            ]),
            "Intensity distributions per tissue (CSF, GM, WM: three intensity classes of the T1w in "
            "the brain mask). After harmonization the peaks of one tissue sit at the same intensity "
            "for every participant and site.",
            alt="tissue histograms",
        ))  # fmt: skip
    return output_block(files, output, [], figures)
