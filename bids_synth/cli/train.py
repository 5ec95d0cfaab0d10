"""``bids-synth train``: train a network and write a model bundle.

Data come from a BIDS dataset (``--bids-dir``: source suffixes → target suffix from the same
subject/session, the target and extra sources resampled onto the first source's grid, all in
RAS at 1 mm as the bundle will see them at inference (a denoiser: its acquired voxels), a
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
import dataclasses
from pathlib import Path

from bids_synth.argtypes import OneLineErrorParser
from bids_synth.cli import guarded, setup_logging
from bids_synth.training.spec import ARCHITECTURES, MODES, NORMS, TrainingSpec

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainingSpec)}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="bids-synth train", description=__doc__.split("\n\n")[0])
    from bids_synth.workflows.synthesis import registered_tasks

    parser.add_argument(
        "--task", required=True, choices=registered_tasks(), help="task the bundle serves"
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
        "--source", nargs="+", default=_DEFAULTS["source"], help="input suffixes (default: T1w)"
    )
    simulated = parser.add_argument_group("head-model data (with --simulated)")
    simulated.add_argument(
        "--label-sources",
        nargs="+",
        default=_DEFAULTS["label_sources"],
        help="anatomies, taken in turn (default: tpm phantom; neuromorphometrics is CC BY-NC)",
    )
    simulated.add_argument(
        "--noise",
        nargs=2,
        type=float,
        default=_DEFAULTS["noise"],
        metavar=("LOW", "HIGH"),
        help="MR noise σ range in %% of the reference tissue, uniform per head (default: 0 5)",
    )
    simulated.add_argument(
        "--spacing",
        type=float,
        default=_DEFAULTS["spacing"],
        help="simulation voxel size in mm (default: 1)",
    )
    simulated.add_argument(
        "--pool",
        type=int,
        default=_DEFAULTS["pool"],
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
        default=_DEFAULTS["source_sites"],
        metavar="SITE",
        help="harmonization: source styles, one picked per head: 'random' (a style of the head's "
        "own) or a fixed site number (default: random)",
    )
    simulated.add_argument(
        "--validation-subjects",
        type=int,
        default=_DEFAULTS["validation_subjects"],
        help="held-out heads of a --pool (default: %(default)s)",
    )
    parser.add_argument("--target", default=_DEFAULTS["target"], help="output suffix (default: CT)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=_DEFAULTS["mode"],
        help="training mode (default: regression)",
    )
    parser.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=_DEFAULTS["arch"],
        help="generator (default: unet)",
    )
    parser.add_argument(
        "--channels",
        nargs="+",
        type=int,
        default=_DEFAULTS["channels"],
        help="U-Net widths per level",
    )
    parser.add_argument(
        "--norm",
        choices=NORMS,
        default=_DEFAULTS["norm"],
        help="U-Net normalisation layers (default: %(default)s)",
    )
    parser.add_argument(
        "--red-width",
        type=int,
        default=_DEFAULTS["red_width"],
        help="RED-CNN feature maps (default: %(default)s)",
    )
    parser.add_argument(
        "--red-depth",
        type=int,
        default=_DEFAULTS["red_depth"],
        help="RED-CNN conv (and deconv) layers, even (default: %(default)s)",
    )
    parser.add_argument(
        "--slices", type=int, help="2.5D: a 2D U-Net reading this many adjacent slices"
    )
    parser.add_argument(
        "--epochs", type=int, default=_DEFAULTS["epochs"], help="epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=_DEFAULTS["steps_per_epoch"],
        help="steps per epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--steps", type=int, help="total steps (rounded up to whole epochs of --val-every steps)"
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=_DEFAULTS["val_every"],
        help="with --steps: steps per epoch (validation, checkpoint)",
    )
    parser.add_argument(
        "--validation-draws",
        type=int,
        default=_DEFAULTS["validation_draws"],
        help="held-out batches per validation",
    )
    parser.add_argument(
        "--patch",
        nargs=3,
        type=int,
        default=_DEFAULTS["patch"],
        help="training patch (default: 64 64 64)",
    )
    parser.add_argument(
        "--inference-overlap",
        type=float,
        default=_DEFAULTS["inference_overlap"],
        help="window overlap the bundle asks for at inference, 0-0.9 (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=_DEFAULTS["batch_size"],
        help="patches per step (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=_DEFAULTS["lr"],
        help="Adam learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default=_DEFAULTS["device"], help="auto, cpu, cuda or cuda:N (default: auto)"
    )
    parser.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default=_DEFAULTS["amp"],
        help="mixed precision; auto = bf16 (else fp16) on GPU, off on CPU",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_DEFAULTS["seed"],
        help="seed of the weights and the data draws; same seed, same CPU training (default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in the work folder (a warning, and a fresh start, "
        "when there is none)",
    )
    parser.add_argument("--work-dir", type=Path, help="checkpoints and log (default: OUT/training)")
    parser.add_argument("--id", dest="bundle_id", help="bundle id (default: TASK-ARCH)")
    parser.add_argument(
        "--version",
        dest="bundle_version",
        default=_DEFAULTS["bundle_version"],
        help="bundle version (semver)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def spec_from_args(args: argparse.Namespace, argv: list[str]) -> TrainingSpec:
    """The training spec of parsed arguments (``argv`` recorded as the command)."""
    names = [field.name for field in dataclasses.fields(TrainingSpec) if field.name != "command"]
    values = {name: getattr(args, name) for name in names}
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
    return TrainingSpec(**values, command=tuple(argv))


@guarded
def main(argv: list[str]) -> int:
    from bids_synth.training.run import train

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    bundle, history = train(spec_from_args(args, argv))
    units = bundle.meta["output"]["units"]
    print(
        f"bundle {bundle.ref} written to {args.out} (val MAE {history[-1]['val_mae']:.4g} {units})"
    )
    return 0
