"""Shared benchmark plumbing: a description of the machine and dated sections in BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np

from bids_synth.simulate.atlases import CT_HEAD_HU

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """CPU model, core count and memory of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM, Python {platform.python_version()}"


def append_section(title: str, command: str, body: str) -> None:
    """Append a dated result section (title, command, machine, body) to BENCHMARKS.md."""
    date = datetime.date.today().isoformat()
    section = f"\n## {title} — {date}\n\nCommand: `{command}`  \nMachine: {machine()}\n\n{body}\n"
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nEach section: the command, the machine, the date.\n"
        )
    with open(BENCHMARKS_MD, "a") as handle:
        handle.write(section)


def mosaic(images: dict, path: Path, windows: dict | None = None) -> None:
    """Central cuts (three planes, one column per image) of same-grid volumes, saved as a PNG.

    ``windows`` maps a name to its (low, high) grey window; others share the first image's
    0 – 99.5th percentile window.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(images.values()))
    shared = (0.0, float(np.percentile(first, 99.5)))
    fig, axes = plt.subplots(3, len(images), figsize=(2.6 * len(images), 7.5), squeeze=False)
    for column, (name, volume) in enumerate(images.items()):
        low, high = (windows or {}).get(name, shared)
        for row in range(3):
            cut = np.take(volume, volume.shape[row] // 2, axis=row)
            axes[row, column].imshow(np.rot90(cut), cmap="gray", vmin=low, vmax=high)
            axes[row, column].axis("off")
        axes[0, column].set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def ct_skull_thickness(hu, affine) -> dict[str, float]:
    """A CT's skull thickness over the vertex (:func:`bids_synth.metrics.skull_thickness_mm` on
    bone-range voxels, in RAS+ voxel order): median, p25, p75 (mm) and rays."""
    import nibabel as nib

    from bids_synth.metrics import skull_thickness_mm
    from bids_synth.synthesis.sct_methods import BONE_QC_HU

    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(hu, np.float32), affine))
    voxels = np.asarray(canonical.dataobj)
    return skull_thickness_mm(
        voxels >= BONE_QC_HU, voxels > CT_HEAD_HU, canonical.header.get_zooms()[:3]
    )


def reference_brain(path, scan) -> np.ndarray:
    """The brain of an independent reference on ``scan``'s grid: a brain mask, or a tissue
    probability map (GM + WM + CSF > ½), in the same world space as ``scan``, resampled."""
    import nibabel as nib

    from bids_synth.resampling import resample_onto

    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    brain = (data > 0.5).astype(np.float32) if data.ndim == 3 else data[..., :3].sum(axis=-1)
    return resample_onto(brain, image.affine, scan.shape[:3], scan.affine) > 0.5
