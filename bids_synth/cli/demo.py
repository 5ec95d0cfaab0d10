"""``bids-synth demo``: simulate a small phantom BIDS dataset and run both levels on it."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from bids_synth.argtypes import OneLineErrorParser, nonnegative_int, positive_float, positive_int
from bids_synth.cli import guarded, setup_logging

LOG = logging.getLogger("bids_synth")
#: site 2's T2w is acquired in slices this many times thicker than --resolution (super-resolution)
DEMO_SLICE_FACTOR = 3.0
DEMO_THICK_SLICE_SITE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="bids-synth demo",
        description=(
            "Write a small simulated BIDS dataset (2 participants, one scanned at two sites as two "
            "sessions; T1w, CT and a T2w, acquired at site "
            f"{DEMO_THICK_SLICE_SITE} in 2D slices {DEMO_SLICE_FACTOR:g} times thicker; from the "
            "generative head model) into OUT_DIR/rawdata, then run every task with its default "
            "options at "
            "the participant level and the group level into OUT_DIR/derivatives."
        ),
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=Path("demo_output"),
        help="folder for the demo dataset, derivatives and work (default: %(default)s)",
    )
    parser.add_argument(
        "--nprocs", type=positive_int, default=None, help="processes at once (default: all cores)"
    )
    parser.add_argument(
        "--resolution",
        type=positive_float,
        default=2.0,
        help="voxel size of the simulated images in mm (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the simulation and the run"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete OUT_DIR first instead of resuming in it"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


@guarded
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from bids_synth.cli.run import main as run_main
    from bids_synth.simulate.dataset import write_simulated_dataset

    out_dir = args.out_dir.resolve()
    if args.fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    rawdata, derivatives = out_dir / "rawdata", out_dir / "derivatives"
    if not (rawdata / "dataset_description.json").exists():
        LOG.info("simulating the demo dataset into %s", rawdata)
        write_simulated_dataset(
            rawdata,
            n_subjects=2,
            sites=2,
            traveling_subjects=1,
            modalities=("T1w", "T2w", "CT"),
            resolution=args.resolution,
            thick_slices={"T2w": DEMO_SLICE_FACTOR},
            thick_slice_sites=(DEMO_THICK_SLICE_SITE,),
            seed=args.seed,
        )
    common = ["-w", str(out_dir / "work"), "--random-seed", str(args.seed)]
    common += ["--nprocs", str(args.nprocs)] if args.nprocs else []
    common += ["-v"] * args.verbose
    from bids_synth.workflows.synthesis import registered_tasks

    tasks = ["--tasks", *registered_tasks()] if registered_tasks() else []
    code = run_main([str(rawdata), str(derivatives), "participant", *tasks, *common])
    if code:
        return code
    code = run_main([str(rawdata), str(derivatives), "group", *tasks, *common])
    if code == 0:
        print(f"demo finished: derivatives in {derivatives}")
        print(f"cohort table: {derivatives / 'group' / 'cohort.tsv'}")
    return code
