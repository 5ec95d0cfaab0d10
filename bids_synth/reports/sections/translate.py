"""Contrast translation: input, synthetic contrast, and the real contrast when it was acquired."""

from __future__ import annotations

import numpy as np

from bids_synth.metrics import psnr
from bids_synth.reports import rows
from bids_synth.reports.html import Html, figure, join
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.sections import register
from bids_synth.reports.session import Derivative, SessionFiles
from bids_synth.reports.synthesis import head_cuts, input_row, output_block
from bids_synth.reports.volumes import Volume

NOT_MR = ("CT", "mumap")


@register("translate", "Contrast translation", order=50)
def translation(files: SessionFiles) -> Html | None:
    outputs = [f for f in files.select(desc="synthetic") if f.suffix not in NOT_MR]
    return join(_block(files, output) for output in outputs) if outputs else None


def _block(files: SessionFiles, output: Derivative) -> Html:
    synthetic = files.volume(output.path)
    head = files.mask_volume("head", like=synthetic)
    region = rows.inside(head)
    picture = [row for row in [input_row(files, output, head)] if row is not None]
    picture.append(rows.image(f"synthetic\n{output.suffix}", synthetic, head))
    real_path = files.find(output.suffix, space=output.entities.get("space"), desc="preproc")
    scores = []
    caption = f"{output.name}"
    if real_path is not None:
        real = files.volume(real_path).on_grid_of(synthetic)
        # arbitrary MR units: compare images scaled to their 99th percentile in the head
        scaled_real, scaled_synthetic = (_scaled(v, region) for v in (real, synthetic))
        picture += [
            rows.image(f"real {output.suffix}\n(aligned)", real, head),
            rows.difference(
                "synthetic\n− real", scaled_synthetic, scaled_real, head, units="× p99"
            ),
        ]
        scores = [
            ("PSNR vs real", f"{psnr(scaled_real.data, scaled_synthetic.data, region):.2f} dB")
        ]
        caption += (f"; reference {real_path.name}. The difference and scores use both images "
                    "divided by their 99th percentile in the head mask")  # fmt: skip
    figures = [
        figure(
            mosaic(picture, head_cuts(files, synthetic)),
            caption + ".",
            alt=f"synthetic {output.suffix}",
        )
    ]
    return output_block(files, output, scores, figures)


def _scaled(volume: Volume, region: np.ndarray | None) -> Volume:
    values = volume.data[region] if region is not None else volume.data
    return volume.with_data(volume.data / (np.percentile(values, 99) or 1.0))
