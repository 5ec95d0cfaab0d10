"""Denoising benchmark: model, noise2self, NLM, and the peers BM4D and dipy, at 3–9 % Rician noise.

Two parts, each a markdown table of PSNR/SSIM inside the head and seconds per image:

- held-out simulated heads (seeds 90001…, never used for training or tuning) drawn from the
  real-anatomy ``colin27`` label maps, which no shipped model saw; each noise level is the head
  model's own acquisition with that σ, the truth the same acquisition without noise
  (``--real-only`` skips this slow part);
- the real Colin27 T1 (1 mm, an average of 27 scans, nearly noise-free) with Rician noise added,
  scored against the original, with a mosaic per level (and a zoom on the cerebellum and
  occipital cortex) in ``benchmarks/results/``.

``--grids`` instead scores the model on coarser acquisitions of the real Colin27 (block means:
2 mm isotropic, 1 × 1 × 3 mm slices) on their own voxels, as it runs, against the same model
resampled to its 1 mm training grid and back, and NLM.

Methods: ``model`` (a denoising bundle), ``self`` (noise2self), ``nlm`` (antspyx, Rician, its own
σ estimate) from :mod:`bids_synth.synthesis.denoising`, and the peers ``bm4d`` (PyPI ``bm4d``,
non-commercial licence: benchmark only, never a dependency) and ``dipy`` (``dipy.denoise.nlmeans``,
classic, Rician; dipy ≥ 1.12), both given the true σ, and ``bm4d-est``: BM4D given the σ that
:func:`bids_synth.synthesis.denoising.noise_sigma` estimates from the noisy image (what a user
without the true σ would run); peers are imported only when asked for and skipped when not
installed.
Every method runs on one thread. ``--append`` adds the tables to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from harness import mosaic

from bids_synth.metrics import psnr, ssim
from bids_synth.synthesis import denoising

RESULTS = Path(__file__).resolve().parent / "results"

#: peer method → the PyPI package it needs (never a dependency of bids-synth)
PEERS = {"bm4d": "bm4d", "dipy": "dipy", "bm4d-est": "bm4d"}

#: centre (world mm, MNI) and edge (voxels) of the zoomed Colin27 mosaic: vermis, cerebellar folia,
#: occipital cortex
ZOOM_CENTRE_MM = (0.0, -75.0, -16.0)
ZOOM_SIZE = 64


def available(methods: list[str]) -> list[str]:
    """``methods`` without the peers whose package is missing (one "skipped" line for each)."""
    kept = []
    for method in methods:
        package = PEERS.get(method)
        if package and importlib.util.find_spec(package) is None:
            print(f"skipped: install {package} (for the {method} peer)")
        else:
            kept.append(method)
    return kept


def bm4d_denoise(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """BM4D (Gaussian model, ``np`` profile, both stages) with the given σ, run on the image
    scaled to its head's 99.5th percentile; outside ``mask`` the image is kept."""
    import bm4d

    scale = denoising.head_scale(image, mask)
    denoised = bm4d.bm4d(image / scale, sigma / scale) * scale
    return np.where(mask, denoised, image).astype(np.float32)


def dipy_denoise(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """dipy's classic non-local means (Rician, 3³ patches, 11³ search) with the given σ, one
    thread, inside ``mask``; dipy 1.12's default ``blockwise`` method left simulated heads
    noisier than its input."""
    from dipy.denoise.nlmeans import nlmeans

    denoised = nlmeans(image, sigma, mask=mask, rician=True, num_threads=1, method="classic")
    return np.where(mask, denoised, image).astype(np.float32)


def denoise(method: str, noisy, mask, affine, sigma: float, args, seed: int, bundle):
    """``noisy`` denoised by ``method`` (σ: the true noise σ, used by the peers only; ``bm4d-est``
    is BM4D given the σ estimated from the image)."""
    if method == "model":
        return denoising.model_denoise(noisy, mask, bundle, affine)[0]
    if method == "self":
        return denoising.self_supervised_denoise(noisy, mask, seed=seed, steps=args.self_steps)[0]
    if method == "nlm":
        return denoising.nlm_denoise(noisy, mask, np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    if method == "bm4d":
        return bm4d_denoise(noisy, mask, sigma)
    if method == "bm4d-est":  # as a user would run it: σ estimated as our sidecars do
        return bm4d_denoise(noisy, mask, denoising.noise_sigma(noisy, mask))
    if method == "dipy":
        return dipy_denoise(noisy, mask, sigma)
    raise ValueError(f"unknown method {method!r}")


def denoise_all(noisy, mask, affine, sigma, args, seed, bundle) -> dict:
    """``{method: (denoised, seconds)}`` for the input and each of ``args.methods``."""
    results = {"input": (noisy, None)}
    for method in args.methods:
        started = time.perf_counter()
        out = denoise(method, noisy, mask, affine, sigma, args, seed, bundle)
        results[method] = (out, time.perf_counter() - started)
    return results


def central_crop(shape, size: int | None) -> tuple[slice, ...]:
    """Slices of the central ``size``³ sub-volume (the whole volume when ``size`` is None)."""
    if size is None:
        return tuple(slice(None) for _ in shape)
    return tuple(slice(max((n - size) // 2, 0), max((n - size) // 2, 0) + size) for n in shape)


def cropped_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The affine of the sub-volume ``box`` of an image with ``affine``."""
    shift = np.eye(4)
    shift[:3, 3] = [s.start or 0 for s in box]
    return affine @ shift


def noise_left(out: np.ndarray, clean: np.ndarray, noisy: np.ndarray, mask: np.ndarray) -> float:
    """The share of the added noise's amplitude still in ``out``: the least-squares slope of the
    error ``out − clean`` on the noise ``noisy − clean`` in ``mask`` (1: the input, 0: all
    removed); the rest of the error is structure lost or changed."""
    noise, error = (noisy - clean)[mask], (out - clean)[mask]
    return float((error * noise).sum() / max(float((noise * noise).sum()), 1e-12))


def scores(out, clean, noisy, mask, seconds, data_range=None) -> tuple:
    """(PSNR, SSIM, seconds, noise left) of one denoised image."""
    return (psnr(clean, out, mask, data_range=data_range),
            ssim(clean, out, mask, data_range=data_range),
            seconds, noise_left(out, clean, noisy, mask))  # fmt: skip


def table(rows: dict) -> str:
    """Markdown table of ``{(level, method): [(psnr, ssim, seconds, noise left), …]}``, means
    over images."""
    lines = ["| noise | method | PSNR (dB) | SSIM | noise left | seconds / image |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for (level, method), values in rows.items():
        p, s = np.mean([v[:2] for v in values], axis=0)
        left = np.mean([v[3] for v in values])
        seconds = "–" if values[0][2] is None else f"{np.mean([v[2] for v in values]):.1f}"
        lines.append(
            f"| {level:g} % | {method} | {p:.2f} | {s:.4f} | {100 * left:.0f} % | {seconds} |"
        )
    return "\n".join(lines)


def simulated_heads(args, bundle) -> str | None:
    """The table on held-out simulated heads (None when the label maps are unavailable)."""
    from bids_synth.simulate import simulate_subject

    rows = {}
    for index in range(args.subjects):
        seed = 90001 + index
        for level in args.levels:
            try:
                draw = simulate_subject(seed, label_source=args.label_source, spacing=args.spacing,
                                        contrasts=("T1w",), noise=level / 100,
                                        resolution=args.spacing)  # fmt: skip
            except (FileNotFoundError, OSError) as exc:
                print(f"skipped: real-anatomy label maps unavailable ({exc})")
                return None
            noisy, affine = draw.acquired["T1w"]
            box = central_crop(noisy.shape, args.crop)
            noisy = noisy.numpy().astype(np.float32)[box]
            truth = draw.noise_free["T1w"][0].numpy().astype(np.float32)[box]
            mask = draw.head_mask.numpy()[box] > 0
            sigma = draw.params["contrasts"]["T1w"]["noise_sigma"]
            results = denoise_all(noisy, mask, cropped_affine(affine, box), sigma, args, seed,
                                  bundle)  # fmt: skip
            for method, (out, seconds) in results.items():
                rows.setdefault((level, method), []).append(
                    scores(out, truth, noisy, mask, seconds)
                )
            print(f"subject {seed} {level:g} %: "
                  + ", ".join(f"{m} {rows[(level, m)][-1][0]:.2f} dB" for m in results),
                  flush=True)  # fmt: skip
    where = f", central {args.crop}³ voxels" if args.crop else ""
    header = (f"Held-out simulated `{args.label_source}` heads ({args.subjects}, "
              f"{args.spacing:g} mm{where}): PSNR/SSIM in the head mask against the noise-free "
              "acquisition, peak = its range in the head (max − min).")  # fmt: skip
    return header + "\n\n" + table(rows)


def load_colin27() -> dict:
    """The Colin27 T1, its head and brain masks, the PSNR/SSIM peak and the noise reference (full
    image)."""
    import nibabel as nib

    from bids_synth.refdata import reference_file

    image = nib.load(reference_file("ch2.nii.gz"))
    clean = np.asanyarray(image.dataobj, dtype=np.float32)
    brain = np.asanyarray(nib.load(reference_file("ch2bet.nii.gz")).dataobj) > 0
    head = clean > 0.1 * np.percentile(clean[brain], 50)
    bright = clean[brain][clean[brain] > np.percentile(clean[brain], 75)]
    return {
        "clean": clean,
        "head": head,
        "brain": brain,
        "affine": image.affine,
        "peak": float(clean[head].max()),
        "reference": float(np.median(bright)),
    }


def zoom_box(affine: np.ndarray, shape) -> tuple[slice, ...]:
    """Voxel slices of the :data:`ZOOM_SIZE`³ box around :data:`ZOOM_CENTRE_MM`."""
    centre = np.linalg.solve(affine, [*ZOOM_CENTRE_MM, 1.0])[:3].round().astype(int)
    starts = [min(max(c - ZOOM_SIZE // 2, 0), n - ZOOM_SIZE) for c, n in zip(centre, shape)]
    return tuple(slice(s, s + ZOOM_SIZE) for s in starts)


def colin27_mosaics(images: dict, level: float, colin: dict, crop: int | None) -> list[str]:
    """Mosaic of ``images`` at one noise level, and of the zoom box when not cropped; file names."""
    suffix = f"_crop{crop}" if crop else ""
    paths = [RESULTS / f"denoise_colin27_{level:g}pct{suffix}.png"]
    mosaic(images, paths[0])
    if crop is None:
        box = zoom_box(colin["affine"], colin["clean"].shape)
        paths.append(RESULTS / f"denoise_colin27_{level:g}pct_zoom.png")
        mosaic({name: volume[box] for name, volume in images.items()}, paths[1])
    return [path.name for path in paths]


def colin27_with_noise(args, bundle) -> tuple[str, dict]:
    """The real Colin27 T1 with each ``args.levels`` % of Rician noise through every method:
    PSNR/SSIM against the original in the head, seconds, and a mosaic per level. Returns the
    text and the rows ``{(level, method): [(psnr, ssim, seconds)]}``."""
    colin = load_colin27()
    box = central_crop(colin["clean"].shape, args.crop)
    clean, head, brain = (colin[key][box] for key in ("clean", "head", "brain"))
    affine = cropped_affine(colin["affine"], box)
    draws = np.random.default_rng(27).normal(size=(2, *colin["clean"].shape))[(slice(None), *box)]
    RESULTS.mkdir(exist_ok=True)
    rows, brain_rows, pictures = {}, {}, []
    for level in args.levels:
        sigma = level / 100 * colin["reference"]
        noisy = np.hypot(clean + sigma * draws[0], sigma * draws[1]).astype(np.float32)
        results = denoise_all(noisy, head, affine, sigma, args, 27, bundle)
        for method, (out, seconds) in results.items():
            rows[(level, method)] = [scores(out, clean, noisy, head, seconds, colin["peak"])]
            brain_rows[(level, method)] = [scores(out, clean, noisy, brain, seconds, colin["peak"])]
        print(
            f"colin27 {level:g} %: "
            + ", ".join(f"{m} {rows[(level, m)][0][0]:.2f} dB" for m in results),
            flush=True,
        )
        images = {"original": clean, **{m: out for m, (out, _) in results.items()}}
        pictures += colin27_mosaics(images, level, colin, args.crop)
    shape = " × ".join(str(n) for n in colin["clean"].shape)
    where = f"the central {args.crop}³ voxels" if args.crop else f"the whole {shape} image"
    text = [
        f"Real Colin27 T1 (1 mm), {where}, with Rician noise added: σ = level % of the median "
        f"of the brightest quarter of the brain (`ch2bet`), {colin['reference']:g}. Scored "
        "against the original in the head mask (Colin27 > 10 % of its brain median); PSNR and "
        f"SSIM peak (data range) = the original's maximum in the whole head, {colin['peak']:g}. "
        "BM4D and dipy (classic NLM) are given the true σ; NLM (antspyx) estimates its own; "
        "the model is blind. Noise left: the share of the added noise's amplitude still in the "
        "output (slope of the error on the noise; the rest of the error is structure lost).",
        "",
        table(rows),
        "",
        "The same images scored in the brain only (`ch2bet`):",
        "",
        table(brain_rows),
        "",
        "Mosaics: " + ", ".join(f"`benchmarks/results/{name}`" for name in pictures) + ".",
    ]
    return "\n".join(text), rows


#: block sizes (voxels of the 1 mm Colin27) of the coarser acquisitions of ``--grids``
COARSE_BLOCKS = ((2, 2, 2), (1, 1, 3))
COARSE_METHODS = ("input", "model (acquired voxels)", "model resampled to 1 mm", "nlm")


def block_mean(volume: np.ndarray, block) -> np.ndarray:
    """``volume`` averaged over ``block`` voxels (the edge voxels that do not fill one dropped)."""
    whole = tuple(n // b * b for n, b in zip(volume.shape, block))
    cut = volume[tuple(slice(0, n) for n in whole)]
    shape = [v for n, b in zip(whole, block) for v in (n // b, b)]
    return cut.reshape(shape).mean(axis=(1, 3, 5)).astype(np.float32)


def coarse_acquisitions(args, bundle) -> str:
    """The model on the voxels of coarser acquisitions of the real Colin27 against the same
    model resampled to its training grid (the previous contract) and NLM: the table's text."""
    import dataclasses

    colin = load_colin27()
    meta = {**bundle.meta, "input": {**bundle.meta["input"], "grid": "spacing"}}
    resampled = dataclasses.replace(bundle, meta=meta)
    rows = {}
    for block in COARSE_BLOCKS:
        clean = block_mean(colin["clean"], block)
        head = block_mean(colin["head"].astype(np.float32), block) > 0.5
        affine = colin["affine"] @ np.diag([*block, 1.0])
        draws = np.random.default_rng(27).normal(size=(2, *clean.shape))
        grid = " × ".join(f"{b:g}" for b in np.sqrt((affine[:3, :3] ** 2).sum(0)))
        for level in args.levels:
            sigma = level / 100 * colin["reference"]
            noisy = np.hypot(clean + sigma * draws[0], sigma * draws[1]).astype(np.float32)
            for method in COARSE_METHODS:
                started = time.perf_counter()
                if method == "nlm":
                    out = denoising.nlm_denoise(noisy, head, block)
                elif method == "input":
                    out = noisy
                else:
                    used = bundle if method.endswith("(acquired voxels)") else resampled
                    out = denoising.model_denoise(noisy, head, used, affine)[0]
                seconds = None if method == "input" else time.perf_counter() - started
                rows[(level, f"{grid} mm: {method}")] = [
                    scores(out, clean, noisy, head, seconds, colin["peak"])
                ]
            print(f"{grid} mm, {level:g} %: done", flush=True)
    return (
        "The real Colin27 T1 averaged over blocks of voxels (a coarser acquisition of the same "
        "head), with Rician noise added as above (σ = level % of the 1 mm image's reference "
        f"{colin['reference']:g}); scored against the block-averaged original in its head mask, "
        f"peak {colin['peak']:g}. `{bundle.ref}`.\n\n" + table(rows)
    )


def record_real_scan_check(bundle, rows: dict, levels: list[float]) -> str:
    """Record in ``bundle`` whether the model is what the real-Colin27 table favours over the
    default it would replace: above NLM at every level and not below the input at the lowest
    (``checks.real_scans``, read by the denoise default); the goal figures in the summary."""
    from bids_synth.models.card import record_evaluation

    gains = {level: rows[(level, "model")][0][0] - rows[(level, "nlm")][0][0] for level in levels}
    lowest = min(levels)
    kept = rows[(lowest, "model")][0][0] - rows[(lowest, "input")][0][0]
    passed = all(gain > 0 for gain in gains.values()) and kept >= 0
    bm4d = {lv: rows[(lv, "model")][0][0] - rows[(lv, "bm4d")][0][0]
            for lv in levels if (lv, "bm4d") in rows}  # fmt: skip
    summary = (
        "real Colin27 + Rician noise, model − NLM: "
        + ", ".join(f"{lv:g} % {g:+.2f} dB" for lv, g in gains.items())
        + (", model − BM4D: " + ", ".join(f"{lv:g} % {g:+.2f} dB" for lv, g in bm4d.items())
           if bm4d else "")
        + f"; model − input at {lowest:g} %: {kept:+.2f} dB (passed: above NLM at every level "
        "and not below the input at the lowest; goals: ≥ NLM + 1.5 dB at 5 %, ≥ BM4D)"
    )  # fmt: skip
    metrics = [
        {"name": f"PSNR gain over NLM at {lv:g} % noise", "value": round(g, 3), "units": "dB",
         "dataset": "held-out real colin27 T1 (never trained on) + Rician noise"}
        for lv, g in gains.items()
    ]  # fmt: skip
    record_evaluation(
        bundle.path, metrics, checks={"real_scans": {"passed": passed, "summary": summary}}
    )
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--spacing", type=float, default=2.0, help="simulation grid (mm)")
    parser.add_argument("--levels", type=float, nargs="+", default=[3, 5, 7, 9], help="noise %%")
    parser.add_argument("--methods", nargs="+", default=["model", "self", "nlm", *PEERS],
                        choices=["model", "self", "nlm", *PEERS])  # fmt: skip
    parser.add_argument("--model", help="bundle folder or id[@version] for the model method "
                        "(default: the newest denoise bundle)")  # fmt: skip
    parser.add_argument("--label-source", default="colin27", help="held-out anatomy")
    parser.add_argument("--real-only", action="store_true", help="skip the simulated heads")
    parser.add_argument("--crop", type=int, help="only the central N³ voxels (quick checks; the "
                        "model scores lower on a crop than on the whole image)")  # fmt: skip
    parser.add_argument("--grids", action="store_true",
                        help="only the model on coarser acquisitions of the real Colin27")  # fmt: skip
    parser.add_argument("--self-steps", type=int, default=300)
    parser.add_argument("--append", action="store_true", help="append the tables to BENCHMARKS.md")
    parser.add_argument("--record", action="store_true",
                        help="record the real-scan check in the model bundle (sets the default)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.record and (args.crop or not {"model", "nlm"} <= set(args.methods)):
        parser.error("--record needs the whole image and the methods model and nlm")
    if args.grids and (args.record or "model" not in args.methods):
        parser.error("--grids scores the model and records nothing")
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    torch.set_num_threads(1)
    args.methods = available(args.methods)
    bundle = None
    if "model" in args.methods:
        from bids_synth.models.selection import find_task_bundle

        bundle = find_task_bundle("denoise", "T1w", "T1w", args.model)
    if args.grids:
        parts = [coarse_acquisitions(args, bundle)]
    else:
        parts = [] if args.real_only else [simulated_heads(args, bundle)]
        real, rows = colin27_with_noise(args, bundle)
        parts.append(real)
    if args.record:
        parts.append("Recorded check: " + record_real_scan_check(bundle, rows, args.levels))
    body = "\n\n".join(part for part in parts if part)
    print(body)
    if args.append:
        from harness import append_section

        title = (
            "Denoising coarser acquisitions of the real Colin27: on their own voxels or resampled"
            if args.grids
            else f"Denoising (model vs self, NLM, BM4D, dipy; held-out {args.label_source} "
            "heads and the real Colin27)"
        )
        append_section(title, shlex.join(["python", *sys.argv]), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
