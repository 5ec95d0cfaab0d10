"""What the synthesis sections share: inputs, ground truth, cut positions and an output's block."""

from __future__ import annotations

from pathlib import Path

from bids_synth.reports import rows
from bids_synth.reports.html import Html, facts, join, tag
from bids_synth.reports.mosaics import Row
from bids_synth.reports.session import Derivative, SessionFiles
from bids_synth.reports.sidecars import model_fields
from bids_synth.reports.volumes import Volume, cut_positions

CUTS = 5
GROUND_TRUTH = Path("derivatives") / "ground-truth"


def ground_truth(files: SessionFiles, output: Derivative) -> Path | None:
    """The clean image ``desc-clean_<suffix>`` in the ground truth of a simulated raw dataset
    (``RAW/derivatives/ground-truth``), preferring the output's ``res-`` entity; None without."""
    if files.raw_root is None:
        return None
    folder = files.raw_root / GROUND_TRUTH / f"sub-{files.subject}"
    if files.session:
        folder /= f"ses-{files.session}"
    found = [
        Derivative.parse(p)
        for p in sorted((folder / "anat").glob(f"*_desc-clean_{output.suffix}.nii*"))
    ]
    found.sort(key=lambda f: f.entities.get("res") != output.entities.get("res"))
    return found[0].path if found else None


def input_path(files: SessionFiles, output: Derivative) -> Path | None:
    """The output's input: the first ``Sources`` entry of its sidecar found on disk (warns if none)."""
    source = files.source(output.path)
    if source is None:
        files.warnings.append(f"{output.name}: none of its sidecar's Sources was found")
    return source


def input_row(files: SessionFiles, output: Derivative, head: Volume | None) -> Row | None:
    """The output's input in grey, labelled with its suffix; None when it is not found."""
    source = input_path(files, output)
    if source is None:
        return None
    return rows.image(f"input\n{Derivative.parse(source).suffix}", files.volume(source), head)


def head_cuts(files: SessionFiles, volume: Volume, count: int = CUTS) -> dict[int, list[float]]:
    """Cut positions spread over the head mask (the whole image without one)."""
    return cut_positions(volume, rows.inside(files.mask_volume("head", like=volume)), count)


def output_block(
    files: SessionFiles, output: Derivative, scores: list[tuple[str, str]], figures: list[Html]
) -> Html:
    """An output's heading, its QC numbers, its method/model line, then its figures."""
    return join([
        tag("h4", output.name),
        facts(scores, class_="score"),
        facts(model_fields(files.sidecar(output.path)), class_="facts muted"),
        *figures,
    ])  # fmt: skip
