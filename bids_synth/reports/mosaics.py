"""Slice mosaics in three planes: rows of layered images (grey scale, colour overlays, contours).

A :class:`Row` is one picture of the head (an image with optional overlays and mask outlines); a
mosaic draws every row at the same world coordinates in each requested plane, one block of rows
per plane, so images on different voxel grids line up. All panels share one matplotlib axes in
"panel units" (a panel is 1 unit wide), which is several times faster than an axes per panel.
Within :func:`mosaics_kept_in`, a mosaic of the same content as one drawn before (same volumes,
layers, cuts and software version) is read back instead of drawn again: a rerun's reports redraw
only what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.patches import Rectangle

from bids_synth import __version__
from bids_synth.fileio import atomic_write
from bids_synth.reports.plotting import drawing, to_png
from bids_synth.reports.volumes import AXIAL, CORONAL, PLANE_NAMES, SAGITTAL, SIDE_LABELS, Volume

PANEL_IN = 1.3  # panel width in inches
LABEL_IN = 1.1  # left margin for row labels
COLORBAR_IN = 0.8  # right margin for a colour scale and its label
TITLE_UNITS = 0.2  # space above each plane's block, in panel widths
GAP_UNITS = 0.02  # space between panels
_OUTLINE = [patheffects.withStroke(linewidth=1.5, foreground="black")]


@dataclass(frozen=True)
class Layer:
    """One thing drawn in a panel.

    ``kind``: ``image`` (``cmap`` over ``window``), ``overlay`` (an image whose voxels below
    ``threshold`` are transparent, drawn with ``alpha``) or ``contour`` (outline of ``volume > 0.5``
    in ``color``).
    """

    volume: Volume
    kind: str = "image"
    window: tuple[float, float] | None = None
    cmap: str = "gray"
    alpha: float = 1.0
    threshold: float | None = None
    color: str = "#ff4136"


@dataclass(frozen=True)
class Row:
    """A labelled picture: layers drawn bottom to top; ``colorbar`` labels the last layer's scale."""

    label: str
    layers: tuple[Layer, ...]
    colorbar: str | None = None


_KEPT_IN: ContextVar[Path | None] = ContextVar("mosaics_kept_in", default=None)


@contextlib.contextmanager
def mosaics_kept_in(folder: Path):
    """Within the block, keep every mosaic in ``folder`` under the hash of its content and reuse
    it when the same content is drawn again."""
    token = _KEPT_IN.set(Path(folder))
    try:
        yield
    finally:
        _KEPT_IN.reset(token)


def mosaic(
    rows: list[Row], cuts: dict[int, list[float]], planes=(AXIAL, CORONAL, SAGITTAL)
) -> bytes:
    """PNG of every row cut at ``cuts[axis]`` (world mm) in each of ``planes``.

    Panels take the field of view of the first layer of the first row.
    """
    folder = _KEPT_IN.get()
    if folder is None:
        return _draw(rows, cuts, planes)
    kept = folder / f"mosaic-{_content_hash(rows, cuts, planes)}.png"
    if kept.is_file():
        return kept.read_bytes()
    png = _draw(rows, cuts, planes)
    kept.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(kept) as handle:
        handle.write(png)
    return png


def _content_hash(rows: list[Row], cuts: dict[int, list[float]], planes) -> str:
    """sha256 of everything a mosaic shows: the volumes' voxels and affines, every layer's and
    row's settings, the cuts and planes, and the software version that draws them."""
    digest = hashlib.sha256(repr((__version__, tuple(planes), sorted(cuts.items()))).encode())
    for row in rows:
        digest.update(repr((row.label, row.colorbar)).encode())
        for layer in row.layers:
            settings = (layer.kind, layer.window, layer.cmap, layer.alpha, layer.threshold)
            digest.update(repr((*settings, layer.color, layer.volume.data.shape)).encode())
            digest.update(np.ascontiguousarray(layer.volume.data, dtype=np.float32))
            digest.update(np.ascontiguousarray(layer.volume.affine, dtype=np.float64))
    return digest.hexdigest()


def _draw(rows: list[Row], cuts: dict[int, list[float]], planes) -> bytes:
    columns = len(cuts[planes[0]])
    reference = rows[0].layers[0].volume
    aspect = {axis: _aspect(reference.extent(axis)) for axis in planes}
    height_units = sum(TITLE_UNITS + len(rows) * (aspect[axis] + GAP_UNITS) for axis in planes)
    right_in = COLORBAR_IN if any(row.colorbar for row in rows) else 0.1
    width_in = LABEL_IN + columns * PANEL_IN + right_in
    height_in = height_units * PANEL_IN
    with drawing(width_in, height_in) as fig:
        ax = fig.add_axes((LABEL_IN / width_in, 0, columns * PANEL_IN / width_in, 1))
        ax.set_xlim(0, columns)
        ax.set_ylim(0, height_units)
        ax.set_axis_off()
        top = height_units
        for axis in planes:
            top -= TITLE_UNITS
            ax.text(0, top + 0.04, PLANE_NAMES[axis].capitalize(), fontsize=10, fontweight="bold")
            for r, row in enumerate(rows):
                bottom = top - aspect[axis]
                for c, mm in enumerate(cuts[axis]):
                    box = (c + GAP_UNITS / 2, bottom, c + 1 - GAP_UNITS / 2, top)
                    mappable = _draw_panel(ax, row.layers, axis, mm, box, reference.extent(axis))
                    _annotate(ax, axis, mm, box, sides=(c == 0 and r == 0))
                ax.text(-0.08, (top + bottom) / 2, row.label, ha="right", va="center", fontsize=9)
                if row.colorbar and mappable is not None:
                    _colorbar(fig, mappable, row.colorbar, (bottom, top), height_units, width_in)
                top = bottom - GAP_UNITS
    return to_png(fig)


def _aspect(extent) -> float:
    left, right, bottom, top = extent
    return (top - bottom) / (right - left)


def _draw_panel(ax, layers, axis: int, mm: float, box, field_of_view):
    """Draw the layers of one panel into ``box`` (panel units) mapping ``field_of_view`` (mm) onto
    it; return the last colour-mapped artist."""
    x0, y0, x1, y1 = box
    left, right, bottom, top = field_of_view
    scale = (x1 - x0) / (right - left)

    def place(extent):
        x_low, x_high, y_low, y_high = extent
        return (
            x0 + (x_low - left) * scale,
            x0 + (x_high - left) * scale,
            y0 + (y_low - bottom) * scale,
            y0 + (y_high - bottom) * scale,
        )

    clip = Rectangle((x0, y0), x1 - x0, y1 - y0, transform=ax.transData)
    ax.add_patch(
        Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="black", edgecolor="none", zorder=-1)
    )
    mappable = None
    for layer in layers:
        plane = layer.volume.plane(axis, mm)
        extent = place(layer.volume.extent(axis))
        if layer.kind == "contour":
            inside = plane > 0.5
            if inside.any() and not inside.all():
                contours = ax.contour(inside, levels=[0.5], colors=[layer.color], linewidths=0.9,
                                      extent=extent, origin="lower")  # fmt: skip
                contours.set_clip_path(clip)
            continue
        if layer.kind == "overlay":
            plane = np.ma.masked_less(plane, layer.threshold)
        low, high = layer.window or (float(plane.min()), float(plane.max()))
        mappable = ax.imshow(plane, cmap=layer.cmap, vmin=low, vmax=high, alpha=layer.alpha,
                             extent=extent, origin="lower", interpolation="nearest",
                             aspect="auto", clip_path=clip)  # fmt: skip
    return mappable


def _annotate(ax, axis: int, mm: float, box, *, sides: bool) -> None:
    """Slice coordinate at the top left; orientation letters on the first panel of a block."""
    x0, y0, x1, y1 = box
    text = dict(color="white", fontsize=7, path_effects=_OUTLINE)
    ax.text(x0 + 0.04, y1 - 0.04, f"{'xyz'[axis]}={mm:.0f}", va="top", **text)
    if sides:
        left, right = SIDE_LABELS[axis]
        ax.text(x0 + 0.04, y0 + 0.04, left, va="bottom", fontweight="bold", **text)
        ax.text(x1 - 0.04, y0 + 0.04, right, va="bottom", ha="right", fontweight="bold", **text)


def _colorbar(fig, mappable, label: str, span, height_units: float, width_in: float) -> None:
    bottom, top = span
    height = top - bottom
    left = 1 - (COLORBAR_IN - 0.08) / width_in
    cax = fig.add_axes((left, (bottom + 0.1 * height) / height_units, 0.1 / width_in,
                        0.8 * height / height_units))  # fmt: skip
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
