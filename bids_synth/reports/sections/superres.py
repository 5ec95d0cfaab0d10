"""Super-resolution: through-plane views of the thick-slice input and the isotropic output."""

from __future__ import annotations

import numpy as np

from bids_synth.metrics import psnr
from bids_synth.reports import rows
from bids_synth.reports.html import Html, figure, join
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.sections import register
from bids_synth.reports.session import Derivative, SessionFiles
from bids_synth.reports.synthesis import ground_truth, head_cuts, input_path, output_block
from bids_synth.reports.volumes import PLANE_NAMES, robust_window


@register("superres", "Super-resolution", order=70)
def super_resolution(files: SessionFiles) -> Html | None:
    outputs = files.select(desc="superres")
    return join(_block(files, output) for output in outputs) if outputs else None


def _block(files: SessionFiles, output: Derivative) -> Html:
    result = files.volume(output.path)
    head = files.mask_volume("head", like=result)
    region = rows.inside(head)
    window = robust_window(result.data, region)
    source = input_path(files, output)
    scores = [("output voxel", _size(result.zooms))]
    picture = [rows.image(f"super-resolved\n{output.suffix}", result, window=window)]
    thick_axis = 2  # without the input, show the planes through the superior axis
    if source is not None:
        thin = files.volume(source)
        thick_axis = int(np.argmax(thin.zooms))
        picture.insert(0, rows.image(f"input\n{output.suffix}", thin, window=window))
        scores.insert(0, ("input voxel", _size(thin.zooms)))
    truth_path = ground_truth(files, output)
    if truth_path is not None:
        truth = files.volume(truth_path).on_grid_of(result)
        picture.append(rows.image(f"ground truth\n{output.suffix}", truth, window=window))
        scores.append(("PSNR vs ground truth", f"{psnr(truth.data, result.data, region):.2f} dB"))
    planes = tuple(axis for axis in (2, 1, 0) if axis != thick_axis)
    caption = (
        f"{output.name}: {' and '.join(PLANE_NAMES[a] for a in planes)} views, which cut through the "
        "input's thick slices (drawn without interpolation); all rows share one grey scale"
        + (f"; ground truth {truth_path.name}" if truth_path else "")
        + "."
    )
    png = mosaic(picture, head_cuts(files, result), planes)
    return output_block(files, output, scores, [figure(png, caption, alt="super-resolution")])


def _size(zooms) -> str:
    return " × ".join(f"{z:.2g}" for z in zooms) + " mm"
