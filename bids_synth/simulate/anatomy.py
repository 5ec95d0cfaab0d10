"""One subject's anatomy on the simulation grid: deformed label-source fractions plus the
subject's biology (tissue-property jitter, CT HU, smooth within-tissue texture)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bids_synth.simulate.ct import draw_tissue_hu
from bids_synth.simulate.deformation import SpatialTransform
from bids_synth.simulate.fields import smooth_field
from bids_synth.simulate.grids import as_spacing, centred_affine, grid_points
from bids_synth.simulate.label_sources import get_label_source
from bids_synth.simulate.mri import draw_property_jitter
from bids_synth.simulate.seeding import numpy_rng, torch_generator
from bids_synth.simulate.tissues import Tissue, head_mask_from_fractions, labels_from_fractions

#: Field of view of a draw when no shape is given (mm, RAS axes): head and upper neck.
DEFAULT_FOV_MM = (180.0, 216.0, 200.0)
TEXTURE_CORRELATION_MM = 12.0
DEFORMATION_MM = 2.0  # standard deviation of each velocity-field component
#: size of the fat compartments drawn into muscle (orbital, buccal, parapharyngeal, neck fat)
FAT_COMPARTMENT_MM = 15.0
#: the width of a compartment's partial-volume edge, in units of its field (about 1 mm)
_FAT_EDGE = 0.1


def default_shape(spacing) -> tuple[int, int, int]:
    """Grid shape covering :data:`DEFAULT_FOV_MM` at ``spacing``."""
    return tuple(int(round(fov / s)) for fov, s in zip(DEFAULT_FOV_MM, as_spacing(spacing)))


@dataclass
class Anatomy:
    seed: int
    label_source: str
    affine: np.ndarray  # 4×4 RAS+ mm of the simulation grid
    fractions: torch.Tensor  # (N_TISSUES, D, H, W) float32
    labels: torch.Tensor  # (D, H, W) uint8
    head_mask: torch.Tensor  # (D, H, W) bool
    transform: SpatialTransform
    property_jitter: np.ndarray  # (N_TISSUES, 4) multiplies T1, T2, T2*, PD
    tissue_hu: np.ndarray  # (N_TISSUES,)
    textures: torch.Tensor  # (2, D, H, W) unit smooth fields: MR texture, CT bone texture

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)


def draw_anatomy(
    seed: int,
    *,
    label_source: str = "phantom",
    shape=None,
    spacing=1.0,
    device: str | torch.device = "cpu",
    shell_stretch_sd: float = 0.0,
    muscle_fat_share: float = 0.0,
) -> Anatomy:
    """A random anatomy on a grid of ``shape`` (default :func:`default_shape`) and ``spacing`` mm,
    centred on the source's head, deformed affinely and nonlinearly; ``shell_stretch_sd`` > 0
    varies the thickness of a file source's skull and scalp (:mod:`~bids_synth.simulate.shell`);
    ``muscle_fat_share`` > 0 turns a share ``U(0, muscle_fat_share)`` of the muscle into fat
    compartments (:func:`with_fat_compartments`)."""
    if not 0.0 <= muscle_fat_share <= 1.0:
        raise ValueError(f"muscle_fat_share must be within [0, 1], got {muscle_fat_share}")
    spacing = as_spacing(spacing)
    shape = tuple(int(n) for n in (shape or default_shape(spacing)))
    source = get_label_source(label_source, device)
    affine = centred_affine(shape, spacing)
    transform = SpatialTransform.draw(
        numpy_rng(seed, "deformation"),
        torch_generator(seed, "deformation", device=device),
        extent_mm=np.asarray(shape) * spacing,
        centre=source.head_centre_mm,
        deform_mm=DEFORMATION_MM,
    )
    points = transform(grid_points(shape, affine, device=device))
    voxel_mm = float(np.mean(spacing)) * transform.volume_scale
    fractions = source.fractions(
        points, voxel_mm=voxel_mm, seed=seed, shell_stretch_sd=shell_stretch_sd
    )
    del points
    if muscle_fat_share:
        share = float(numpy_rng(seed, "fat").uniform(0.0, muscle_fat_share))
        generator = torch_generator(seed, "fat", device=device)
        fractions = with_fat_compartments(fractions, spacing, share, generator)
    biology = numpy_rng(seed, "biology")
    textures = smooth_field(
        shape,
        spacing=spacing,
        correlation_mm=TEXTURE_CORRELATION_MM,
        generator=torch_generator(seed, "texture", device=device),
        channels=2,
    )
    return Anatomy(
        seed=int(seed),
        label_source=label_source,
        affine=affine,
        fractions=fractions,
        labels=labels_from_fractions(fractions),
        head_mask=head_mask_from_fractions(fractions),
        transform=transform,
        property_jitter=draw_property_jitter(biology),
        tissue_hu=draw_tissue_hu(biology),
        textures=textures,
    )


def with_fat_compartments(
    fractions: torch.Tensor,
    spacing: tuple[float, float, float],
    share: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``fractions`` with about ``share`` of the grid's muscle turned into fat, in
    smooth compartments of about :data:`FAT_COMPARTMENT_MM` (where a smooth random field exceeds
    the share's quantile, with a partial-volume edge).

    The file label sources know fat only as a subcutaneous layer: all their deep soft tissue is
    muscle, while a real head holds fat in its orbits, face and neck. A network trained on them
    learns that deep soft tissue is muscle; with compartments it has to read fat from the image.
    """
    field = smooth_field(
        fractions.shape[1:],
        spacing=spacing,
        correlation_mm=FAT_COMPARTMENT_MM,
        generator=generator,
    )[0]
    threshold = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1.0 - share)).item()
    fat = torch.sigmoid((field - threshold) / _FAT_EDGE) * fractions[Tissue.MUSCLE]
    fractions = fractions.clone()
    fractions[Tissue.MUSCLE] -= fat
    fractions[Tissue.FAT] += fat
    return fractions
