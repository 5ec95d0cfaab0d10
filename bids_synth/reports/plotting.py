"""Matplotlib figures for the reports, drawn off-screen (Agg, no pyplot state), and PNG encoding."""

from __future__ import annotations

import contextlib
import io

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

DPI = 90
COLORS = 256
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
}


@contextlib.contextmanager
def drawing(width: float, height: float):
    """Yield a ``width``×``height`` inch figure; draw on it inside the block (report style)."""
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(fig)
        yield fig


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` as a :data:`COLORS`-colour palette PNG (median cut), about 60 % of the
    true-colour size; greys stay grey and rare colours (a colour bar's blues) stay close."""
    fig.canvas.draw()
    pixels = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba())
    palette = pixels.convert("RGB").quantize(colors=COLORS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()
