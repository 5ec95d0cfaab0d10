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
from bids_synth.simulate.tissues import Tissue

if TYPE_CHECKING:
    from bids_synth.simulate.atlases import LabelVolume

LABEL_SOURCES = ("phantom", "tpm", "mni2009a", "neuromorphometrics", "colin27", "ct0051")


class PhantomSource:
    name = "phantom"
    head_centre_mm = PHANTOM_CENTRE_MM

    def fractions(self, points: torch.Tensor, *, voxel_mm: float, seed: int) -> torch.Tensor:
        return phantom_fractions(PhantomParams.draw(seed), points, voxel_mm=voxel_mm)


class VolumeSource:
    """Fractions precomputed on a grid (a :class:`LabelVolume`), interpolated trilinearly."""

    def __init__(self, name: str, volume: LabelVolume, device: torch.device):
        self.name = name
        self.head_centre_mm = volume.head_centre_mm
        self.affine = volume.affine
        self.volume = torch.from_numpy(volume.fractions).to(device)

    def fractions(self, points: torch.Tensor, *, voxel_mm: float, seed: int) -> torch.Tensor:
        """Trilinear fractions (outside the map: background air); ``voxel_mm``/``seed`` unused."""
        f = sample(self.volume, self.affine, points, padding_mode="zeros")
        f[Tissue.BACKGROUND] += (1 - f.sum(dim=0)).clamp(min=0)
        return f


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
