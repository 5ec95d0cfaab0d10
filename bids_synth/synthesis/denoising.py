"""MR denoising on numpy volumes: a trained network, per-image noise2self, non-local means.

Every denoiser takes a 3D float array and its head mask and returns the denoised array
(:func:`nlm_denoise_files` wraps NLM for files); :func:`noise_sigma` measures the noise σ that
the sidecars record.
"""

from __future__ import annotations

import time

import numpy as np

from bids_synth.metrics import wavelet_noise_sigma

#: how the recorded noise σ is estimated (the same estimator before and after denoising)
NOISE_ESTIMATOR = "wavelet_noise_sigma: 1.4826·median|HHH Haar detail| inside the head mask"

#: per-image noise2self settings: a small 3D U-Net trained on the image itself
SELF_DEFAULTS = {
    "channels": [8, 16],
    "patch": [24, 24, 24],
    "batch_size": 2,
    "steps": 300,
    "blind_fraction": 0.05,
    "lr": 3e-3,
}


def noise_sigma(image: np.ndarray, mask: np.ndarray) -> float:
    """Noise σ of ``image`` inside ``mask`` (see :data:`NOISE_ESTIMATOR`)."""
    return wavelet_noise_sigma(image, mask > 0)


def head_scale(image: np.ndarray, mask: np.ndarray) -> float:
    """The 99.5th percentile inside the head: the intensity scale the networks work at."""
    values = image[mask > 0] if np.any(mask > 0) else image.ravel()
    return float(max(np.percentile(values, 99.5), 1e-6))


def nlm_denoise(image: np.ndarray, mask: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """antspyx non-local means with a Rician noise model inside ``mask`` (outside: unchanged).

    Bitwise reproducible only with one ITK thread (multi-threaded runs differ in thousands of
    voxels), which ITK fixes once per process: see :func:`nlm_denoise_files`.
    """
    import ants

    scale = head_scale(image, mask)
    source = ants.from_numpy((image / scale).astype(np.float32), spacing=tuple(spacing))
    region = ants.from_numpy((mask > 0).astype(np.float32), spacing=tuple(spacing))
    denoised = ants.denoise_image(source, region, noise_model="Rician").numpy() * scale
    return np.where(mask > 0, denoised, image).astype(np.float32)


def nlm_denoise_files(*, in_file: str, mask_file: str, out_file: str) -> None:
    """:func:`nlm_denoise` on files (mask: voxels > 0.5), for a fresh process with one ITK
    thread: ``python -m bids_synth.synthesis.denoising '<kwargs as JSON>'``."""
    import nibabel as nib

    image = nib.load(in_file)
    data = np.asanyarray(image.dataobj, dtype=np.float32)
    mask = np.asanyarray(nib.load(mask_file).dataobj) > 0.5
    denoised = nlm_denoise(data, mask, image.header.get_zooms()[:3])
    out = nib.Nifti1Image(denoised, image.affine, image.header)
    out.set_data_dtype(np.float32)
    nib.save(out, out_file)


def self_supervised_denoise(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    **settings,
) -> tuple[np.ndarray, dict]:
    """Noise2self: train a small U-Net on ``image`` alone with blind-spot pairs, then apply it.

    A random ``blind_fraction`` of the voxels of each training patch is replaced by a neighbour's
    value and the network is scored (L2) only there; as the noise is independent between voxels it
    can only predict their clean part. ``settings`` override :data:`SELF_DEFAULTS`. Returns the
    denoised image and an info dict (settings, final loss, device used, seconds).
    """
    import torch

    from bids_synth.nn.data import BlindSpot, VolumePatches
    from bids_synth.nn.devices import resolve_device
    from bids_synth.nn.inference import predict_volume
    from bids_synth.nn.trainers import build_trainer

    options = {**SELF_DEFAULTS, **settings}
    started = time.perf_counter()
    torch.manual_seed(seed)
    scale = head_scale(image, mask)
    volume = (image / scale).astype(np.float32)[None]
    patches = VolumePatches(
        [volume],
        masks=[(mask > 0).astype(np.float32)[None]],
        patch=options["patch"],
        batch_size=options["batch_size"],
        seed=seed,
        pair_fn=BlindSpot(options["blind_fraction"]),
    )
    trainer = build_trainer(
        "regression",
        architecture="unet",
        network_kwargs={"channels": list(options["channels"]), "norm": "none"},
        device=resolve_device(device),
        lr=options["lr"],
        seed=seed,
        content="l2",
        ssim_weight=0.0,
    )
    losses = [
        trainer.train_step(batch)["loss"] for batch in patches.epoch_batches(0, options["steps"])
    ]
    denoised, info = predict_volume(
        trainer.generator, volume[0], patch=options["patch"], device=device, amp="off"
    )
    result = np.where(mask > 0, denoised * scale, image).astype(np.float32)
    info = {
        **options,
        "final_loss": float(np.mean(losses[-20:])),
        "device": info["device"],
        "fallbacks": info["fallbacks"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    return result, info


def model_denoise(
    image: np.ndarray,
    mask: np.ndarray,
    bundle,
    affine: np.ndarray,
    *,
    device: str = "cpu",
    adapt_steps: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Apply a denoising bundle on its declared grid (RAS, its spacing, its normalisation: see
    :func:`~bids_synth.models.prediction.predict_on_grid`, also for ``adapt_steps``) and bring
    the result back onto the image's grid; outside ``mask`` the image is kept."""
    from bids_synth.models.prediction import predict_on_grid

    denoised, info = predict_on_grid(
        bundle,
        [image.astype(np.float32)],
        affine,
        device=device,
        mask=mask > 0,
        adapt_steps=adapt_steps,
    )
    return np.where(mask > 0, denoised, image).astype(np.float32), info


if __name__ == "__main__":  # python -m bids_synth.synthesis.denoising '<nlm_denoise_files kwargs>'
    import json
    import sys

    nlm_denoise_files(**json.loads(sys.argv[1]))
