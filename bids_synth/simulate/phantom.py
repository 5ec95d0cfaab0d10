"""Procedural head phantom: partial-volume tissue fractions from nothing but code and a seed.

The phantom is an implicit model: every structure is an approximate signed distance function of
the position in *phantom space* (mm, RAS+, origin at the centre of the cranial cavity), so it is
evaluated directly at the (deformed) sample points of any output grid, at any resolution, and
converted to fractions with :func:`~bids_synth.simulate.shapes.coverage`. Structures are painted
from the outside in ("over" compositing keeps the fractions summing to one):

scalp (skin, fat, muscle) → orbital fat → skull (outer table, diploë, inner table) with the
sinuses and airway → spine → cranial cavity (CSF) → cortex folded by the zero set of a random
plane-wave field (sulci) and the interhemispheric fissure → white matter → deep grey nuclei →
ventricles → optional periventricular white-matter lesions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bids_synth.simulate.fields import RandomWaves
from bids_synth.simulate.seeding import numpy_rng
from bids_synth.simulate.shapes import Ellipsoid, coverage, intersection, slab, union
from bids_synth.simulate.tissues import N_TISSUES, Tissue

#: Where the grid of a draw is centred in phantom space (mm): the middle of head and upper neck.
PHANTOM_CENTRE_MM = (0.0, 8.0, -20.0)

# Adult template layout in phantom space (mm): (centre, semi-axes).
_CAVITY = ((0, 0, 0), (64, 82, 60))
_POSTERIOR_FOSSA = ((0, -48, -35), (46, 30, 22))  # cerebellum
_HEAD = ((0, 0, 0), (79, 94, 70))
_OCCIPUT = ((0, -40, -45), (62, 52, 40))
_FACE = ((0, 30, -50), (62, 70, 48))
_NECK = ((0, -10, -150), (52, 55, 110))
_ORBITS = (((-32, 62, -22), (15, 17, 14)), ((32, 62, -22), (15, 17, 14)))
_SINUSES = (
    ((0, 88, -10), (12, 5, 9)),  # frontal
    ((-24, 52, -52), (12, 17, 16)),  # maxillary
    ((24, 52, -52), (12, 17, 16)),
    ((0, 60, -48), (7, 30, 20)),  # nasal cavity
    ((0, 28, -40), (11, 10, 9)),  # sphenoid
)
_AIRWAY = ((0, 15, -110), (9, 7, 60))  # pharynx and trachea
_SPINE = ((0, -12, -150), (11, 11, 95))
_DEEP_GM = tuple(
    ((side * x, y, z), axes)
    for side in (-1, 1)
    for (x, y, z), axes in (
        ((10, -14, 4), (8, 14, 7)),  # thalamus
        ((17, 14, 12), (5, 9, 8)),  # caudate head
        ((24, 4, 0), (5, 14, 9)),  # putamen
        ((19, 0, -1), (3, 8, 5)),  # pallidum
    )
)
_VENTRICLES = (
    *(
        ((side * x, y, z), axes)
        for side in (-1, 1)
        for (x, y, z), axes in (
            ((9, -4, 16), (6, 26, 7)),  # body of the lateral ventricle
            ((11, 20, 12), (5, 10, 8)),  # frontal horn
            ((17, -32, 10), (6, 12, 7)),  # atrium and occipital horn
            ((28, -8, -15), (3, 15, 3)),  # temporal horn
        )
    ),
    ((0, -8, 2), (1.8, 14, 8)),  # third ventricle
)
_FISSURE_STOP = ((0, -5, 8), (22, 45, 16))  # corpus callosum and basal ganglia: no fissure there
_VENTRICLE_CENTRE = (0, -4, 10)

#: Low-frequency modulations (unit variance): surface shapes and layer thicknesses.
SHAPE_FIELDS = ("head", "cavity", "skull", "fat", "csf", "cortex", "sulcus")


@dataclass(frozen=True)
class PhantomParams:
    """One phantom anatomy: the jittered layout and the thickness/shape parameters (mm)."""

    cavity: tuple[Ellipsoid, ...]  # cerebrum and posterior fossa
    floor_z: float  # cavity floor height at y = 0; the floor rises anteriorly
    floor_slope: float
    temporal_dip_mm: float  # middle cranial fossae (temporal lobes) lie lower
    head: tuple[Ellipsoid, ...]
    orbits: tuple[Ellipsoid, ...]
    sinuses: tuple[Ellipsoid, ...]
    airway: Ellipsoid
    spine: Ellipsoid
    deep_gm: tuple[Ellipsoid, ...]
    ventricles: tuple[Ellipsoid, ...]
    fissure_stop: Ellipsoid
    lesions: tuple[Ellipsoid, ...]
    skin_mm: float
    fat_mm: float
    skull_mm: float
    outer_table_mm: float
    inner_table_mm: float
    csf_mm: float
    cortex_mm: float
    sulcus_depth_mm: float
    sulcus_half_width_mm: float
    shape_waves: RandomWaves = field(repr=False)  # one field per name in SHAPE_FIELDS
    sulci: RandomWaves = field(repr=False)

    @classmethod
    def draw(cls, seed: int, *, lesions: bool | None = None) -> PhantomParams:
        """A random adult anatomy; ``lesions`` None draws them with probability 0.4."""
        rng = numpy_rng(seed, "phantom")
        scale = rng.normal(1.0, 0.04, 3).clip(0.9, 1.1) * rng.normal(1.0, 0.03)

        def place(spec, jitter_mm=1.5, jitter_rel=0.06, factor=1.0, about=(0, 0, 0)):
            centre = np.asarray(spec[0], float) + rng.normal(0, jitter_mm, 3)
            axes = np.asarray(spec[1], float) * rng.normal(1.0, jitter_rel, 3).clip(0.8, 1.2)
            return Ellipsoid(tuple(centre), tuple(axes)).scaled(factor, about).scaled(scale)

        atrophy = rng.uniform(0.0, 1.0)  # 0: young adult, 1: elderly (more CSF, larger ventricles)
        ventricle_factor = np.array([1.0 + 0.8 * atrophy, 1.0, 1.0 + 0.6 * atrophy])
        has_lesions = rng.random() < 0.4 if lesions is None else lesions
        lesion_list = []
        for _ in range(int(rng.integers(2, 12)) if has_lesions else 0):
            centre = (
                rng.choice([-1, 1]) * rng.uniform(8, 24),
                rng.uniform(-30, 22),
                rng.uniform(8, 28),
            )
            lesion_list.append(
                Ellipsoid(tuple(np.asarray(centre) * scale), tuple(rng.uniform(1.5, 5, 3)))
            )

        return cls(
            cavity=(place(_CAVITY, 0, 0.03), place(_POSTERIOR_FOSSA, 1.5, 0.06)),
            floor_z=float(rng.normal(-28, 3)) * scale[2],
            floor_slope=float(rng.normal(0.3, 0.04)),
            temporal_dip_mm=float(rng.uniform(12, 20)),
            head=tuple(place(spec, 1.0, 0.03) for spec in (_HEAD, _OCCIPUT, _FACE, _NECK)),
            orbits=tuple(place(spec) for spec in _ORBITS),
            sinuses=tuple(place(spec, 1.5, 0.1) for spec in _SINUSES),
            airway=place(_AIRWAY, 1.0, 0.1),
            spine=place(_SPINE, 1.0, 0.05),
            deep_gm=tuple(place(spec, 1.0, 0.08) for spec in _DEEP_GM),
            ventricles=tuple(
                place(spec, 0.8, 0.1, ventricle_factor, _VENTRICLE_CENTRE) for spec in _VENTRICLES
            ),
            fissure_stop=place(_FISSURE_STOP, 0, 0.05),
            lesions=tuple(lesion_list),
            skin_mm=float(rng.uniform(1.5, 2.5)),
            fat_mm=float(rng.uniform(1.5, 4.5)),
            skull_mm=float(rng.uniform(5.5, 8.0)),
            outer_table_mm=float(rng.uniform(1.5, 2.2)),
            inner_table_mm=float(rng.uniform(1.0, 1.6)),
            csf_mm=float(1.2 + 2.0 * atrophy + rng.uniform(0, 0.5)),
            cortex_mm=float(rng.uniform(2.4, 3.0) - 0.3 * atrophy),
            sulcus_depth_mm=float(rng.uniform(13, 18)),
            sulcus_half_width_mm=float(0.5 + 0.8 * atrophy),
            shape_waves=RandomWaves.draw(
                rng, n_waves=16, wavelength_mm=(60, 160), n_fields=len(SHAPE_FIELDS)
            ),
            sulci=RandomWaves.draw(rng, n_waves=64, wavelength_mm=(15, 20)),
        )


def phantom_fractions(
    params: PhantomParams, points: torch.Tensor, *, voxel_mm: float, chunk: int | None = None
) -> torch.Tensor:
    """Tissue fractions ``(N_TISSUES, *points.shape[:-1])`` at phantom-space ``points`` (mm).

    ``voxel_mm`` is the voxel size in phantom space (sets the partial-volume ramp). Points are
    processed in chunks (slabs of the grid; default 2^16 points on a CPU, where skipping the
    structures far from a chunk pays, 2^21 on a GPU).
    """
    chunk = chunk or (1 << 16 if points.device.type == "cpu" else 1 << 21)
    flat = points.reshape(-1, 3)
    out = torch.zeros(N_TISSUES, flat.shape[0], dtype=torch.float32, device=points.device)
    for start in range(0, flat.shape[0], chunk):
        rows = flat[start : start + chunk].T.contiguous()  # (3, n): one contiguous row per axis
        _paint_chunk(params, rows, out[:, start : start + chunk], voxel_mm)
    return out.reshape(N_TISSUES, *points.shape[:-1])


class _Canvas:
    """Coverage layers painted over a chunk of points (coordinate rows ``(3, n)``).

    Layers are collected in painting order and composited once, from the top:
    ``f_k = u_k·Π_{j>k}(1 − u_j)`` ("over" compositing; whatever no layer covers is background).
    A sub-canvas paints on a subset of the points (``index``) into the same layer list.
    """

    def __init__(self, points: torch.Tensor, voxel_mm: float, *, index=None, layers=None):
        self.x, self.h, self.index = points, voxel_mm, index
        self.layers = [] if layers is None else layers
        self.lo = points.amin(dim=1).cpu().numpy()
        self.hi = points.amax(dim=1).cpu().numpy()

    def near(self, ellipsoid: Ellipsoid, margin: float = 4.0) -> bool:
        return ellipsoid.overlaps(self.lo, self.hi, margin + self.h)

    def paint(self, tissue: Tissue, sdf: torch.Tensor) -> None:
        self.layers.append((tissue, coverage(sdf, self.h), self.index))

    def paint_ellipsoids(self, tissue: Tissue, ellipsoids, *, dilate_mm: float = 0.0) -> None:
        for ellipsoid in ellipsoids:
            if self.near(ellipsoid, dilate_mm + 2.0):
                self.paint(tissue, ellipsoid.sdf(self.x) - dilate_mm)

    def subset(self, index: torch.Tensor) -> _Canvas:
        return _Canvas(self.x[:, index], self.h, index=index, layers=self.layers)

    def composite(self, f: torch.Tensor) -> None:
        """Write the fractions of all layers into ``f`` ``(N_TISSUES, n)``, zero on entry."""
        remaining = torch.ones_like(f[0])
        for tissue, u, index in reversed(self.layers):
            if index is None:
                f[tissue] += u * remaining
                remaining *= 1 - u
            else:
                rest = remaining[index]
                f[tissue].index_add_(0, index, u * rest)
                remaining[index] = rest * (1 - u)
        f[Tissue.BACKGROUND] += remaining


def _paint_chunk(p: PhantomParams, x: torch.Tensor, f: torch.Tensor, h: float) -> None:
    canvas = _Canvas(x, h)
    margin = 4 * abs(p.skin_mm) + 10  # head-shape waves move the surface by a few mm
    if not any(canvas.near(e, margin) for e in p.head):
        f[Tissue.BACKGROUND] = 1
        return
    wave = dict(zip(SHAPE_FIELDS, p.shape_waves(x)))
    head = union(*(e.sdf(x) for e in p.head)) - 2.0 * wave["head"]
    cavity = torch.maximum(
        union(*(e.sdf(x) for e in p.cavity)) - 2.0 * wave["cavity"], _cranial_floor(p, x) - x[2]
    )

    canvas.paint(Tissue.SKIN, head)
    canvas.paint(Tissue.FAT, head + p.skin_mm)
    fat_mm = (p.fat_mm * (1 + 0.3 * wave["fat"])).clamp(min=1.0)
    canvas.paint(Tissue.MUSCLE, head + p.skin_mm + fat_mm)
    canvas.paint_ellipsoids(Tissue.FAT, p.orbits)

    skull_mm = (p.skull_mm * (1 + 0.2 * wave["skull"])).clamp(min=3.0)
    below_scalp = head + p.skin_mm + 1.0
    canvas.paint(Tissue.CORTICAL_BONE, torch.maximum(cavity - skull_mm, below_scalp))
    canvas.paint(Tissue.MARROW, torch.maximum(cavity - skull_mm + p.outer_table_mm, below_scalp))
    canvas.paint(Tissue.CORTICAL_BONE, cavity - p.inner_table_mm)
    canvas.paint_ellipsoids(Tissue.CORTICAL_BONE, [p.spine])
    canvas.paint_ellipsoids(Tissue.MARROW, [p.spine], dilate_mm=-2.0)
    for sinus in p.sinuses:
        if canvas.near(sinus):
            sdf = sinus.sdf(x)
            canvas.paint(Tissue.CORTICAL_BONE, torch.maximum(sdf - 1.5, -cavity))
            canvas.paint(Tissue.SINUS, torch.maximum(sdf, 2.0 - cavity))
    canvas.paint_ellipsoids(Tissue.SINUS, [p.airway])

    canvas.paint(Tissue.CSF, cavity)
    inside = (cavity < h).nonzero().squeeze(1)
    if inside.numel():
        _paint_brain(
            p, canvas.subset(inside), cavity[inside], {k: v[inside] for k, v in wave.items()}
        )
    canvas.composite(f)


def _cranial_floor(p: PhantomParams, x: torch.Tensor) -> torch.Tensor:
    """Height (mm) of the cranial floor: rising anteriorly, dipping laterally under the
    temporal lobes and dropping behind into the posterior fossa."""
    temporal = torch.exp(-((x[1] / 20) ** 2)) * torch.sigmoid((x[0].abs() - 20) / 4)
    posterior = torch.sigmoid((-x[1] - 35) / 6)
    return p.floor_z + p.floor_slope * x[1] - p.temporal_dip_mm * temporal - 30 * posterior


def _paint_brain(p: PhantomParams, canvas: _Canvas, cavity, wave) -> None:
    """Paint cortex, white matter, lesions, nuclei and ventricles inside the cranial cavity."""
    x = canvas.x
    depth = -(cavity + (p.csf_mm * (1 + 0.4 * wave["csf"])).clamp(min=0.5))  # below brain surface
    n, grad = p.sulci.value_and_gradient(x)
    sulcus = intersection(
        slab(n / grad.norm(dim=0).clamp(min=1e-3), p.sulcus_half_width_mm),
        depth - p.sulcus_depth_mm * (1 + 0.25 * wave["sulcus"]),
    )
    fissure = torch.maximum(slab(x[0] - p.cavity[0].centre[0], 1.0), -p.fissure_stop.sdf(x))
    to_csf = union(depth, sulcus, fissure)  # distance from the nearest CSF, positive in parenchyma
    cortex_mm = (p.cortex_mm * (1 + 0.15 * wave["cortex"])).clamp(min=1.5)
    white_matter = cortex_mm - to_csf
    canvas.paint(Tissue.GM, -to_csf)
    canvas.paint(Tissue.WM, white_matter)
    for lesion in p.lesions:
        if canvas.near(lesion):
            canvas.paint(Tissue.LESION, torch.maximum(lesion.sdf(x), white_matter))
    canvas.paint_ellipsoids(Tissue.DEEP_GM, p.deep_gm)
    near = [v for v in p.ventricles if canvas.near(v)]
    if near:
        canvas.paint(Tissue.VENTRICLE, union(*(v.sdf(x) for v in near)))
