"""Label sources: where a draw's anatomy comes from, behind one interface.

A source returns tissue fractions at arbitrary points of its own space (mm) and says where its
head centre is. ``"phantom"`` builds a new procedural anatomy from each seed; the file sources
(:data:`~bids_synth.simulate.atlases.FILE_SOURCES`) are loaded once per process and device and
vary only through the random deformation of each draw. :mod:`.atlases` (scipy, nibabel) is
imported only when a file source is used: the phantom needs nothing but torch and numpy.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from bids_synth.simulate.grids import sample
from bids_synth.simulate.phantom import PHANTOM_CENTRE_MM, PhantomParams, phantom_fractions
from bids_synth.simulate.seeding import numpy_rng
from bids_synth.simulate.shell import shell_scale, stretched_points
from bids_synth.simulate.tissues import Tissue

if TYPE_CHECKING:
    from bids_synth.simulate.atlases import LabelVolume

LABEL_SOURCES = ("phantom", "tpm", "mni2009a", "neuromorphometrics", "colin27", "ct0051")


class PhantomSource:
    """The procedural phantom: each seed draws its own layer thicknesses, so it takes no shell
    stretch."""

    name = "phantom"
    head_centre_mm = PHANTOM_CENTRE_MM

    def fractions(
        self, points: torch.Tensor, *, voxel_mm: float, seed: int, shell_stretch_sd: float = 0.0
    ) -> torch.Tensor:
        return phantom_fractions(PhantomParams.draw(seed), points, voxel_mm=voxel_mm)


class VolumeSource:
    """Fractions precomputed on a grid (a :class:`LabelVolume`), interpolated trilinearly."""

    def __init__(self, name: str, volume: LabelVolume, device: torch.device):
        self.name = name
        self.head_centre_mm = volume.head_centre_mm
        self.affine = volume.affine
        self.volume = torch.from_numpy(volume.fractions).to(device)

    def fractions(
        self, points: torch.Tensor, *, voxel_mm: float, seed: int, shell_stretch_sd: float = 0.0
    ) -> torch.Tensor:
        """Trilinear fractions (outside the map: background air); with ``shell_stretch_sd`` the
        skull and scalp of ``seed``'s draw stretched (:mod:`~bids_synth.simulate.shell`);
        ``voxel_mm`` unused."""
        if shell_stretch_sd:
            points = self._stretched(points, seed, shell_stretch_sd)
        f = sample(self.volume, self.affine, points, padding_mode="zeros")
        f[Tissue.BACKGROUND] += (1 - f.sum(dim=0)).clamp(min=0)
        return f

    @functools.cached_property
    def _depth_and_normal(self) -> torch.Tensor:
        from bids_synth.simulate.atlases import brain_depth_and_normal

        fractions = self.volume.cpu().numpy()
        return torch.from_numpy(brain_depth_and_normal(fractions, self.affine)).to(self.volume)

    def _stretched(self, points: torch.Tensor, seed: int, sd: float) -> torch.Tensor:
        depth_and_normal = sample(self._depth_and_normal, self.affine, points)
        depth, normal = depth_and_normal[0], depth_and_normal[1:].movedim(0, -1)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        scale = shell_scale(points, numpy_rng(seed, "shell"), sd)
        return stretched_points(points, depth, normal, scale)


@functools.cache
def _volume(name: str) -> LabelVolume:
    from bids_synth.simulate.atlases import FILE_SOURCES

    return FILE_SOURCES[name]()


@functools.cache
def _source_on(name: str, device: torch.device):
    return PhantomSource() if name == "phantom" else VolumeSource(name, _volume(name), device)


def get_label_source(name: str, device: str | torch.device = "cpu"):
    """The label source ``name`` (one of :data:`LABEL_SOURCES`), cached per device.

    File sources raise :class:`FileNotFoundError` naming ``$BIDS_SYNTH_REFDATA`` when the
    reference images are missing.
    """
    if name not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {name!r}; choose from {', '.join(LABEL_SOURCES)}")
    return _source_on(name, torch.device(device))
