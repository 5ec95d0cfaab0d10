"""Scanner styles: everything a site fixes about an acquisition.

A *site* is a :class:`ScannerStyle` drawn from the seed ``site`` alone, so the same site id
always gives the same field strength, sequences, resolutions, noise level and bias strength;
traveling subjects are the same anatomy acquired with several styles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from bids_synth.simulate.grids import as_spacing
from bids_synth.simulate.mri import CONTRASTS_MR, FIELD_STRENGTHS, Sequence, draw_sequence
from bids_synth.simulate.seeding import numpy_rng

CONTRASTS = (*CONTRASTS_MR, "CT")
SLICE_PROFILES = ("gaussian", "rect")


@dataclass(frozen=True)
class Acquisition:
    """Sampling of one image: sample spacing (mm) per grid axis and the slice profile.

    Along ``slice_axis`` the point-spread function has width ``slice_thickness_mm`` (the FWHM of a
    Gaussian profile, or the width of a rectangular one) and the spacing ``voxel_mm[slice_axis]``
    is the slice thickness plus ``slice_gap_mm``; on the other axes the PSF is a Gaussian of FWHM
    equal to the voxel size.
    """

    voxel_mm: tuple[float, float, float]
    slice_axis: int | None = None
    slice_thickness_mm: float | None = None
    slice_gap_mm: float = 0.0
    slice_profile: str = "gaussian"

    @classmethod
    def from_resolution(cls, resolution, *, slice_axis: int | None = None) -> Acquisition:
        """Acquisition with the requested voxel size; the slice axis, if not given, is the
        coarsest axis when one is coarser than the others (thick slices)."""
        voxel = as_spacing(resolution)
        if slice_axis is None and max(voxel) > min(voxel) * 1.01:
            slice_axis = int(np.argmax(voxel))
        thickness = voxel[slice_axis] if slice_axis is not None else None
        return cls(voxel, slice_axis, thickness)

    def coarsened_to(self, spacing: tuple[float, float, float]) -> Acquisition:
        """The same acquisition, never finer than the simulation grid ``spacing``."""
        voxel = tuple(max(v, s) for v, s in zip(self.voxel_mm, spacing))
        thickness = self.slice_thickness_mm
        if thickness is not None:
            thickness = max(thickness, spacing[self.slice_axis])
        return replace(self, voxel_mm=voxel, slice_thickness_mm=thickness)


@dataclass(frozen=True)
class MRProtocol:
    sequence: Sequence
    acquisition: Acquisition
    noise: float  # σ as a fraction of the reference tissue signal (mri.reference_signal)
    bias_strength: float  # standard deviation of the log bias field
    gain: float  # intensity scaling: scanner units of the reference tissue (auto-prescan)


@dataclass(frozen=True)
class CTProtocol:
    kvp: int
    kernel_fwhm_mm: float  # reconstruction kernel as a Gaussian blur
    noise_hu: float  # standard deviation of the image noise
    acquisition: Acquisition


@dataclass(frozen=True)
class ScannerStyle:
    name: str
    field_strength: float
    mr: dict[str, MRProtocol]
    ct: CTProtocol

    @classmethod
    def draw(cls, seed: int, *, name: str | None = None) -> ScannerStyle:
        """A random site style; :meth:`for_site` draws site ``k`` from the seed ``k``."""
        rng = numpy_rng(seed, "scanner-style")
        field = float(rng.choice(FIELD_STRENGTHS))
        noise = float(rng.uniform(0.01, 0.05))
        bias = float(rng.uniform(0.05, 0.25))
        mr = {
            contrast: MRProtocol(
                sequence=draw_sequence(contrast, field, rng),
                acquisition=_draw_mr_acquisition(contrast, rng),
                noise=noise,
                bias_strength=bias,
                gain=float(np.exp(rng.normal(np.log(1000), 0.3))),
            )
            for contrast in CONTRASTS_MR
        }
        ct = CTProtocol(
            kvp=int(rng.choice([100, 120, 140], p=[0.2, 0.6, 0.2])),
            kernel_fwhm_mm=float(rng.uniform(0.6, 1.5)),
            noise_hu=float(rng.uniform(4, 15)),
            acquisition=Acquisition(
                (float(rng.uniform(0.45, 1.0)),) * 2 + (1.0,),
                2,
                float(rng.choice([1.0, 1.5, 2.5])),
                0.0,
                "rect",
            ),
        )
        return cls(name or f"style{seed}", field, mr, ct)

    @classmethod
    def for_site(cls, site: int) -> ScannerStyle:
        return cls.draw(1_000_003 * (site + 1), name=f"site{site}")

    def with_overrides(
        self,
        *,
        noise: float | None = None,
        resolution=None,
        slice_axis: int | None = None,
        resolutions=None,
    ) -> ScannerStyle:
        """This style with a fixed MR noise fraction and/or acquisition voxel size for all images;
        ``resolutions`` (contrast → voxel size) overrides the voxel size of single contrasts."""
        mr, ct = dict(self.mr), self.ct
        if resolution is not None:
            acquisition = Acquisition.from_resolution(resolution, slice_axis=slice_axis)
            mr = {c: replace(p, acquisition=acquisition) for c, p in mr.items()}
            ct = replace(ct, acquisition=acquisition)
        for contrast, voxel in (resolutions or {}).items():
            acquisition = Acquisition.from_resolution(voxel)
            if contrast == "CT":
                ct = replace(ct, acquisition=acquisition)
            else:
                mr[contrast] = replace(mr[contrast], acquisition=acquisition)
        if noise is not None:
            mr = {c: replace(p, noise=float(noise)) for c, p in mr.items()}
        return replace(self, mr=mr, ct=ct)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "field_strength_T": self.field_strength,
            "mr": {c: {**asdict(p), "sequence": p.sequence.to_json()} for c, p in self.mr.items()},
            "ct": asdict(self.ct),
        }


def _draw_mr_acquisition(contrast: str, rng: np.random.Generator) -> Acquisition:
    """3D isotropic (T1w always, others half of the time) or 2D axial/coronal thick slices."""
    if contrast == "T1w" or rng.random() < 0.5:
        return Acquisition((float(rng.uniform(0.9, 1.2)),) * 3)
    axis = int(rng.choice([2, 1], p=[0.8, 0.2]))
    thickness = float(rng.uniform(3.0, 5.0))
    in_plane = float(rng.uniform(0.5, 1.0))
    gap = float(rng.choice([0.0, 0.0, 0.5, 1.0]))
    voxel = [in_plane] * 3
    voxel[axis] = thickness + gap
    return Acquisition(tuple(voxel), axis, thickness, gap, str(rng.choice(SLICE_PROFILES)))
