"""``bids-synth train``: train a network and write a model bundle.

Data come from a BIDS dataset (``--bids-dir``: source suffixes → target suffix from the same
subject/session, the target and extra sources resampled onto the first source's grid, a
``desc-body_mask`` derivative restricting the loss when present; the last subject is held out for
validation when there are two or more), from the generative head model (``--simulated``), or from
the sources alone (``--mode noise2self``). ``--target-site K`` trains harmonization on
simulated traveling subjects: the sources acquired with random (or ``--source-sites``) scanner
styles → the target contrast of the same anatomy at site K, noise- and bias-free, in site K's
scanner units (output normalisation ``scale`` = site K's gain). Progress is checkpointed every epoch in
``--work-dir`` (default ``OUT/training``) and ``--resume`` continues a stopped run exactly.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
from pathlib import Path

import numpy as np

import bids_synth
from bids_synth.cli import guarded, setup_logging
from bids_synth.errors import InputDatasetError, NothingToProcessError, UsageError

LOG = logging.getLogger("bids_synth")
MODES = ("regression", "pix2pix", "cyclegan", "wgan-gp", "noise2self")
CT_RANGE_HU = (-1024.0, 3071.0)
# the generative head model's normalisation (bids_synth.simulate.normalisation), for every data source
INPUT_NORMALIZATION = {"method": "percentile-scale", "percentile": 99.5}
CT_NORMALIZATION = {"method": "scale", "offset": 0.0, "scale": 1000.0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bids-synth train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--task", required=True, help="task the bundle serves (e.g. sct, denoise, superres)"
    )
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--bids-dir", type=Path, help="BIDS dataset with the source (and target) images"
    )
    data.add_argument(
        "--simulated", action="store_true", help="draw pairs from the generative head model"
    )
    parser.add_argument(
        "--source", nargs="+", default=["T1w"], help="input suffixes (default: T1w)"
    )
    simulated = parser.add_argument_group("head-model data (with --simulated)")
    simulated.add_argument(
        "--label-sources",
        nargs="+",
        default=["tpm", "phantom"],
        help="anatomies, taken in turn (default: tpm phantom; neuromorphometrics is CC BY-NC)",
    )
    simulated.add_argument(
        "--noise",
        nargs=2,
        type=float,
        default=[0.0, 5.0],
        metavar=("LOW", "HIGH"),
        help="MR noise σ range in %% of the reference tissue, uniform per head (default: 0 5)",
    )
    simulated.add_argument(
        "--spacing", type=float, default=1.0, help="simulation voxel size in mm (default: 1)"
    )
    simulated.add_argument(
        "--pool",
        type=int,
        default=0,
        metavar="N",
        help="simulate N heads once and train on patches of them (0: new heads all along)",
    )
    simulated.add_argument(
        "--target-site",
        type=int,
        metavar="K",
        help="harmonization: the target is the same anatomy at the fixed site K (traveling "
        "subjects); takes precedence over the denoising reading of --target == --source",
    )
    simulated.add_argument(
        "--source-sites",
        nargs="+",
        default=["random"],
        metavar="SITE",
        help="harmonization: source styles, one picked per head: 'random' (a style of the head's "
        "own) or a fixed site number (default: random)",
    )
    simulated.add_argument(
        "--validation-subjects",
        type=int,
        default=2,
        help="held-out heads of a --pool (default: %(default)s)",
    )
    parser.add_argument("--target", default="CT", help="output suffix (default: CT)")
    parser.add_argument(
        "--mode", choices=MODES, default="regression", help="training mode (default: regression)"
    )
    parser.add_argument(
        "--arch",
        choices=("unet", "resunet", "red"),
        default="unet",
        help="generator (default: unet)",
    )
    parser.add_argument(
        "--channels", nargs="+", type=int, default=[16, 32, 64, 128], help="U-Net widths per level"
    )
    parser.add_argument(
        "--norm", choices=("instance", "batch", "group", "none"), default="instance"
    )
    parser.add_argument(
        "--red-width", type=int, default=32, help="RED-CNN feature maps (default: %(default)s)"
    )
    parser.add_argument(
        "--red-depth",
        type=int,
        default=4,
        help="RED-CNN conv (and deconv) layers, even (default: %(default)s)",
    )
    parser.add_argument(
        "--slices", type=int, help="2.5D: a 2D U-Net reading this many adjacent slices"
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default: %(default)s)")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=100, help="steps per epoch (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, help="total steps (rounded up to whole epochs of --val-every steps)"
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=100,
        help="with --steps: steps per epoch (validation, checkpoint)",
    )
    parser.add_argument(
        "--validation-draws", type=int, default=4, help="held-out batches per validation"
    )
    parser.add_argument(
        "--patch",
        nargs=3,
        type=int,
        default=[64, 64, 64],
        help="training patch (default: 64 64 64)",
    )
    parser.add_argument(
        "--inference-overlap",
        type=float,
        default=0.5,
        help="window overlap the bundle asks for at inference, 0-0.9 (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)"
    )
    parser.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default="auto",
        help="mixed precision; auto = bf16 (else fp16) on GPU, off on CPU",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in the work folder"
    )
    parser.add_argument("--work-dir", type=Path, help="checkpoints and log (default: OUT/training)")
    parser.add_argument("--id", dest="bundle_id", help="bundle id (default: TASK-ARCH)")
    parser.add_argument(
        "--version", dest="bundle_version", default="0.1.0", help="bundle version (semver)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def training_plan(args) -> tuple[int, int]:
    """(epochs, steps per epoch); ``--steps N`` makes epochs of ``--val-every`` steps (N rounded up)."""
    if args.steps is None:
        return args.epochs, args.steps_per_epoch
    steps_per_epoch = min(args.val_every, args.steps)
    return math.ceil(args.steps / steps_per_epoch), steps_per_epoch


# settings that do not change the batches or updates of a given epoch: free to change on --resume
_NOT_IN_TRAJECTORY = (
    "resume",
    "verbose",
    "out",
    "work_dir",
    "device",
    "epochs",
    "steps",
    "steps_per_epoch",
    "val_every",
    "validation_draws",
    "bundle_id",
    "bundle_version",
    "inference_overlap",
)


def _check(args) -> None:
    positive = {
        "--epochs": args.epochs,
        "--steps-per-epoch": args.steps_per_epoch,
        "--batch-size": args.batch_size,
        "--val-every": args.val_every,
        "--steps": args.steps if args.steps is not None else 1,
    }
    for flag, value in positive.items():
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if not 0 <= args.inference_overlap <= 0.9:
        raise UsageError(f"--inference-overlap must be in [0, 0.9], got {args.inference_overlap}")
    multiple = 2 ** (len(args.channels) - 1) if args.arch != "red" else 1
    if any(p % multiple or p < 8 for p in args.patch):
        raise UsageError(
            f"--patch {args.patch}: each size must be a multiple of {multiple} and at least 8"
        )
    if args.arch == "red" and (
        args.red_depth < 2 or args.red_depth % 2 or args.red_width < 1
        or min(args.patch) <= 2 * args.red_depth
    ):  # fmt: skip
        raise UsageError(
            f"--red-depth {args.red_depth} / --red-width {args.red_width}: the depth must be even "
            f"and >= 2, the width >= 1, every --patch size > 2 x depth"
        )
    if args.simulated and args.mode == "noise2self":
        raise UsageError("--mode noise2self trains on real images: use --bids-dir")
    if args.simulated:
        from bids_synth.simulate import LABEL_SOURCES

        unknown = sorted(set(args.label_sources) - set(LABEL_SOURCES))
        if unknown:
            raise UsageError(f"--label-sources {unknown}: choose among {', '.join(LABEL_SOURCES)}")
        if not 0 <= args.noise[0] <= args.noise[1] < 100:
            raise UsageError(f"--noise {args.noise}: need 0 <= LOW <= HIGH < 100 (percent)")
        if args.pool < 0 or args.validation_subjects < 1 or args.spacing <= 0:
            raise UsageError("--pool must be >= 0, --validation-subjects >= 1, --spacing > 0")
        from bids_synth.simulate.anatomy import default_shape

        grid = default_shape(args.spacing)
        if any(p > g for p, g in zip(args.patch, grid)):
            raise UsageError(
                f"--patch {args.patch} is larger than the {args.spacing:g} mm simulation grid {grid}"
            )
    if _harmonizing(args):
        _check_harmonization(args)


def _check_harmonization(args) -> None:
    from bids_synth.simulate.mri import CONTRASTS_MR

    if not args.simulated:
        raise UsageError("--target-site trains on simulated traveling subjects: add --simulated")
    if args.target_site < 0:
        raise UsageError(f"--target-site must be >= 0, got {args.target_site}")
    contrasts = [*args.source, args.target]
    if any(c not in CONTRASTS_MR for c in contrasts):
        raise UsageError(
            f"--target-site: --source and --target must be MR contrasts ({', '.join(CONTRASTS_MR)})"
        )
    _source_sites(args)


def _harmonizing(args) -> bool:
    return getattr(args, "target_site", None) is not None


def _source_sites(args) -> tuple[int | None, ...]:
    """``--source-sites`` as TrainingPairs takes them (None: a random style)."""
    sites = []
    for token in args.source_sites:
        if token == "random":
            sites.append(None)
        elif token.isdigit():
            sites.append(int(token))
        else:
            raise UsageError(f"--source-sites {token!r}: 'random' or a site number")
    return tuple(sites)


def _contracts(args) -> tuple[dict, dict]:
    """The bundle's input and output contracts (suffixes, channels, grid, normalisation, units)."""
    inputs = {
        "suffixes": list(args.source),
        "channels": _input_channels(args),
        "spacing_mm": [float(args.spacing)] * 3 if args.simulated else [1.0, 1.0, 1.0],
        "orientation": "RAS",
        "normalization": dict(INPUT_NORMALIZATION),
    }
    target = args.source[0] if _denoising(args) else args.target
    if _harmonizing(args):
        from bids_synth.simulate.training import harmonization_scale

        output = {
            "suffix": target,
            "units": f"site{args.target_site} scanner units",
            "range": None,
            "normalization": {
                "method": "scale",
                "offset": 0.0,
                "scale": harmonization_scale(args.target_site, target),
            },
        }
    elif target.upper() == "CT":
        output = {
            "suffix": target,
            "units": "HU",
            "range": list(CT_RANGE_HU),
            "normalization": dict(CT_NORMALIZATION),
        }
    else:
        output = {
            "suffix": target,
            "units": "a.u. (input scale)",
            "range": None,
            "normalization": {"method": "input"},
        }
    return inputs, output


def _denoising(args) -> bool:
    """Noisy → clean training: self-supervised, or ``--target clean`` (or the first source) without
    ``--target-site`` (harmonization)."""
    if _harmonizing(args):
        return False
    return args.mode == "noise2self" or args.target in ("clean", args.source[0])


def _input_channels(args) -> int:
    """Simulated denoising takes the sources as alternatives (one channel), else as channels."""
    return 1 if args.simulated and _denoising(args) else len(args.source)


def _network_kwargs(args) -> dict:
    kwargs = {"in_channels": _input_channels(args), "out_channels": 1}
    if args.arch == "red":
        return {**kwargs, "width": args.red_width, "depth": args.red_depth}
    kwargs.update(channels=list(args.channels), norm=args.norm)
    if args.slices:
        kwargs["slices"] = args.slices
    return kwargs


def _resample(img, reference, order: int) -> np.ndarray:
    """``img``'s data on ``reference``'s voxel grid (through both affines)."""
    from scipy.ndimage import affine_transform

    data = np.asanyarray(img.dataobj, dtype=np.float32)
    voxel_map = np.linalg.inv(img.affine) @ reference.affine
    if np.allclose(voxel_map, np.eye(4)) and data.shape == reference.shape[:3]:
        return data
    return affine_transform(
        data,
        voxel_map[:3, :3],
        offset=voxel_map[:3, 3],
        output_shape=reference.shape[:3],
        order=order,
        mode="constant",
        cval=float(data.min()),
    )


def _find_bids_sets(args) -> list[dict]:
    """One dict per subject/session with the source, target and mask files (pybids queries)."""
    from bids import BIDSLayout
    from bids.layout import Query

    if not (args.bids_dir / "dataset_description.json").is_file():
        raise InputDatasetError(
            f"{args.bids_dir}: not a BIDS dataset (no dataset_description.json)"
        )
    layout = BIDSLayout(
        str(args.bids_dir), validate=False, derivatives=(args.bids_dir / "derivatives").is_dir()
    )
    images = {"extension": [".nii", ".nii.gz"]}
    anchor = args.source[0] if args.mode == "noise2self" else args.target
    sets = []
    for anchor_file in layout.get(suffix=anchor, scope="raw", **images):
        where = {
            "subject": anchor_file.entities["subject"],
            "session": anchor_file.entities.get("session", Query.NONE),
        }
        sources = [
            layout.get(suffix=suffix, scope="raw", **where, **images) for suffix in args.source
        ]
        if not all(sources):
            LOG.warning(
                "skipping %s: missing %s",
                anchor_file.filename,
                [s for s, f in zip(args.source, sources) if not f],
            )
            continue
        masks = layout.get(suffix="mask", desc="body", scope="derivatives", **where, **images)
        sets.append(
            {
                "subject": where["subject"],
                "sources": [found[0].path for found in sources],
                "target": anchor_file.path,
                "mask": masks[0].path if masks else None,
            }
        )
    if not sets:
        raise NothingToProcessError(
            f"{args.bids_dir}: no subject/session with {'+'.join(args.source)} and {anchor}"
        )
    return sets


def _load_set(entry: dict, inputs: dict, output: dict):
    """Normalised (sources, target, mask) arrays of one subject/session on its first source's grid."""
    from bids_synth.fileio import load_image
    from bids_synth.nn.intensity import normalize_channels, output_map

    reference = load_image(entry["sources"][0], what="source")
    sources = np.stack(
        [_resample(load_image(path, what="source"), reference, 1) for path in entry["sources"]]
    )
    sources, maps = normalize_channels(sources, inputs["normalization"])
    target = _resample(load_image(entry["target"], what="target"), reference, 1)
    target = output_map(output["normalization"], maps[0]).apply(target)[None]
    mask = (
        None
        if entry["mask"] is None
        else (_resample(load_image(entry["mask"], what="mask"), reference, 0) > 0)[None]
    )
    return sources, target, mask


def _bids_data(args, inputs: dict, output: dict, patch_options: dict):
    from bids_synth.nn.data import BlindSpot, HeldOut, VolumePatches

    sets = _find_bids_sets(args)
    loaded = [_load_set(entry, inputs, output) for entry in sets]
    subjects = sorted({entry["subject"] for entry in sets})
    held_out = subjects[-1] if len(subjects) > 1 else None
    train = [item for entry, item in zip(sets, loaded) if entry["subject"] != held_out]
    held = [item for entry, item in zip(sets, loaded) if entry["subject"] == held_out]
    self_supervised = args.mode == "noise2self"

    def patches(items, seed):
        masks = [m if m is not None else np.ones_like(t) for _, t, m in items]
        return VolumePatches(
            [s for s, _, _ in items],
            None if self_supervised else [t for _, t, _ in items],
            masks,
            seed=seed,
            paired=args.mode != "cyclegan",
            pair_fn=BlindSpot() if self_supervised else None,
            **patch_options,
        )

    data = patches(train, args.seed)
    if held:
        data = HeldOut(data, patches(held, args.seed))
    description = (
        f"BIDS dataset {args.bids_dir.resolve().name}: {len(sets)} image sets from {len(subjects)} subjects, "
        f"{'+'.join(args.source)} → {output['suffix']}"
    )
    validation = (
        f"held-out subject sub-{held_out}"
        if held
        else "held-out random patches of the training images"
    )
    return data, {"kind": "bids", "description": description, "subjects": subjects}, validation


def _simulated_data(args, inputs: dict, output: dict, patch_options: dict):
    """Head-model pairs, normalised by the head model as ``inputs``/``output`` declare."""
    from bids_synth.nn.data import SimulatedPairs, SimulatedPool

    target = "clean" if _denoising(args) else args.target
    options = dict(
        source=args.source,
        target=target,
        seed=args.seed,
        label_sources=tuple(args.label_sources),
        noise=(args.noise[0] / 100, args.noise[1] / 100),
        spacing=args.spacing,
        **patch_options,
    )
    if _harmonizing(args):
        options.update(target_site=args.target_site, source_sites=_source_sites(args))
    if args.pool:
        pairs = SimulatedPool(
            subjects=args.pool, validation_subjects=args.validation_subjects, **options
        )
        heads = f"a pool of {args.pool} simulated heads"
        validation = f"{args.validation_subjects} held-out simulated heads (separate seed stream)"
    else:
        pairs = SimulatedPairs(**options)
        heads, validation = (
            "simulated heads drawn on the fly",
            "held-out simulated heads (separate seed stream)",
        )
    description = (
        f"{heads} from the bids-synth generative head model ({', '.join(args.label_sources)} "
        f"anatomies, {args.spacing:g} mm, MR noise {args.noise[0]:g}-{args.noise[1]:g} %), "
        f"{'+'.join(args.source)} → {target}"
    )
    if _harmonizing(args):
        description += (
            f" at site {args.target_site} (traveling subjects: sources acquired with "
            f"{_describe_sites(args)} scanner styles, with bias field and noise; target the same "
            f"anatomy's noise- and bias-free {target} at site {args.target_site})"
        )
    data_info = {"kind": "simulated", "description": description}
    return pairs, data_info, validation


def _describe_sites(args) -> str:
    sites = _source_sites(args)
    names = ["random" if s is None else f"site{s}" for s in sites]
    return ", ".join(names)


def harmonization_meta(args) -> dict:
    """The bundle's ``harmonization`` entry: the target site and its scanner style."""
    from bids_synth.simulate.scanner import ScannerStyle

    style = ScannerStyle.for_site(args.target_site)
    return {
        "target_site": args.target_site,
        "target": style.name,
        "target_style": style.to_json(),
        "source_styles": [
            "random" if s is None else ScannerStyle.for_site(s).name for s in _source_sites(args)
        ],
        "target_image": "the noise-, bias- and PSF-free image of the target site on the simulation grid",
    }


def _bundle_meta(
    args, argv, *, inputs, output, kwargs, data_info, history, device, amp, epochs, steps
) -> dict:
    import torch

    last = history[-1]
    units = output["units"]
    return {
        "id": args.bundle_id or f"{args.task}-{args.arch}".lower(),
        "version": args.bundle_version,
        "task": args.task,
        "architecture": {"name": args.arch, "kwargs": kwargs},
        "input": inputs,
        "output": output,
        "inference": {"patch": list(args.patch), "overlap": args.inference_overlap},
        "training": {
            "data": data_info,
            "mode": args.mode,
            "seed": args.seed,
            "steps": epochs * steps,
            "epochs": epochs,
            "batch_size": args.batch_size,
            "patch": list(args.patch),
            "lr": args.lr,
            "device": device,
            "amp": amp,
            # the command that retrains it from scratch (a resumed run follows the same trajectory)
            "command": shlex.join(["bids-synth", "train", *(a for a in argv if a != "--resume")]),
        },
        "metrics": [
            {
                "name": "MAE",
                "value": last["val_mae"],
                "units": units,
                "dataset": data_info["validation"],
            },
            {
                "name": "PSNR",
                "value": last["val_psnr"],
                "units": "dB",
                "dataset": data_info["validation"],
            },
        ],
        "software": {"bids_synth": bids_synth.__version__, "torch": torch.__version__},
        **({"harmonization": harmonization_meta(args)} if _harmonizing(args) else {}),
    }


@guarded
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    _check(args)
    from bids_synth.models.bundle import save_bundle
    from bids_synth.models.card import render_model_card
    from bids_synth.nn.devices import amp_dtype, amp_name, resolve_device
    from bids_synth.nn.history import plot_history, write_history_csv
    from bids_synth.nn.loop import ResumeMismatch, fit
    from bids_synth.nn.trainers import build_trainer

    try:
        device = resolve_device(args.device)
        amp = amp_name(amp_dtype(device, args.amp))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    epochs, steps = training_plan(args)
    inputs, output = _contracts(args)
    patch_options = {"patch": tuple(args.patch), "batch_size": args.batch_size}
    make_data = _simulated_data if args.simulated else _bids_data
    data, data_info, validation = make_data(args, inputs, output, patch_options)
    data_info["validation"] = validation
    kwargs = _network_kwargs(args)
    mode = "regression" if args.mode == "noise2self" else args.mode
    critic_layers = max(1, min(3, int(math.log2(min(args.patch))) - 3))
    trainer = build_trainer(
        mode,
        architecture=args.arch,
        network_kwargs=dict(kwargs),
        device=device,
        amp=args.amp,
        lr=args.lr,
        seed=args.seed,
        critic_layers=critic_layers,
    )
    work = args.work_dir or args.out / "training"
    run = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if key not in _NOT_IN_TRAJECTORY
    }
    run["steps_per_epoch"] = steps
    scale = (
        output["normalization"]["scale"] if output["normalization"]["method"] == "scale" else 1.0
    )
    try:
        history = fit(
            trainer,
            data,
            epochs=epochs,
            steps_per_epoch=steps,
            workdir=work,
            run=run,
            resume=args.resume,
            validation_draws=args.validation_draws,
            output_scale=scale,
        )
    except ResumeMismatch as exc:
        raise UsageError(str(exc)) from exc
    meta = _bundle_meta(
        args,
        argv,
        inputs=inputs,
        output=output,
        kwargs=kwargs,
        data_info=data_info,
        history=history,
        device=str(device),
        amp=amp,
        epochs=epochs,
        steps=steps,
    )
    write_history_csv(args.out / "training_log.csv", history)
    plot_history(args.out / "training_curves.png", history)
    bundle = save_bundle(
        args.out, trainer.generator, meta=meta, card=render_model_card(meta, history)
    )
    print(
        f"bundle {bundle.ref} written to {args.out} (val MAE {history[-1]['val_mae']:.4g} {output['units']})"
    )
    return 0
