"""Charts: intensity histograms per tissue, metric distributions, per-site comparisons."""

from __future__ import annotations

import contextlib
import math

import numpy as np
from matplotlib import colormaps

from bids_synth.reports.plotting import drawing, to_png

TISSUE_COLORS = {"CSF": "#1f77b4", "GM": "#7f7f7f", "WM": "#d62728"}
SITE_CMAP = "tab10"
OUTLIER_COLOR = "#d62728"
POINT_COLOR = "#1f6feb"
_GREY = {"color": "#9aa5b1"}
BOX_STYLE = dict(showfliers=False, widths=0.5, medianprops={"color": "black"}, boxprops=_GREY,
                 whiskerprops=_GREY, capprops=_GREY)  # fmt: skip


def tissue_histograms(panels: list[tuple[str, dict[str, np.ndarray]]]) -> bytes:
    """One panel per (title, {tissue: intensities}): each tissue's intensity density as a line."""
    with drawing(3.6 * len(panels) + 0.4, 2.6) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, tissues) in zip(axes, panels):
            values = np.concatenate(list(tissues.values()))
            bins = int(np.clip(np.sqrt(min(len(v) for v in tissues.values())), 15, 80))
            edges = np.linspace(*np.percentile(values, (0.2, 99.8)), bins + 1)
            for name, data in tissues.items():
                density, _ = np.histogram(data, edges, density=True)
                ax.stairs(density, edges, label=name, color=TISSUE_COLORS.get(name), linewidth=1.4)
            ax.set_title(title)
            ax.set_xlabel("intensity")
            ax.set_yticks([])
        axes[0].set_ylabel("density")
        axes[-1].legend(frameon=False, fontsize=8)
        fig.tight_layout()
    return to_png(fig)


def distributions(metrics: dict[str, list[tuple[float, str, bool]]]) -> bytes:
    """Small multiples, one per metric: a box plot and every value as a point (outliers in red,
    labelled) — ``metrics`` maps a metric to ``(value, label, is_outlier)`` triples."""
    with _small_multiples(len(metrics), 2.3) as (fig, axes):
        jitter = np.random.default_rng(0)
        for ax, (name, points) in zip(axes, metrics.items()):
            values = np.array([value for value, _, _ in points])
            ax.boxplot(values, vert=False, **BOX_STYLE)
            heights = 1 + jitter.uniform(-0.15, 0.15, len(points))
            colors = [OUTLIER_COLOR if outlier else POINT_COLOR for _, _, outlier in points]
            ax.scatter(values, heights, s=16, c=colors, zorder=3, alpha=0.85, edgecolors="none")
            for (value, label, outlier), height in zip(points, heights):
                if outlier:
                    ax.annotate(label, (value, height), xytext=(0, 6), textcoords="offset points",
                                ha="center", fontsize=7, color=OUTLIER_COLOR)  # fmt: skip
            ax.set_title(name, loc="left")
            ax.set_yticks([])
            ax.spines["left"].set_visible(False)
            ax.locator_params(axis="x", nbins=5)
            ax.margins(x=0.08)
    return to_png(fig)


def per_site(metrics: dict[str, dict[str, list[float]]]) -> bytes:
    """Small multiples, one per metric: each site's values as points over its box plot."""
    with _small_multiples(len(metrics), 2.6) as (fig, axes):
        jitter = np.random.default_rng(0)
        for ax, (name, sites) in zip(axes, metrics.items()):
            labels = sorted(sites)
            ax.boxplot([sites[s] for s in labels], **BOX_STYLE)
            for position, site in enumerate(labels, start=1):
                values = sites[site]
                ax.scatter(position + jitter.uniform(-0.12, 0.12, len(values)), values, s=16,
                           color=colormaps[SITE_CMAP]((position - 1) % 10), zorder=3, edgecolors="none")  # fmt: skip
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30 if len(labels) > 4 else 0)
            ax.set_title(name, loc="left")
    return to_png(fig)


@contextlib.contextmanager
def _small_multiples(count: int, panel_height: float):
    """A figure with ``count`` panels, three per line; unused panels hidden, layout tightened."""
    columns = min(3, count)
    lines = math.ceil(count / columns)
    with drawing(3.8 * columns, panel_height * lines) as fig:
        axes = fig.subplots(lines, columns, squeeze=False).ravel()
        for ax in axes[count:]:
            ax.set_visible(False)
        yield fig, axes[:count]
        fig.tight_layout(w_pad=2.0)
