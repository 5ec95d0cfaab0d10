"""Harmonization benchmark: a simulated multi-site cohort of traveling subjects.

Every subject's anatomy is acquired at every site (``ScannerStyle.for_site``), bias-corrected (N4)
and standardised within the ground-truth brain mask, or mapped to the target site by the learned
harmonization bundle (trained on other simulated heads and random scanner styles: these subjects
and, for the random styles, these sites were never seen). The Nyul reference is learned from the
training subjects only; the held-out subjects are scored against their own image at the target
site under the same method: tissue-wise Wasserstein distance (GM/WM/CSF from the ground-truth
labels, in units of the target image's WM−GM median contrast so that scales compare across
methods), SSIM/PSNR in the brain, and a nearest-centroid site classifier on tissue medians
(leave-one-subject-out over the held-out subjects).

With ``--peers`` the intensity-normalization package's Nyul (reference from the same training
subjects), WhiteStripe and FCM (WM) run beside ours on the same N4-corrected images and brain masks
(PyPI ``intensity-normalization``, MIT: a benchmark peer, not a dependency).

Two cohorts: ``sites`` (the default) acquires every subject at sites ``0 … --sites − 1``, whose
T1w sequences (MPRAGE or FLASH, 1.5 or 3 T) keep the tissues in the same order, so that a monotone
map (Nyul's) can undo them; ``upgrade`` is the scanner-upgrade case: the site-0 3 T MPRAGE beside
legacy and mis-tuned protocols of the same scanner style (:data:`UPGRADE_SEQUENCES`) whose tissue
contrasts differ beyond a monotone map (deep GM and lesions change places with cortical GM; at a
short TI the CSF is brighter than GM) and which the learned model never saw as physics inputs.

    python benchmarks/bench_harmonize.py --subjects 10 --train 4 --sites 3 --spacing 1.5
    python benchmarks/bench_harmonize.py --cohort upgrade --subjects 8 --train 4 --peers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from harness import machine

from bids_synth.metrics import intensity_wasserstein
from bids_synth.metrics.image import psnr, ssim
from bids_synth.models.selection import output_reference
from bids_synth.simulate.mri import Sequence
from bids_synth.simulate.tissues import Tissue
from bids_synth.synthesis import harmonization as hz
from bids_synth.synthesis.harmonization_reference import read_reference

RESULTS = Path(__file__).resolve().parent / "results"
TISSUES = {
    "CSF": (Tissue.CSF, Tissue.VENTRICLE),
    "GM": (Tissue.GM, Tissue.DEEP_GM),
    "WM": (Tissue.WM, Tissue.LESION),
}
BRAIN = tuple(label for labels in TISSUES.values() for label in labels)
N4_GRID_MM = 6.0

#: the ``upgrade`` cohort's sites after site 0: (field strength T, T1w sequence)
UPGRADE_SEQUENCES = {
    "1.5 T spin echo TR 500 / TE 12": (1.5, Sequence("SE", 500, 12)),
    "1.5 T FLASH TR 20 / TE 5 / 10°": (1.5, Sequence("FLASH", 20, 5, None, 10)),
    "3 T MPRAGE TI 700": (3.0, Sequence("MPRAGE", 1900, 2.5, 700, 9)),
}


def cohort_styles(cohort: str, sites: int) -> list:
    """The scanner style of each site of ``cohort``."""
    from dataclasses import replace

    from bids_synth.simulate.scanner import ScannerStyle

    if cohort == "sites":
        return [ScannerStyle.for_site(site) for site in range(sites)]
    reference = ScannerStyle.for_site(0)
    styles = [reference]
    for name, (field, sequence) in UPGRADE_SEQUENCES.items():
        t1w = replace(reference.mr["T1w"], sequence=sequence)
        styles.append(replace(reference, name=name, field_strength=field,
                              mr={**reference.mr, "T1w": t1w}))  # fmt: skip
    return styles


def draw_cohort(subjects: int, styles: list, spacing: float, cache: Path, kind: str) -> dict:
    """T1w of each subject at each site of ``styles`` (N4-corrected), the ground-truth labels and
    the grid's affine; cached per cohort ``kind``."""
    import ants

    from bids_synth.simulate.anatomy import draw_anatomy
    from bids_synth.simulate.subject import acquire

    cache.mkdir(parents=True, exist_ok=True)
    shrink = max(2, round(N4_GRID_MM / spacing))  # the bias field is smooth: fit it on a ~6 mm grid
    cohort = {}
    for subject in range(subjects):
        name = f"sites{len(styles)}" if kind == "sites" else kind
        path = cache / f"subject{subject}_{name}_spacing{spacing:g}.npz"
        if not path.exists() or "affine" not in np.load(path):
            anatomy = draw_anatomy(1000 + subject, spacing=spacing)
            images = []
            for site, style in enumerate(styles):
                draw = acquire(anatomy, style, contrasts=("T1w",), site=site)
                image = ants.from_numpy(draw.images["T1w"].numpy().astype(np.float32))
                head = ants.from_numpy(draw.head_mask.numpy().astype(np.float32))
                images.append(
                    ants.n4_bias_field_correction(image, mask=head, shrink_factor=shrink).numpy()
                )
            labels = anatomy.labels.numpy()
            np.savez_compressed(path, images=np.stack(images), labels=labels, affine=anatomy.affine)
        data = np.load(path)
        cohort[subject] = {
            "images": list(data["images"]),
            "labels": data["labels"],
            "affine": data["affine"],
        }
        print(f"subject {subject}: ready", flush=True)
    return cohort


def learned(bundle, timings: list):
    """The bundle applied as the pipeline does (inside the head's bounding box, 0 outside it)."""
    from bids_synth.models.prediction import predict_mr_in_head

    def apply(image, labels, affine):
        start = time.perf_counter()
        out, _ = predict_mr_in_head(
            bundle, [image.astype(np.float32)], affine, labels != Tissue.BACKGROUND, device="cpu"
        )
        timings.append(time.perf_counter() - start)
        return out

    return apply


def peer_methods(cohort: dict, train: list[int], masks: dict) -> dict:
    """intensity-normalization's Nyul (fit on ``train``), WhiteStripe and FCM (WM), as methods."""
    from intensity_normalization import (
        FCMNormalizer,
        NyulNormalizer,
        WhiteStripeNormalizer,
        create_image,
    )

    nyul = NyulNormalizer().fit_population(
        [create_image(image) for s in train for image in cohort[s]["images"]],
        [create_image(masks[s]) for s in train for _ in cohort[s]["images"]],
    )

    def peer(normalizer):
        def apply(image, mask, affine):
            picture, brain = create_image(image), create_image(mask)
            return np.asarray(normalizer().fit_transform(picture, brain).get_data(), np.float32)

        return apply

    return {
        "nyul (intensity-normalization)": lambda image, mask, affine: np.asarray(
            nyul.transform(create_image(image), create_image(mask)).get_data(), np.float32
        ),
        "whitestripe (intensity-normalization)": peer(WhiteStripeNormalizer),
        "fcm (intensity-normalization)": peer(FCMNormalizer),
    }


def standardise(
    cohort: dict,
    train: list[int],
    held_out: list[int],
    bundle=None,
    timings=None,
    peers=False,
) -> dict[str, dict]:
    """The held-out images under each method: none, Nyul (reference from ``train``), WhiteStripe,
    z-score, with ``peers`` intensity-normalization's, and with a ``bundle`` the learned
    harmonization, alone and followed by Nyul (reference from ``train``'s learned outputs at
    every site, or the one the bundle carries, as the pipeline does)."""
    masks = {s: np.isin(c["labels"], BRAIN) for s, c in cohort.items()}
    landmarks = [
        hz.image_landmarks(hz.masked_values(image, masks[s]))
        for s in train
        for image in cohort[s]["images"]
    ]
    reference = hz.learn_nyul(landmarks)
    methods = {
        "none": lambda image, mask, affine: image,
        "nyul": lambda image, mask, affine: hz.apply_nyul(image, mask, reference),
        "whitestripe": lambda image, mask, affine: hz.apply_whitestripe(
            image, mask, last_mode=True
        )[0],
        "zscore": lambda image, mask, affine: hz.zscore(image, mask),
        **(peer_methods(cohort, train, masks) if peers else {}),
    }
    images = {
        name: {
            s: [f(image, masks[s], cohort[s]["affine"]) for image in cohort[s]["images"]]
            for s in held_out
        }
        for name, f in methods.items()
    }
    if bundle is not None:
        apply = learned(bundle, timings if timings is not None else [])
        harmonized = {
            s: [
                apply(image, cohort[s]["labels"], cohort[s]["affine"])
                for image in cohort[s]["images"]
            ]
            for s in (*train, *held_out)
        }
        print("learned harmonization done", flush=True)
        images["learned"] = {s: harmonized[s] for s in held_out}
        # the learned outputs standardised by a Nyul reference learned from the training
        # subjects' learned outputs: the network undoes the contrast, Nyul what is left of the scale
        learned_reference = hz.learn_nyul(
            [
                hz.image_landmarks(hz.masked_values(image, masks[s]))
                for s in train
                for image in harmonized[s]
            ]
        )
        images["learned, then nyul"] = {
            s: [hz.apply_nyul(image, masks[s], learned_reference) for image in harmonized[s]]
            for s in held_out
        }
        # the pipeline's path: the bundle's own reference (its outputs for its own heads at its
        # target site), applied in the head mask that preprocessing computes from each image
        if output_reference(bundle):
            carried, _ = read_reference(output_reference(bundle))
            images["learned, then the bundle's nyul reference (pipeline)"] = {
                s: [
                    hz.apply_nyul(output, pipeline_head(image, cohort[s]["affine"]), carried)
                    for image, output in zip(cohort[s]["images"], harmonized[s])
                ]
                for s in held_out
            }
    return images


def pipeline_head(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The head mask preprocessing computes from a T1w."""
    import ants

    from bids_synth.preproc.masks import head_mask

    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return head_mask(ants.from_numpy(image.astype(np.float32), spacing=spacing)).numpy() > 0


def tissue_medians(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([np.median(image[np.isin(labels, ids)]) for ids in TISSUES.values()])


def score(images: dict, cohort: dict, held_out: list[int], target: int) -> dict:
    """Distances of each held-out subject's non-target-site images to its target-site image."""
    rows = {"wasserstein_" + t: [] for t in TISSUES} | {"ssim": [], "psnr": []}
    for s in held_out:
        labels = cohort[s]["labels"]
        brain = np.isin(labels, BRAIN)
        reference = images[s][target]
        medians = tissue_medians(reference, labels)
        contrast = medians[2] - medians[1]  # WM − GM of the target image
        for site, image in enumerate(images[s]):
            if site == target:
                continue
            for tissue, ids in TISSUES.items():
                inside = np.isin(labels, ids)
                distance = intensity_wasserstein(reference, image, inside, inside)
                rows["wasserstein_" + tissue].append(distance / contrast)
            rows["ssim"].append(ssim(reference, image, brain))
            rows["psnr"].append(psnr(reference, image, brain))
    return {key: float(np.mean(values)) for key, values in rows.items()}


def site_accuracy(images: dict, cohort: dict) -> float:
    """Leave-one-subject-out nearest-centroid site classification on standardised tissue medians
    (over the subjects of ``images``: the held-out ones)."""
    subjects = sorted(images)
    features = {s: [tissue_medians(im, cohort[s]["labels"]) for im in images[s]] for s in subjects}
    correct = total = 0
    for left_out in subjects:
        train = np.array([f for s in subjects if s != left_out for f in features[s]])
        sites = np.array([k for s in subjects if s != left_out for k in range(len(features[s]))])
        mean, sd = train.mean(0), train.std(0) + 1e-9
        centroids = np.array([((train[sites == k] - mean) / sd).mean(0) for k in np.unique(sites)])
        for site, feature in enumerate(features[left_out]):
            guess = np.argmin(np.linalg.norm(centroids - (feature - mean) / sd, axis=1))
            correct += int(guess == site)
            total += 1
    return correct / total


def plot_histograms(images: dict, cohort: dict, held_out: list[int], path: Path) -> None:
    """Brain histograms of the held-out subjects, one colour per site, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(4 * len(images), 3.2))
    for ax, (method, by_subject) in zip(axes, images.items(), strict=True):
        for s in held_out:
            brain = np.isin(cohort[s]["labels"], BRAIN)
            for site, image in enumerate(by_subject[s]):
                ax.hist(image[brain], bins=80, histtype="step", density=True, color=f"C{site}",
                        label=f"site {site}" if s == held_out[0] else None)  # fmt: skip
        ax.set_title(method)
        ax.set_xlabel("intensity in the brain")
    axes[0].legend()
    fig.suptitle(
        "Held-out traveling subjects: T1w brain histograms per site (one line per subject); "
        "the learned panel is on the bundle's fixed output scale"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def record(bundle, summary: dict) -> None:
    """The learned row and Nyul's beside it, of one run's ``summary``, into the bundle's card."""
    from bids_synth.models.card import record_evaluation

    cohort = summary["settings"]["cohort"]
    dataset = (f"held-out simulated traveling subjects (phantom anatomies never trained on), "
               f"cohort {cohort} ({', '.join(summary['sites'])})")  # fmt: skip
    metrics = [
        {"name": f"{method} {name}", "value": round(value, 4), "units": units, "dataset": dataset}
        for method in ("learned", "nyul")
        for name, value in summary["results"][method].items()
        for units in [
            "WM−GM contrast" if name.startswith("wasserstein") else "dB" if name == "psnr" else ""
        ]  # fmt: skip
    ]
    record_evaluation(bundle.path, metrics)


def harmonization_bundle(ref: str | None, target: int):
    """The learned bundle for T1w → site ``target`` (``ref`` or the installed/shipped one)."""
    from bids_synth.models.selection import choose_bundle, harmonization_bundles

    bundle = choose_bundle(harmonization_bundles(f"site{target}", ref), "T1w", ["T1w"])
    if bundle is None:
        raise SystemExit(f"no T1w-only harmonization bundle for site{target}")
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument(
        "--train", type=int, default=5, help="subjects the Nyul reference learns from"
    )
    parser.add_argument("--cohort", choices=["sites", "upgrade"], default="sites")
    parser.add_argument("--sites", type=int, default=3, help="sites of the `sites` cohort")
    parser.add_argument("--target", type=int, default=0, help="site the others are compared with")
    parser.add_argument(
        "--spacing", type=float, default=1.5, help="simulation grid (mm; the shipped bundle's: 1.5)"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_harmonize_cache"))
    parser.add_argument(
        "--model",
        help="harmonization bundle (folder, id or id@version; default: the installed or shipped "
        "T1w bundle whose target is --target)",
    )
    parser.add_argument("--no-learned", action="store_true", help="leave the learned row out")
    parser.add_argument("--peers", action="store_true",
                        help="add intensity-normalization's Nyul, WhiteStripe and FCM")  # fmt: skip
    parser.add_argument("--record", action="store_true",
                        help="write the learned and Nyul rows into the bundle's card")  # fmt: skip
    args = parser.parse_args()

    start = time.perf_counter()
    bundle = None if args.no_learned else harmonization_bundle(args.model, args.target)
    torch.set_num_threads(1)
    styles = cohort_styles(args.cohort, args.sites)
    cohort = draw_cohort(args.subjects, styles, args.spacing, args.cache, args.cohort)
    train = list(range(args.train))
    held_out = list(range(args.train, args.subjects))
    timings: list[float] = []
    images = standardise(cohort, train, held_out, bundle, timings, peers=args.peers)
    results = {
        method: {
            **score(by_subject, cohort, held_out, args.target),
            "site_accuracy": site_accuracy(by_subject, cohort),
        }  # fmt: skip
        for method, by_subject in images.items()
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "harmonize" if args.cohort == "sites" else f"harmonize_{args.cohort}"
    plot_histograms(images, cohort, held_out, RESULTS / f"{stem}_histograms.png")
    summary = {"settings": vars(args) | {"cache": str(args.cache)}, "results": results,
               "sites": [style.name for style in styles],
               "seconds": time.perf_counter() - start, "machine": machine(),
               "model": None if bundle is None else {"ref": bundle.ref, "sha256": bundle.sha256},
               "learned_seconds_per_volume": float(np.mean(timings)) if timings else None}  # fmt: skip
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.record and bundle is not None:
        record(bundle, summary)
    header = "| method | W1 CSF | W1 GM | W1 WM | SSIM | PSNR (dB) | site accuracy |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for method, r in results.items():
        lines.append(
            f"| {method} | {r['wasserstein_CSF']:.3f} | {r['wasserstein_GM']:.3f} | "
            f"{r['wasserstein_WM']:.3f} | {r['ssim']:.3f} | {r['psnr']:.1f} | "
            f"{r['site_accuracy']:.2f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
