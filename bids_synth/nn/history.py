"""The training log: one row per epoch, written as CSV and plotted as a PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bids_synth.fileio import atomic_write, atomic_write_text


def write_history_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with the same keys, the first row's order) as CSV."""
    buffer = io.StringIO()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def plot_history(path: Path, rows: list[dict]) -> None:
    """Plot the training losses and the validation metrics per epoch (matplotlib, Agg backend);
    a loss some epochs lack (e.g. a fine-tune's new term) is a gap in its curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    losses = [key for key in keys if key.startswith("train_")]
    metrics = [key for key in keys if key.startswith("val_")]
    figure, axes = plt.subplots(
        1, 1 + len(metrics), figsize=(4 * (1 + len(metrics)), 3.2), squeeze=False
    )
    for key in losses:
        axes[0, 0].plot(
            epochs,
            [row.get(key, float("nan")) for row in rows],
            marker="o",
            label=key.removeprefix("train_"),
        )
    axes[0, 0].set(title="training losses", xlabel="epoch", yscale="log")
    axes[0, 0].legend(fontsize="small")
    for axis, key in zip(axes[0, 1:], metrics):
        values = [row.get(key, float("nan")) for row in rows]
        axis.plot(epochs, values, marker="o", color="tab:red")
        axis.set(title=key.removeprefix("val_") + " (held-out draws)", xlabel="epoch")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
