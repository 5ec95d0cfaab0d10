"""Denoising: the denoiser's input, denoised image, the removed signal, and the ground truth when
simulated."""

from __future__ import annotations

from bids_synth.metrics import psnr, wavelet_noise_sigma
from bids_synth.reports import rows
from bids_synth.reports.html import Html, figure, join
from bids_synth.reports.mosaics import mosaic
from bids_synth.reports.sections import register
from bids_synth.reports.session import Derivative, SessionFiles
from bids_synth.reports.synthesis import ground_truth, head_cuts, input_path, output_block
from bids_synth.reports.volumes import robust_window


@register("denoise", "Denoising", order=60)
def denoising(files: SessionFiles) -> Html | None:
    outputs = files.select(desc="denoised")
    return join(_block(files, output) for output in outputs) if outputs else None


def _block(files: SessionFiles, output: Derivative) -> Html:
    denoised = files.volume(output.path)
    head = files.mask_volume("head", like=denoised)
    region = rows.inside(head)
    window = robust_window(denoised.data, region)
    picture = [rows.image(f"denoised\n{output.suffix}", denoised, window=window)]
    scores = [("noise σ after", f"{wavelet_noise_sigma(denoised.data, region):.4g}")]
    source = _denoiser_input(files, output)
    if source is not None:
        noisy = files.volume(source).on_grid_of(denoised)
        picture.insert(0, rows.image(f"input\n{output.suffix}", noisy, window=window))
        picture.append(
            rows.difference(
                "removed\n(input −\ndenoised)", noisy, denoised, head, units="intensity"
            )
        )
        scores.insert(0, ("noise σ before", f"{wavelet_noise_sigma(noisy.data, region):.4g}"))
    truth_path = ground_truth(files, output)
    if truth_path is not None:
        truth = files.volume(truth_path).on_grid_of(denoised)
        picture.append(
            rows.difference("denoised −\nground truth", denoised, truth, head, units="intensity")
        )
        scores.append(("PSNR vs ground truth", f"{psnr(truth.data, denoised.data, region):.2f} dB"))
    caption = (
        f"{output.name}; input and output share one grey scale. The removed signal should look like "
        "noise, without anatomy" + (f"; ground truth {truth_path.name}" if truth_path else "") + "."
        " Noise σ: wavelet (MAD) estimate in the head mask."
    )
    return output_block(
        files,
        output,
        scores,
        [figure(mosaic(picture, head_cuts(files, denoised)), caption, alt="denoising")],
    )


def _denoiser_input(files: SessionFiles, output: Derivative):
    """What the denoiser read: the preprocessed image of the same suffix and space (bias-corrected,
    registered), else the output's first source."""
    preprocessed = files.find(output.suffix, desc="preproc", space=output.entities.get("space"))
    return preprocessed or input_path(files, output)
