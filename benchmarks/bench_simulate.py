"""Speed and realism of the generative head model (bids_synth.simulate).

    python benchmarks/bench_simulate.py [--spacing 1.0] [--repeats 2] [--device cpu] [--threads N]
                                        [--out benchmarks/results]

1. Speed: subjects per second for a full draw (anatomy + T1w, T2w, CT with degradations) on
   the default field of view (180×216×200 mm) at ``--spacing``.
2. Realism (needs the reference images, see bids_synth.refdata; skipped when missing):
   - HU histograms of simulated CTs (phantom, tpm, mni2009a, colin27 and ct0051 heads) and the
     real head CT, all segmented by the *same* HU and morphology rules (air outside the head, bone,
     extra-cranial soft tissue, intracranial brain), and the skull's thickness over the vertex
     (bone length along upward rays, :func:`bids_synth.metrics.skull_thickness_mm`);
   - T1w intensity histogram inside the head, simulated vs Colin27, both divided by their
     99.5th percentile;
   - grey/white and CSF/white contrast of every simulated MR image beside SPM's avg152 T1, T2
     and PD templates.
3. A mosaic of several draws (T1w, T2w, FLAIR, PD, CT; three planes).

Writes PNGs and ``simulate.json`` into ``--out`` and prints a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from harness import ct_skull_thickness  # noqa: E402
from scipy import ndimage  # noqa: E402

from bids_synth.refdata import reference_dir  # noqa: E402
from bids_synth.simulate import draw_anatomy, simulate_subject  # noqa: E402
from bids_synth.simulate.atlases import CT_HEAD_HU  # noqa: E402
from bids_synth.simulate.normalisation import mr_scale  # noqa: E402
from bids_synth.simulate.scanner import ScannerStyle  # noqa: E402
from bids_synth.simulate.subject import acquire  # noqa: E402

CT_CLASSES = ("air", "soft tissue", "brain", "bone")
HU_BINS = np.arange(-1050, 2500, 10)


def measure_speed(spacing: float, repeats: int, device: str) -> dict:
    """Wall and CPU seconds per subject: anatomy draw, then T1w + T2w + CT acquisition."""
    anatomy_s, acquire_s, cpu_s = [], [], []
    shape = None
    for seed in range(repeats + 1):  # the first draw warms up (imports, caches)
        wall, cpu = time.perf_counter(), time.process_time()
        anatomy = draw_anatomy(seed, spacing=spacing, device=device)
        _sync(device)
        middle = time.perf_counter()
        acquire(anatomy, ScannerStyle.for_site(1), contrasts=("T1w", "T2w", "CT"))
        _sync(device)
        end = time.perf_counter()
        if seed:
            anatomy_s.append(middle - wall)
            acquire_s.append(end - middle)
            cpu_s.append(time.process_time() - cpu)
        shape = anatomy.shape
    total = np.add(anatomy_s, acquire_s)
    return {
        "device": device,
        "shape": list(shape),
        "spacing_mm": spacing,
        "repeats": repeats,
        "anatomy_s": round(float(np.mean(anatomy_s)), 2),
        "acquire_s": round(float(np.mean(acquire_s)), 2),
        "total_s": round(float(np.mean(total)), 2),
        "subjects_per_s": round(float(1 / np.mean(total)), 3),
        "cpu_s": round(float(np.mean(cpu_s)), 2),
        "torch_threads": torch.get_num_threads(),
    }


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def segment_ct(hu: np.ndarray, voxel_mm) -> dict[str, np.ndarray]:
    """HU/morphology classes of a head CT: air (outside the head), bone (> 300 HU), brain
    (inside the skull, −20…100 HU), soft tissue (the rest of the head, −250…250 HU)."""
    head = ndimage.binary_fill_holes(ndimage.binary_closing(hu > CT_HEAD_HU, iterations=2))
    labels, n = ndimage.label(head)
    if n > 1:
        head = labels == 1 + np.argmax(ndimage.sum(head, labels, range(1, n + 1)))
    bone = head & (hu > 300)
    closed = ndimage.binary_closing(bone, iterations=max(1, round(3 / min(voxel_mm))))
    cranium = np.zeros_like(bone)
    for k in range(hu.shape[2]):  # axial hole filling: the cranial cavity inside the skull ring
        cranium[:, :, k] = ndimage.binary_fill_holes(closed[:, :, k])
    intracranial = ndimage.binary_erosion(cranium & ~closed, iterations=2)
    return {
        "air": ~ndimage.binary_dilation(head, iterations=3),
        "bone": bone,
        "brain": intracranial & (hu > -20) & (hu < 100),
        "soft tissue": head & ~cranium & ~bone & (hu > -250) & (hu < 250),
    }


def canonical_ct(hu: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The CT in RAS+ voxel order (the third axis up) and its voxel size."""
    image = nib.as_closest_canonical(nib.Nifti1Image(hu, np.asarray(affine)))
    return np.asarray(image.dataobj, dtype=np.float32), image.header.get_zooms()[:3]


def ct_statistics(hu: np.ndarray, classes: dict, thickness: dict) -> dict:
    """HU statistics per class, and the skull's ``thickness`` over the vertex."""
    return {
        "skull_thickness_mm": {key: round(value, 2) for key, value in thickness.items()},
        **{
            name: {
                "median": round(float(np.median(hu[mask])), 1),
                "p5_p95": [round(float(v), 1) for v in np.percentile(hu[mask], [5, 95])],
                "iqr": [round(float(v), 1) for v in np.percentile(hu[mask], [25, 75])],
                "voxels": int(mask.sum()),
            }
            for name, mask in classes.items()
            if mask.any()
        },
    }


def realism_ct(draws, names, out: Path) -> dict | None:
    path = reference_dir() / "ct_head_invesalius0051.nii.gz"
    if not path.exists():
        return None
    img = nib.load(path)
    raw = np.asarray(img.dataobj, dtype=np.float32)
    real, voxel_mm = canonical_ct(raw, img.affine)
    real_classes = segment_ct(real, voxel_mm)
    thickness = ct_skull_thickness(raw, img.affine)
    result = {"real": ct_statistics(real, real_classes, thickness), "simulated": []}
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for axis, name in zip(axes, CT_CLASSES):
        axis.hist(
            real[real_classes[name]],
            bins=HU_BINS,
            density=True,
            histtype="step",
            lw=2,
            color="k",
            label="real CT (InVesalius 0051)",
        )
    for draw, draw_name in zip(draws, names):
        image, affine = draw.acquired["CT"]
        sim, voxel_mm = canonical_ct(image.cpu().numpy(), affine)
        classes = segment_ct(sim, voxel_mm)
        thickness = ct_skull_thickness(image.cpu().numpy(), np.asarray(affine))
        result["simulated"].append({"source": draw_name, **ct_statistics(sim, classes, thickness)})
        for axis, name in zip(axes, CT_CLASSES):
            axis.hist(
                sim[classes[name]],
                bins=HU_BINS,
                density=True,
                histtype="step",
                label=f"simulated {draw_name}",
            )
    for axis, name in zip(axes, CT_CLASSES):
        axis.set_title(name)
        axis.set_xlabel("HU")
        axis.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "simulate_ct_histograms.png", dpi=80)
    plt.close(fig)
    return result


def realism_t1(draws, out: Path) -> dict | None:
    path = reference_dir() / "ch2.nii.gz"
    if not path.exists():
        return None
    colin = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    head = ndimage.binary_fill_holes(colin > 0.2 * np.percentile(colin, 99))
    colin_norm = colin[head] / np.percentile(colin[head], 99.5)
    bins = np.linspace(0, 1.3, 131)
    fig, axis = plt.subplots(figsize=(7, 4))
    axis.hist(
        colin_norm, bins=bins, density=True, histtype="step", lw=2, color="k", label="Colin27 ch2"
    )
    overlaps = []
    reference, _ = np.histogram(colin_norm, bins=bins, density=True)
    for i, draw in enumerate(draws):
        mask = draw.head_mask
        values = (draw.images["T1w"][mask] / mr_scale(draw.images["T1w"], mask)).cpu().numpy()
        axis.hist(values, bins=bins, density=True, histtype="step", label=f"simulated {i}")
        counts, _ = np.histogram(values, bins=bins, density=True)
        overlaps.append(round(float(np.minimum(counts, reference).sum() * (bins[1] - bins[0])), 3))
    axis.set_xlabel("T1w intensity / 99.5th percentile in the head")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "simulate_t1w_histograms.png", dpi=80)
    plt.close(fig)
    return {"histogram_overlap_with_colin27": overlaps}


#: real images whose tissue contrast the simulated ones are compared with (SPM's 2 mm averages)
CONTRAST_TEMPLATES = {"T1w": "avg152T1", "T2w": "avg152T2", "PD": "avg152PD"}


def _tissue_ratios(image: np.ndarray, gm, wm, csf) -> dict[str, float]:
    wm_mean = float(image[wm].mean())
    return {
        "GM/WM": round(float(image[gm].mean()) / wm_mean, 3),
        "CSF/WM": round(float(image[csf].mean()) / wm_mean, 3),
    }


def realism_contrast(draws, names) -> dict | None:
    """Grey/white and CSF/white contrast of each simulated MR image (noise-free, voxels > 90 %
    one tissue) beside SPM's avg152 templates (TPM class > 0.7 on their grid)."""
    tpm_path = reference_dir() / "spm" / "TPM.nii.gz"
    if not tpm_path.exists():
        return None
    from bids_synth.resampling import resample_onto
    from bids_synth.simulate.tissues import Tissue

    tpm = nib.load(tpm_path)
    real = {}
    for suffix, name in CONTRAST_TEMPLATES.items():
        template = nib.load(reference_dir() / "spm" / f"{name}.nii.gz")
        image = np.asarray(template.dataobj, dtype=np.float32).squeeze()
        classes = [
            resample_onto(np.asarray(tpm.dataobj[..., k], np.float32), tpm.affine,
                          image.shape, template.affine) > 0.7
            for k in range(3)
        ]  # fmt: skip
        real[suffix] = {"template": name, **_tissue_ratios(image, *classes)}
    simulated = []
    for draw, name in zip(draws, names):
        pure = [(draw.fractions[t] > 0.9).numpy() for t in (Tissue.GM, Tissue.WM, Tissue.CSF)]
        simulated.append({
            "source": name,
            **{c: _tissue_ratios(draw.clean[c].numpy(), *pure) for c in draw.clean if c != "CT"},
        })  # fmt: skip
    return {"real": real, "simulated": simulated}


def mosaic(draws, names, out: Path) -> None:
    contrasts = ("T1w", "T2w", "FLAIR", "PD", "CT")
    fig, axes = plt.subplots(
        len(draws) * 3, len(contrasts), figsize=(2.6 * len(contrasts), 2.6 * 3 * len(draws))
    )
    for row, (draw, name) in enumerate(zip(draws, names)):
        centre = [
            int(n * f) for n, f in zip(draw.head_mask.shape, (0.56, 0.5, 0.62))
        ]  # off the midline
        for col, contrast in enumerate(contrasts):
            image = draw.images[contrast].cpu().numpy()
            window = (-100, 1500) if contrast == "CT" else (0, float(np.percentile(image, 99.5)))
            for plane in range(3):
                axis = axes[3 * row + plane, col]
                section = np.take(image, centre[plane], axis=plane).T
                axis.imshow(section, origin="lower", cmap="gray", vmin=window[0], vmax=window[1])
                axis.set_xticks([])
                axis.set_yticks([])
                if plane == 0:
                    axis.set_title(f"{name}: {contrast}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "simulate_mosaic.png", dpi=55)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "speed": measure_speed(args.spacing, args.repeats, args.device),
    }
    print(json.dumps(results["speed"]))

    contrasts = ("T1w", "T2w", "FLAIR", "PD", "CT")
    sources = [("phantom", 0), ("phantom", 1), ("phantom", 2)]
    if (reference_dir() / "spm" / "TPM.nii.gz").exists():
        sources += [("tpm", 3), ("mni2009a", 5), ("colin27", 4), ("ct0051", 6)]
    draws = [
        simulate_subject(
            seed,
            label_source=source,
            spacing=args.spacing,
            contrasts=contrasts,
            site=seed % 3,
            device=args.device,
        )
        for source, seed in sources
    ]
    names = [f"{source} {seed}" for source, seed in sources]
    mosaic(draws, names, args.out)
    phantoms = [d for d, (source, _) in zip(draws, sources) if source == "phantom"]
    results["ct_realism"] = realism_ct(draws, names, args.out)
    results["t1w_realism"] = realism_t1(phantoms, args.out)
    results["contrast_realism"] = realism_contrast(draws, names)
    (args.out / "simulate.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
