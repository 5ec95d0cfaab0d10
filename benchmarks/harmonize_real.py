"""Harmonization of real T1w scans from different scanners, through the CLI's outputs.

Real images of different people from different scanners have no ground truth for one another, but
normal adult brains share their tissue intensities once a harmonization has removed the scanner:
the closer the grey matter, white matter and CSF of the harmonized images, the better. The tissues
are Atropos' three classes (antspyx, k-means initialisation) of each preprocessed T1w inside its
brain: an independent brain mask where the reference data has one (:data:`SCANS`; the app's
morphological mask takes in the neck and the temporal scalp of the 2 mm avg152T1, and Atropos'
classes there would score the scalp), else the app's brain mask. Each method's spread is the
tissue-wise Wasserstein-1 distance between every pair of subjects, in units of that method's mean
WM−GM median contrast (scale-free, as in ``bench_harmonize.py``). Each method's grey/white
separability on each scan, |WM − GM median| over the pooled tissue sd, is compared with the
preprocessed input's: a harmonization must not wash out the anatomy it standardises. A mosaic
shows the mid-axial slice of every subject under every method.

``--record BUNDLE`` writes the real-scan check of the ``learned`` run into that harmonization
bundle, which decides whether ``learned`` is the default method where no Nyul reference is given
(:func:`bids_synth.workflows.synthesis.harmonize.default_method`). It passes when the learned
tissues are no further apart between the scans than WhiteStripe's (the method it would replace;
mean W1 over the three tissues) and every scan keeps at least :data:`SEPARABILITY_KEPT` of its
input's grey/white separability. Only whole heads: the learned tasks refuse skull-stripped input.

    python benchmarks/harmonize_real.py --make-bids BIDS   # SCANS, a participant each
    bids-synth BIDS OUT_LEARNED participant --tasks harmonize --harmonize-method learned
    bids-synth BIDS OUT_WS participant --tasks harmonize --harmonize-method whitestripe
    python benchmarks/harmonize_real.py learned=OUT_LEARNED whitestripe=OUT_WS [--record BUNDLE]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from harness import reference_brain

from bids_synth.metrics import intensity_wasserstein

RESULTS = Path(__file__).resolve().parent / "results"
TISSUES = ("CSF", "GM", "WM")  # Atropos' classes 1–3 of a T1w, darkest first
SEPARABILITY_KEPT = 0.8  #: share of the input's grey/white separability a method must keep
#: the check's real whole-head T1w (participant label: reference file, independent brain or
#: None): Colin27 (1.5 T, 27 averages; its BET mask), the KmeansTest T1 (2 × 3 × 2 mm, 8 bit) and
#: SPM's avg152T1 (a 2 mm average of 152; the brain of SPM's tissue probability maps, MNI space)
SCANS = {
    "avg152": ("spm/avg152T1.nii.gz", "spm/TPM.nii.gz"),
    "colin": ("ch2.nii.gz", "ch2bet.nii.gz"),
    "kmeans": ("KmeansTest_T1UCharRaw.nii.gz", None),
}


def make_bids(root: Path) -> None:
    """The check's input: each scan of :data:`SCANS` as the T1w of its own participant."""
    import shutil

    from bids_synth.bids import build_raw_path
    from bids_synth.fileio import atomic_write_json
    from bids_synth.refdata import reference_file

    for label, (name, _) in SCANS.items():
        entities = {"subject": label, "datatype": "anat", "suffix": "T1w", "extension": ".nii.gz"}
        path = root / build_raw_path(entities)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reference_file(name), path)
    atomic_write_json(
        root / "dataset_description.json",
        {"Name": "real whole-head T1w of different scanners", "BIDSVersion": "1.9.0"},
    )


def subjects(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("sub-*") if p.is_dir())


def image(folder: Path, subject: str, desc: str) -> np.ndarray:
    import nibabel as nib

    return np.asanyarray(
        nib.load(folder / subject / "anat" / f"{subject}_desc-{desc}.nii.gz").dataobj, np.float32
    )


def tissues(folder: Path, subject: str) -> np.ndarray:
    """Atropos' 3-class segmentation (1 CSF, 2 GM, 3 WM) of the preprocessed T1w in its brain
    (the scan's independent brain of :data:`SCANS`, else the app's brain mask)."""
    import ants
    import nibabel as nib

    from bids_synth.refdata import reference_file

    anat = folder / subject / "anat"
    t1w = ants.image_read(str(anat / f"{subject}_desc-preproc_T1w.nii.gz"))
    mask_path = anat / f"{subject}_desc-brain_mask.nii.gz"
    brain = ants.image_read(str(mask_path))
    independent = SCANS.get(subject.removeprefix("sub-"), (None, None))[1]
    if independent:
        mask = reference_brain(reference_file(independent), nib.load(mask_path))
        brain = brain.new_image_like(mask.astype(np.float32))
    segmentation = ants.atropos(
        a=t1w, x=brain, i="kmeans[3]", m="[0.2,1x1x1]", c="[5,0]", priorweight=0.0
    )["segmentation"]
    return segmentation.numpy().astype(np.int8)


def separability(image: np.ndarray, labels: np.ndarray) -> float:
    """|WM − GM median| over the pooled sd of the two tissues."""
    grey, white = image[labels == 2], image[labels == 3]
    pooled = np.sqrt((np.var(grey) + np.var(white)) / 2)
    return float(abs(np.median(white) - np.median(grey)) / max(pooled, 1e-12))


def spread(runs: dict[str, Path], labels: dict[str, np.ndarray]) -> dict:
    """Per method: each subject's tissue medians, and the mean pairwise tissue W1 between
    subjects in units of the method's mean WM−GM contrast."""
    table = {}
    for method, folder in runs.items():
        images = {s: image(folder, s, "harmonized_T1w") for s in labels}
        medians = {
            s: [float(np.median(images[s][labels[s] == k])) for k in (1, 2, 3)] for s in labels
        }
        contrast = float(np.mean([m[2] - m[1] for m in medians.values()]))
        pairs = list(itertools.combinations(labels, 2))
        table[method] = {
            "medians": medians,
            "separability_kept": {
                s: separability(images[s], labels[s])
                / separability(image(folder, s, "preproc_T1w"), labels[s])
                for s in labels
            },
            **{
                f"w1_{tissue}": float(
                    np.mean([
                        intensity_wasserstein(
                            images[a][labels[a] == k], images[b][labels[b] == k]
                        )
                        for a, b in pairs
                    ])
                    / abs(contrast)
                )
                for k, tissue in enumerate(TISSUES, start=1)
            },
        }  # fmt: skip
    return table


def check(table: dict) -> dict:
    """The learned method's real-scan check (see the module's docstring)."""
    mean_w1 = {m: float(np.mean([table[m][f"w1_{t}"] for t in TISSUES])) for m in table}
    kept = table["learned"]["separability_kept"]
    passed = (
        mean_w1["learned"] <= mean_w1["whitestripe"] and min(kept.values()) >= SEPARABILITY_KEPT
    )
    summary = (
        f"{', '.join(sorted(kept))}: mean tissue W1 between the scans "
        f"{mean_w1['learned']:.3f} (WhiteStripe {mean_w1['whitestripe']:.3f}); grey/white "
        f"separability kept {', '.join(f'{kept[s]:.2f}' for s in sorted(kept))} (goals: W1 not "
        f"above WhiteStripe's, separability ≥ {SEPARABILITY_KEPT} of the input's on every scan)"
    )
    return {"passed": bool(passed), "summary": summary}


def mosaic(runs: dict[str, Path], names: list[str], path: Path) -> None:
    """Rows: subjects; columns: the preprocessed T1w, then each method (mid-axial slices, each
    windowed to its own 1st–99th brain percentiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(runs.values()))
    columns = [("preprocessed", first, "preproc_T1w"),
               *((m, f, "harmonized_T1w") for m, f in runs.items())]  # fmt: skip
    figure, axes = plt.subplots(
        len(names), len(columns), figsize=(3 * len(columns), 3 * len(names))
    )
    axes = np.atleast_2d(axes)
    for row, subject in enumerate(names):
        brain = image(first, subject, "brain_mask") > 0
        for col, (title, folder, desc) in enumerate(columns):
            data = image(folder, subject, desc)
            low, high = np.percentile(data[brain], [1, 99])
            axis = axes[row, col]
            axis.imshow(np.rot90(data[:, :, data.shape[2] // 2]), cmap="gray", vmin=low, vmax=high)
            axis.set_axis_off()
            axis.set_title(f"{subject}: {title}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="METHOD=OUT", help="a CLI output per method")
    parser.add_argument(
        "--record", metavar="BUNDLE", help="write the learned run's real-scan check into BUNDLE"
    )
    parser.add_argument("--make-bids", metavar="BIDS", help="write the check's input dataset")
    args = parser.parse_args()
    if args.make_bids:
        make_bids(Path(args.make_bids))
        return
    if not args.runs:
        parser.error("give METHOD=OUT runs, or --make-bids BIDS")
    runs = {m: Path(f) for m, f in (run.split("=", 1) for run in args.runs)}
    if args.record and not {"learned", "whitestripe"} <= set(runs):
        parser.error("--record needs a learned=OUT and a whitestripe=OUT run")
    names = subjects(next(iter(runs.values())))
    labels = {s: tissues(next(iter(runs.values())), s) for s in names}
    table = spread(runs, labels)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "harmonize_real.json").write_text(json.dumps(table, indent=2))
    mosaic(runs, names, RESULTS / "harmonize_real.png")
    print("| method | " + " | ".join(f"W1 {t}" for t in TISSUES) + " | "
          + " | ".join(f"{s} CSF/GM/WM (separability kept)" for s in names) + " |")  # fmt: skip
    for method, row in table.items():
        medians = " | ".join(
            "/".join(f"{v:.3g}" for v in row["medians"][s])
            + f" ({row['separability_kept'][s]:.2f})"
            for s in names
        )
        w1 = " | ".join(f"{row[f'w1_{t}']:.3f}" for t in TISSUES)
        print(f"| {method} | {w1} | {medians} |")
    if args.record:
        from bids_synth.models import find_bundle
        from bids_synth.models.card import record_evaluation

        result = check(table)
        record_evaluation(find_bundle(args.record).path, [], checks={"real_scans": result})
        print(f"real-scan check {'passed' if result['passed'] else 'failed'}: {result['summary']}")


if __name__ == "__main__":
    main()
