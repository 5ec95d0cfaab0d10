"""``bids-synth simulate``: write a simulated BIDS dataset and its ground truth.

The layout is described in :mod:`bids_synth.simulate.dataset`, which writes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_synth.argtypes import OneLineErrorParser, nonnegative_int, positive_float, positive_int
from bids_synth.cli import guarded, setup_logging
from bids_synth.errors import UsageError
from bids_synth.simulate.dataset import DEFAULT_MODALITIES, write_simulated_dataset


def build_parser() -> argparse.ArgumentParser:
    from bids_synth.simulate import CONTRASTS, LABEL_SOURCES

    parser = OneLineErrorParser(
        prog="bids-synth simulate",
        description="Write a simulated BIDS dataset from the generative head model, with a "
        "ground-truth derivatives dataset in OUT_DIR/derivatives/ground-truth.",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="dataset folder to create")
    parser.add_argument(
        "--n-subjects", type=positive_int, default=2, help="participants (default: %(default)s)"
    )
    parser.add_argument(
        "--sites",
        type=positive_int,
        default=1,
        help="scanner sites 1 to K, each a fixed scanner style (site 0, the reference style "
        "the harmonization bundles map to, is never acquired) (default: %(default)s)",
    )
    parser.add_argument(
        "--traveling-subjects",
        type=int,
        default=0,
        help="participants scanned at every site, one session each (default: %(default)s)",
    )
    parser.add_argument(
        "--modalities",
        nargs="+",
        choices=CONTRASTS,
        default=list(DEFAULT_MODALITIES),
        help="images per session (default: %(default)s)",
    )
    parser.add_argument(
        "--resolution",
        nargs="+",
        type=positive_float,
        default=[1.0],
        metavar="MM",
        help="acquired voxel size: one value (isotropic) or three (the coarsest axis "
        "is the slice axis); the ground truth is simulated at the finest value "
        "(default: 1)",
    )
    parser.add_argument(
        "--thick-slices",
        nargs="+",
        default=[],
        metavar="CONTRAST=FACTOR",
        help="acquire CONTRAST as 2D axial slices FACTOR times thicker than "
        "--resolution, e.g. T2w=3 (default: none)",
    )
    parser.add_argument(
        "--thick-slice-sites",
        nargs="+",
        type=positive_int,
        metavar="K",
        help="only these sites acquire the --thick-slices (default: every site)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        metavar="PCT",
        help="MR noise σ in percent of the brightest of GM/WM/CSF (default: each "
        "site's own level, 1-5 %%)",
    )
    parser.add_argument(
        "--label-source",
        choices=LABEL_SOURCES,
        default="phantom",
        help="anatomy: procedural phantom or reference maps found through "
        "$BIDS_SYNTH_REFDATA (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the head model is drawn: auto, cpu, cuda or cuda:N "
        "(default: %(default)s, whose datasets are identical on every machine)",
    )
    parser.add_argument("--overwrite", action="store_true", help="write into an existing dataset")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


@guarded
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if len(args.resolution) not in (1, 3):
        raise UsageError("--resolution takes one or three values")
    out = write_simulated_dataset(
        args.out_dir,
        n_subjects=args.n_subjects,
        sites=args.sites,
        traveling_subjects=args.traveling_subjects,
        modalities=tuple(args.modalities),
        resolution=args.resolution[0] if len(args.resolution) == 1 else tuple(args.resolution),
        thick_slices=_parse_thick_slices(args.thick_slices),
        thick_slice_sites=args.thick_slice_sites,
        noise=args.noise,
        label_source=args.label_source,
        seed=args.seed,
        device=args.device,
        overwrite=args.overwrite,
    )
    print(f"simulated dataset written to {out}")
    return 0


def _parse_thick_slices(values: list[str]) -> dict[str, float]:
    """``["T2w=3"]`` → ``{"T2w": 3.0}``."""
    try:
        return {c: float(f) for c, f in (value.split("=") for value in values)}
    except ValueError as exc:
        raise UsageError(f"--thick-slices takes CONTRAST=FACTOR values, got {values}") from exc
