"""A simulated subject: anatomy, clean images and acquired images with their ground truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from bids_synth.simulate.anatomy import Anatomy, draw_anatomy
from bids_synth.simulate.ct import clean_ct, mu_map
from bids_synth.simulate.degrade import (
    bias_field,
    ct_noise,
    rician_noise,
    sample_acquisition,
)
from bids_synth.simulate.filters import FWHM_PER_SIGMA, gaussian_blur
from bids_synth.simulate.grids import resample
from bids_synth.simulate.mri import reference_signal, tissue_properties
from bids_synth.simulate.scanner import CONTRASTS, ScannerStyle
from bids_synth.simulate.seeding import torch_generator
from bids_synth.simulate.tissues import Tissue

MR_TEXTURE = 0.02  # relative amplitude of the smooth within-tissue MR signal variation
CT_NOISE_GRAIN_VOXELS = 0.7  # correlation of CT noise (Gaussian σ in acquisition voxels)


@dataclass
class SubjectDraw:
    """Everything about one simulated acquisition session; tensors live on the draw's device.

    ``clean`` images are noise- and bias-free on the simulation grid (MR in scanner units, CT in
    HU); ``images`` are the acquired images (bias, PSF, sampling, noise) interpolated back onto the
    same grid; ``acquired`` holds them on the scanner's own grid as ``(image, affine)`` and
    ``noise_free`` the same acquisitions without noise (use :meth:`on_grid` to interpolate).
    """

    seed: int
    site: int | None
    affine: np.ndarray
    labels: torch.Tensor
    fractions: torch.Tensor
    head_mask: torch.Tensor
    clean: dict[str, torch.Tensor]
    images: dict[str, torch.Tensor]
    noise_free: dict[str, tuple[torch.Tensor, np.ndarray]]
    acquired: dict[str, tuple[torch.Tensor, np.ndarray]]
    bias: dict[str, torch.Tensor]
    params: dict
    mumap: torch.Tensor | None = field(default=None)

    def on_grid(self, image: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
        """``image`` (on the grid ``affine``) trilinearly interpolated onto the simulation grid."""
        if tuple(image.shape) == tuple(self.labels.shape) and np.allclose(affine, self.affine):
            return image
        return resample(image, affine, self.labels.shape, self.affine)


def site_style(site: int | None, seed: int) -> ScannerStyle:
    """Site ``site``'s fixed style, or a style of the subject's own when ``site`` is None."""
    return ScannerStyle.draw(seed) if site is None else ScannerStyle.for_site(site)


def simulate_subject(
    seed: int,
    *,
    label_source: str = "phantom",
    shape=None,
    spacing=1.0,
    contrasts=("T1w", "T2w", "CT"),
    site: int | None = None,
    noise: float | None = None,
    resolution=None,
    slice_axis: int | None = None,
    device: str | torch.device = "cpu",
) -> SubjectDraw:
    """Draw an anatomy from ``seed`` and acquire ``contrasts`` with a scanner style.

    ``site``: an integer selects that site's fixed style (same seed, other site: a traveling
    subject); None draws a style from the seed. ``noise`` overrides the MR noise σ as a fraction
    of the reference tissue signal (0.03 = 3 %). ``resolution`` (mm, one or three values)
    overrides every acquisition's voxel size; the coarsest axis is the slice axis unless
    ``slice_axis`` is given.
    """
    anatomy = draw_anatomy(
        seed, label_source=label_source, shape=shape, spacing=spacing, device=device
    )
    style = site_style(site, seed)
    return acquire(
        anatomy,
        style,
        contrasts=contrasts,
        site=site,
        noise=noise,
        resolution=resolution,
        slice_axis=slice_axis,
    )


def acquire(
    anatomy: Anatomy,
    style: ScannerStyle,
    *,
    contrasts=("T1w", "T2w", "CT"),
    site: int | None = None,
    noise: float | None = None,
    resolution=None,
    slice_axis: int | None = None,
    resolutions=None,
) -> SubjectDraw:
    """Acquire ``contrasts`` of ``anatomy`` with ``style`` (see :func:`simulate_subject`);
    ``resolutions`` (contrast → voxel size, mm) overrides ``resolution`` for single contrasts."""
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if unknown:
        raise ValueError(f"unknown contrast(s) {unknown}; choose from {', '.join(CONTRASTS)}")
    if noise is not None and not 0 <= noise < 1:
        raise ValueError(f"noise is a fraction of the reference signal (0.03 = 3 %), got {noise}")
    style = style.with_overrides(
        noise=noise, resolution=resolution, slice_axis=slice_axis, resolutions=resolutions
    )
    draw = SubjectDraw(
        seed=anatomy.seed,
        site=site,
        affine=anatomy.affine,
        labels=anatomy.labels,
        fractions=anatomy.fractions,
        head_mask=anatomy.head_mask,
        clean={},
        images={},
        noise_free={},
        acquired={},
        bias={},
        params={
            "seed": anatomy.seed,
            "site": site,
            "label_source": anatomy.label_source,
            "grid": {"shape": list(anatomy.shape), "spacing_mm": list(anatomy.spacing)},
            "deformation": anatomy.transform.to_json(),
            "style": style.to_json(),
            "contrasts": {},
        },
    )
    for contrast in contrasts:
        generator = torch_generator(
            anatomy.seed, "acquisition", style.name, contrast, device=anatomy.fractions.device
        )
        if contrast == "CT":
            _acquire_ct(anatomy, style, draw, generator)
        else:
            _acquire_mr(anatomy, style, contrast, draw, generator)
    return draw


def _acquire_mr(
    anatomy: Anatomy,
    style: ScannerStyle,
    contrast: str,
    draw: SubjectDraw,
    generator: torch.Generator,
) -> None:
    protocol = style.mr[contrast]
    properties = tissue_properties(style.field_strength, anatomy.property_jitter)
    physical = protocol.sequence.signal(properties)
    signals = protocol.gain / reference_signal(physical) * physical
    weights = torch.as_tensor(signals, dtype=torch.float32, device=anatomy.fractions.device)
    clean = torch.einsum("t...,t->...", anatomy.fractions, weights)
    clean = clean * (1 + MR_TEXTURE * anatomy.textures[0])
    bias = bias_field(
        anatomy.shape, spacing=anatomy.spacing, strength=protocol.bias_strength, generator=generator
    )
    acquisition = protocol.acquisition.coarsened_to(anatomy.spacing)
    noise_free, acquired_affine = sample_acquisition(clean * bias, anatomy.affine, acquisition)
    reference = reference_signal(signals)
    sigma = protocol.noise * reference
    acquired = rician_noise(noise_free, sigma, generator)
    draw.clean[contrast] = clean
    draw.noise_free[contrast] = (noise_free, acquired_affine)
    draw.bias[contrast] = bias
    draw.acquired[contrast] = (acquired, acquired_affine)
    draw.images[contrast] = draw.on_grid(acquired, acquired_affine)
    head_bias = bias[anatomy.head_mask]
    draw.params["contrasts"][contrast] = {
        "sequence": protocol.sequence.to_json(),
        "field_strength_T": style.field_strength,
        "noise_fraction": protocol.noise,
        "noise_sigma": sigma,
        "reference_intensity": reference,
        "gain": protocol.gain,
        "bias_strength": protocol.bias_strength,
        "bias_range_in_head": [float(head_bias.min()), float(head_bias.max())],
        "acquisition": asdict(acquisition),
        "acquired_shape": list(acquired.shape),
        "acquired_affine": np.round(acquired_affine, 6).tolist(),
        "tissue_signals": {t: float(s) for t, s in zip(_tissue_names(), signals)},
    }


def _acquire_ct(
    anatomy: Anatomy, style: ScannerStyle, draw: SubjectDraw, generator: torch.Generator
) -> None:
    protocol = style.ct
    clean = clean_ct(anatomy.fractions, anatomy.tissue_hu, anatomy.textures[1])
    sigma = tuple(protocol.kernel_fwhm_mm / FWHM_PER_SIGMA / s for s in anatomy.spacing)
    acquisition = protocol.acquisition.coarsened_to(anatomy.spacing)
    noise_free, acquired_affine = sample_acquisition(
        gaussian_blur(clean, sigma), anatomy.affine, acquisition
    )
    acquired = noise_free + ct_noise(
        noise_free.shape,
        sigma_hu=protocol.noise_hu,
        grain_voxels=CT_NOISE_GRAIN_VOXELS,
        generator=generator,
    )
    draw.clean["CT"] = clean
    draw.noise_free["CT"] = (noise_free, acquired_affine)
    draw.acquired["CT"] = (acquired, acquired_affine)
    draw.images["CT"] = draw.on_grid(acquired, acquired_affine)
    draw.mumap = mu_map(clean, kvp=protocol.kvp)
    draw.params["contrasts"]["CT"] = {
        "kvp": protocol.kvp,
        "kernel_fwhm_mm": protocol.kernel_fwhm_mm,
        "noise_sigma": protocol.noise_hu,
        "acquisition": asdict(acquisition),
        "acquired_shape": list(acquired.shape),
        "acquired_affine": np.round(acquired_affine, 6).tolist(),
        "tissue_hu": {t: float(h) for t, h in zip(_tissue_names(), anatomy.tissue_hu)},
    }


def _tissue_names() -> list[str]:
    return [t.name for t in Tissue]
