"""``bids-synth evaluate``: score derivatives against reference images (see :mod:`bids_synth.evaluation`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_synth.argtypes import OneLineErrorParser
from bids_synth.cli import guarded, setup_logging
from bids_synth.errors import NothingToProcessError
from bids_synth.evaluation import RULES, evaluate_derivatives, write_evaluation


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="bids-synth evaluate",
        description=(
            "Pair each synthesized image of a bids-synth derivatives dataset with its reference "
            "(raw image of the reference BIDS dataset, or the clean image of its "
            "derivatives/ground-truth) by subject and session, and write per-image metrics "
            "(metrics.tsv) and their summary per task (summary.json)."
        ),
    )
    parser.add_argument("derivatives_dir", type=Path, help="bids-synth derivatives dataset")
    parser.add_argument(
        "reference_dir", type=Path, help="BIDS dataset holding the reference images"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=list(RULES),
        default=list(RULES),
        metavar="TASK",
        help=f"tasks to evaluate, among {' '.join(RULES)} (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: DERIVATIVES_DIR/evaluation)",
    )
    parser.add_argument(
        "--participant-label",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="evaluate only these participants (with or without the sub- prefix)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    rows = evaluate_derivatives(
        args.derivatives_dir,
        args.reference_dir,
        tasks=args.tasks,
        participant_labels=args.participant_label,
    )
    if not rows:
        raise NothingToProcessError(
            f"no output in {args.derivatives_dir} could be paired with a reference in {args.reference_dir}"
        )
    tsv, summary = write_evaluation(rows, args.out or args.derivatives_dir / "evaluation")
    print(f"evaluated {len(rows)} outputs: {tsv}, {summary}")
    return 0
