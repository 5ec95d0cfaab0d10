"""Contrast-randomised MR images from label maps, in the style of SynthSeg and SynthSR.

A :class:`LabelHead` is one anatomy reduced to what re-randomising needs: hard tissue labels, the
physical CT target (HU, with its smooth bone texture) and a few physics-based MR images of it. It
is simulated once (seconds) and then re-randomised for every batch (a fraction of a second), so a
network sees a new contrast at every step and has to learn anatomy rather than one scanner's
intensities. :func:`randomised_mr` draws, per call:

- with probability ``physics_share`` one of the head's physics MR images (of the contrasts
  ``physics_inputs`` when set), else a Gaussian mixture:
  per tissue a mean ``U(mean_range)`` and a spread ``U(sd_range)`` (0–1 scale), background dark;
  the spread is voxel-wise, or with ``texture_smoothing_mm`` a smooth field (Gaussian of σ
  ``U(texture_smoothing_mm)``, unit variance) — a denoiser's clean target must not hold texture
  that looks like the noise it is to remove;
- a small partial-volume blur, a smooth multiplicative bias field ``exp(N(0, U(0, bias_sd)))``;
- with probability ``thick_share`` thick slices along a random axis (thickness ``U(thickness_mm)``,
  Gaussian slice profile, sampled and linearly interpolated back), with probability
  ``coarse_share`` a coarse isotropic acquisition (the same along all three axes, FWHM
  ``U(coarse_fwhm_mm)``: a low-resolution scan or a smoothed template resampled to 1 mm), else a
  mild isotropic blur (a :class:`Resolution`; with ``resolution_in_target`` a translation or
  harmonization target is acquired at the input's, so that the network learns the contrast and
  not deblurring);
- Rician or Gaussian noise of σ ``U(noise_range)`` (fraction of the 99th head percentile);
- the head-mask percentile normalisation that inference applies (0.5 → 0, 99.5 → 1), then a
  gamma ``exp(N(0, gamma_sd))``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bids_synth.simulate.filters import FWHM_PER_SIGMA, gaussian_blur
from bids_synth.simulate.tissues import N_TISSUES, Tissue, brain_region

#: Input normalisation of networks trained on these images (see :mod:`bids_synth.nn.intensity`).
PERCENTILE_NORMALISATION = {"method": "percentile", "low": 0.5, "high": 99.5}
HEAD_MARGIN_VOXELS = 8
#: raised whenever the training heads change (their anatomy or the physics of their images), so
#: that cached heads of an earlier head model are simulated anew (2: an individual skull from the
#: TPM's bone prior; 3: grey/white contrast of the T2-weighted images, see
#: :mod:`bids_synth.simulate.mri`; Colin27's skull, held out from training, changes no cached head;
#: 4: cortical tables of 1.5 mm instead of 2, as a real CT's vault, see :mod:`.atlases`; 5: the
#: TPM's air prior inside the head made one subject's sinuses instead of a haze)
HEAD_MODEL_REVISION = 5
#: the physics MR images of a label head, each in its own random scanner style
PHYSICS_CONTRASTS = ("T1w", "T1w", "T2w")


@dataclass(frozen=True)
class Randomisation:
    """Ranges of the per-draw randomisation (see the module docstring)."""

    physics_share: float = 0.25
    physics_inputs: tuple[str, ...] | None = None  # physics contrasts a draw may use (None: all)
    mean_range: tuple[float, float] = (0.0, 1.0)
    sd_range: tuple[float, float] = (0.0, 0.08)
    texture_smoothing_mm: tuple[float, float] = (0.0, 0.0)
    background_dark_share: float = 0.7
    bias_sd: float = 0.4
    bias_correlation_mm: float = 50.0
    thick_share: float = 0.5
    thickness_mm: tuple[float, float] = (1.5, 6.0)
    coarse_share: float = 0.0
    coarse_fwhm_mm: tuple[float, float] = (2.0, 8.0)
    resolution_in_target: bool = False
    noise_range: tuple[float, float] = (0.0, 0.06)
    rician_share: float = 0.5
    gamma_sd: float = 0.3

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LabelHead:
    """One anatomy on a 1 mm-class grid, cropped to its head: labels, CT (HU), physics MR images
    (network inputs, each in its own random scanner style) and, for translation, ``targets``:
    MR contrasts in the reference scanner style (:meth:`ScannerStyle.for_site` 0)."""

    labels: np.ndarray  # (X, Y, Z) uint8 tissue labels
    ct: np.ndarray  # (X, Y, Z) float16 HU
    physics: np.ndarray  # (P, X, Y, Z) float16 clean physics MR images (scanner units)
    spacing_mm: float
    physics_names: tuple[str, ...] = PHYSICS_CONTRASTS
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # suffix → (X, Y, Z) float16
    brain: np.ndarray | None = None  # (X, Y, Z) bool: :meth:`brain_mask` once computed

    @property
    def head(self) -> np.ndarray:
        return self.labels != Tissue.BACKGROUND

    def brain_mask(self) -> np.ndarray:
        """The brain and its CSF (:func:`~bids_synth.simulate.tissues.brain_region`), computed
        once (a band has its head's)."""
        if self.brain is None:
            self.brain = brain_region(torch.from_numpy(self.labels), self.spacing_mm).numpy()
        return self.brain

    def band(self, axis: int, start: int, stop: int) -> LabelHead:
        """The slices ``start:stop`` along ``axis`` (views, no copy)."""
        cut = tuple(slice(start, stop) if a == axis else slice(None) for a in range(3))
        return LabelHead(
            self.labels[cut],
            self.ct[cut],
            self.physics[(slice(None), *cut)],
            self.spacing_mm,
            self.physics_names,
            {name: image[cut] for name, image in self.targets.items()},
            None if self.brain is None else self.brain[cut],
        )

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            labels=self.labels,
            ct=self.ct,
            physics=self.physics,
            physics_names=np.array(self.physics_names),
            spacing_mm=np.float32(self.spacing_mm),
            **{f"target_{name}": image for name, image in self.targets.items()},
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabelHead:
        with np.load(path) as data:
            names = data["physics_names"] if "physics_names" in data else PHYSICS_CONTRASTS
            return cls(
                data["labels"],
                data["ct"],
                data["physics"],
                float(data["spacing_mm"]),
                tuple(str(name) for name in names),
                {
                    key.removeprefix("target_"): data[key]
                    for key in data.files
                    if key.startswith("target_")
                },
            )


@dataclass
class CleanImage:
    """A real, nearly noise-free image (a template or an averaged scan) and its head mask: the
    texture a denoiser learns from beside the randomised label heads."""

    image: np.ndarray  # (X, Y, Z) float32
    head: np.ndarray  # (X, Y, Z) bool
    spacing_mm: float

    def band(self, axis: int, start: int, stop: int) -> CleanImage:
        cut = tuple(slice(start, stop) if a == axis else slice(None) for a in range(3))
        return CleanImage(self.image[cut], self.head[cut], self.spacing_mm)


def load_clean_image(path: Path) -> CleanImage:
    """A reference image reoriented to RAS, cropped to its head (intensity above 10 % of its
    99th percentile, holes filled), with the crop's margin."""
    import nibabel as nib
    from scipy import ndimage

    image = nib.as_closest_canonical(nib.load(path))
    data = np.asanyarray(image.dataobj, dtype=np.float32)
    head = data > 0.1 * np.percentile(data[data > 0], 99)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(head, iterations=2))
    found = np.argwhere(head)
    low = np.maximum(found.min(0) - HEAD_MARGIN_VOXELS, 0)
    high = np.minimum(found.max(0) + 1 + HEAD_MARGIN_VOXELS, head.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    spacing = float(np.mean(image.header.get_zooms()[:3]))
    return CleanImage(np.ascontiguousarray(data[box]), np.ascontiguousarray(head[box]), spacing)


def simulate_label_head(
    seed: int,
    *,
    label_source: str,
    spacing: float = 1.0,
    physics_contrasts: tuple[str, ...] = PHYSICS_CONTRASTS,
    target_contrasts: tuple[str, ...] = (),
    shell_stretch_sd: float = 0.0,
    muscle_fat_share: float = 0.0,
) -> LabelHead:
    """Draw one anatomy (random affine + nonlinear deformation of ``label_source``, its skull
    and scalp stretched by ``shell_stretch_sd``, up to ``muscle_fat_share`` of its muscle turned
    into fat compartments: :func:`~bids_synth.simulate.anatomy.draw_anatomy`) and keep its
    labels, CT, the clean physics images of ``physics_contrasts`` (each with its own random
    scanner style) and of ``target_contrasts`` (the reference style), cropped to the head's
    bounding box."""
    from bids_synth.simulate.anatomy import draw_anatomy
    from bids_synth.simulate.ct import clean_ct
    from bids_synth.simulate.scanner import ScannerStyle
    from bids_synth.simulate.subject import acquire

    anatomy = draw_anatomy(
        seed,
        label_source=label_source,
        spacing=spacing,
        shell_stretch_sd=shell_stretch_sd,
        muscle_fat_share=muscle_fat_share,
    )
    ct = clean_ct(anatomy.fractions, anatomy.tissue_hu, anatomy.textures[1])
    physics = []
    for index, contrast in enumerate(physics_contrasts):
        style = ScannerStyle.draw(seed * 31 + index)
        physics.append(acquire(anatomy, style, contrasts=(contrast,), noise=0.0).clean[contrast])
    reference = ScannerStyle.for_site(0)
    targets = {
        contrast: acquire(anatomy, reference, contrasts=(contrast,), noise=0.0).clean[contrast]
        for contrast in target_contrasts
    }
    labels = anatomy.labels.cpu().numpy()
    found = np.argwhere(labels != Tissue.BACKGROUND)
    low = np.maximum(found.min(0) - HEAD_MARGIN_VOXELS, 0)
    high = np.minimum(found.max(0) + 1 + HEAD_MARGIN_VOXELS, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    return LabelHead(
        labels=np.ascontiguousarray(labels[box]),
        ct=np.ascontiguousarray(ct.cpu().numpy()[box].astype(np.float16)),
        physics=np.stack([p.cpu().numpy()[box] for p in physics]).astype(np.float16),
        spacing_mm=float(spacing),
        physics_names=tuple(physics_contrasts),
        targets={k: v.cpu().numpy()[box].astype(np.float16) for k, v in targets.items()},
    )


def head_file_name(
    source: str,
    seed: int,
    spacing: float = 1.0,
    physics_contrasts: tuple[str, ...] = PHYSICS_CONTRASTS,
    target_contrasts: tuple[str, ...] = (),
    shell_stretch_sd: float = 0.0,
    muscle_fat_share: float = 0.0,
) -> str:
    """The cache file of one simulated head (the head model's revision, anatomy, shell stretch,
    fat compartments and contrasts)."""
    physics = "" if physics_contrasts == PHYSICS_CONTRASTS else "-" + "-".join(physics_contrasts)
    targets = physics + "".join(f"+{name}" for name in sorted(target_contrasts))
    shell = f"-shell{shell_stretch_sd:g}" if shell_stretch_sd else ""
    fat = f"-fat{muscle_fat_share:g}" if muscle_fat_share else ""
    return f"head-r{HEAD_MODEL_REVISION}-{source}-{seed}{shell}{fat}-{spacing:g}mm{targets}.npz"


def load_or_simulate_heads(
    folder: Path,
    specs: list[tuple[str, int]],
    *,
    spacing: float = 1.0,
    physics_contrasts: tuple[str, ...] = PHYSICS_CONTRASTS,
    target_contrasts: tuple[str, ...] = (),
    shell_stretch_sd: float = 0.0,
    muscle_fat_share: float = 0.0,
    log=None,
) -> list[LabelHead]:
    """The heads ``(label_source, seed)`` of ``specs`` (with ``physics_contrasts``,
    ``target_contrasts``, ``shell_stretch_sd`` and ``muscle_fat_share``), simulated once and
    cached in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    heads = []
    for source, seed in specs:
        path = folder / head_file_name(
            source,
            seed,
            spacing,
            physics_contrasts,
            target_contrasts,
            shell_stretch_sd,
            muscle_fat_share,
        )
        if not path.exists():
            if log:
                log(f"simulating head {source} seed {seed}")
            simulate_label_head(
                seed,
                label_source=source,
                spacing=spacing,
                physics_contrasts=physics_contrasts,
                target_contrasts=target_contrasts,
                shell_stretch_sd=shell_stretch_sd,
                muscle_fat_share=muscle_fat_share,
            ).save(path)
        heads.append(LabelHead.load(path))
    return heads


def _bias_field(
    shape, spacing_mm: float, correlation_mm: float, sd: float, generator: torch.Generator
) -> torch.Tensor:
    coarse = [max(2, math.ceil(n * spacing_mm / correlation_mm) + 1) for n in shape]
    field = torch.randn(1, 1, *coarse, generator=generator) * sd
    field = F.interpolate(field, size=list(shape), mode="trilinear", align_corners=True)[0, 0]
    return field.exp_()


def _with_bias(
    image: torch.Tensor,
    spacing_mm: float,
    rng: np.random.Generator,
    generator: torch.Generator,
    params: Randomisation,
) -> torch.Tensor:
    """``image`` times a random smooth bias field of log-sd ``U(0, bias_sd)``."""
    sd = float(rng.uniform(0, params.bias_sd))
    return image * _bias_field(image.shape, spacing_mm, params.bias_correlation_mm, sd, generator)


def _acquired(image: torch.Tensor, axes: tuple[int, ...], factor: float) -> torch.Tensor:
    """Gaussian profile of FWHM ``factor`` voxels along ``axes``, sampled every ``factor`` voxels
    there and interpolated back linearly (the look of thick slices, or along all three axes of a
    coarse acquisition)."""
    blurred = gaussian_blur(
        image, tuple(factor / FWHM_PER_SIGMA if a in axes else 0.0 for a in range(3))
    )
    size = list(image.shape)
    low_size = [max(2, round(n / factor)) if a in axes else n for a, n in enumerate(size)]
    low = F.interpolate(blurred[None, None], size=low_size, mode="trilinear", align_corners=True)
    return F.interpolate(low, size=size, mode="trilinear", align_corners=True)[0, 0]


@dataclass(frozen=True)
class Resolution:
    """One draw of an acquisition's resolution: a Gaussian profile of FWHM ``fwhm_voxels`` along
    ``axes``, sampled at that spacing (thick slices: one axis; a coarse acquisition: three), or
    with no ``axes`` a mild isotropic blur of σ ``blur_voxels``."""

    axes: tuple[int, ...] = ()
    fwhm_voxels: float = 0.0
    blur_voxels: float = 0.0

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        if self.axes:
            return _acquired(image, self.axes, self.fwhm_voxels)
        return gaussian_blur(image, (self.blur_voxels,) * 3)


def _draw_resolution(
    rng: np.random.Generator, params: Randomisation, spacing_mm: float
) -> Resolution:
    """Thick slices (``thick_share``), a coarse acquisition (``coarse_share``) or a mild blur."""
    draw = rng.random()
    if draw < params.thick_share:
        thickness = float(rng.uniform(*params.thickness_mm)) / spacing_mm
        return Resolution((int(rng.integers(3)),), thickness)
    if draw < params.thick_share + params.coarse_share:
        return Resolution((0, 1, 2), float(rng.uniform(*params.coarse_fwhm_mm)) / spacing_mm)
    return Resolution(blur_voxels=float(rng.uniform(0.0, 0.5)))


def _clean_contrast(
    head: LabelHead, rng: np.random.Generator, generator: torch.Generator, params: Randomisation
) -> tuple[torch.Tensor, Resolution]:
    """A noise-free image of ``head``: a physics image or a Gaussian-mixture contrast, with a
    partial-volume blur, a bias field and a random :class:`Resolution` (scanner-like units);
    and that resolution."""
    labels = torch.from_numpy(np.ascontiguousarray(head.labels)).long()
    mask = labels != Tissue.BACKGROUND
    if rng.random() < params.physics_share:
        usable = [
            index
            for index, name in enumerate(head.physics_names)
            if params.physics_inputs is None or name in params.physics_inputs
        ]
        image = torch.from_numpy(
            np.ascontiguousarray(head.physics[usable[int(rng.integers(len(usable)))]])
        ).float()
        image = image / torch.quantile(image[mask][::97], 0.99).clamp_min(1e-6)
    else:
        means = torch.from_numpy(rng.uniform(*params.mean_range, N_TISSUES)).float()
        spreads = torch.from_numpy(rng.uniform(*params.sd_range, N_TISSUES)).float()
        dark = rng.random() < params.background_dark_share
        means[Tissue.BACKGROUND] = 0.0 if dark else float(rng.uniform(0, 0.1))
        spreads[Tissue.BACKGROUND] = 0.0 if dark else float(rng.uniform(0, 0.03))
        noise = torch.randn(labels.shape, generator=generator)
        if params.texture_smoothing_mm[1] > 0:
            sigma = float(rng.uniform(*params.texture_smoothing_mm)) / head.spacing_mm
            noise = gaussian_blur(noise, (sigma,) * 3)
            noise = noise / noise.std().clamp_min(1e-6)
        image = means[labels] + spreads[labels] * noise
        image = gaussian_blur(image, (float(rng.uniform(0.3, 0.8)),) * 3)
    image = _with_bias(image, head.spacing_mm, rng, generator, params)
    resolution = _draw_resolution(rng, params, head.spacing_mm)
    return resolution.apply(image), resolution


def _with_noise(
    image: torch.Tensor,
    mask: torch.Tensor,
    rng: np.random.Generator,
    generator: torch.Generator,
    params: Randomisation,
) -> torch.Tensor:
    """``image`` with Rician or Gaussian noise of σ ``U(noise_range)`` × its 99th head percentile."""
    sigma = float(rng.uniform(*params.noise_range)) * float(torch.quantile(image[mask][::97], 0.99))
    real = image + sigma * torch.randn(image.shape, generator=generator)
    if rng.random() < params.rician_share:
        imaginary = sigma * torch.randn(image.shape, generator=generator)
        return torch.sqrt(real * real + imaginary * imaginary)
    return real.clamp_min(0)


def _percentile_map(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset, scale) of :data:`PERCENTILE_NORMALISATION` inside ``mask``."""
    sample = image[mask][::37]
    low, high = torch.quantile(sample, 0.005), torch.quantile(sample, 0.995)
    return low, (high - low).clamp_min(1e-6)


def percentile_normalised(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image`` under :data:`PERCENTILE_NORMALISATION` inside ``mask``."""
    low, scale = _percentile_map(image, mask)
    return (image - low) / scale


def randomised_mr(
    head: LabelHead,
    rng: np.random.Generator,
    generator: torch.Generator,
    params: Randomisation = Randomisation(),
) -> tuple[torch.Tensor, Resolution]:
    """One contrast-randomised, degraded and normalised MR image of ``head`` (float32 tensor),
    and the resolution it was acquired at."""
    mask = torch.from_numpy(np.ascontiguousarray(head.head))
    clean, resolution = _clean_contrast(head, rng, generator, params)
    image = _with_noise(clean, mask, rng, generator, params)
    low, scale = _percentile_map(image, mask)
    image = (image - low) / scale
    gamma = float(np.exp(rng.normal(0, params.gamma_sd)))
    return image.clamp_min(0).pow(gamma), resolution


def randomised_denoising_pair(
    head: LabelHead | CleanImage,
    rng: np.random.Generator,
    generator: torch.Generator,
    params: Randomisation = Randomisation(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) float32 images of ``head``: a clean image (for a :class:`LabelHead` a
    randomised contrast, for a :class:`CleanImage` the real image under a random bias field),
    a gamma, then noise; both normalised with the noisy image's percentile map, as inference
    normalises (the clean one is the target of a denoiser)."""
    mask = torch.from_numpy(np.ascontiguousarray(head.head))
    if isinstance(head, CleanImage):
        clean = torch.from_numpy(np.ascontiguousarray(head.image)).float()
        clean = clean / torch.quantile(clean[mask][::97], 0.99).clamp_min(1e-6)
        clean = _with_bias(clean, head.spacing_mm, rng, generator, params)
    else:
        clean = _clean_contrast(head, rng, generator, params)[0]
        clean = clean / torch.quantile(clean[mask][::97], 0.99).clamp_min(1e-6)
    clean = clean.clamp_min(0).pow(float(np.exp(rng.normal(0, params.gamma_sd))))
    noisy = _with_noise(clean, mask, rng, generator, params)
    low, scale = _percentile_map(noisy, mask)
    return (noisy - low) / scale, (clean - low) / scale
