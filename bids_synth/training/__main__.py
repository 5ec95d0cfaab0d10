"""``python -m bids_synth.training RECIPE --workdir DIR``: run, resume or export a training recipe.

Meant to run for hours in the background (``nohup nice python -m bids_synth.training ... &``);
a killed run resumes from its latest checkpoint when started again with the same work folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bids_synth.argtypes import OneLineErrorParser
from bids_synth.training.recipes import (
    RECIPES,
    export_bundle,
    run_recipe,
    write_seed_checkpoint,
)


def main(argv=None) -> int:
    parser = OneLineErrorParser(prog="python -m bids_synth.training", description=__doc__)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--workdir", type=Path, required=True, help="checkpoints, heads, log")
    parser.add_argument("--epochs", type=int, help="train up to this many epochs in total")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--seed-checkpoint",
        type=Path,
        help="continue from this committed seed checkpoint when the work folder has none",
    )
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="write a bundle from the latest checkpoint instead of training",
    )
    parser.add_argument(
        "--write-seed",
        type=Path,
        metavar="DIR",
        help="write a seed checkpoint from the latest checkpoint instead of training",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    recipe = RECIPES[args.recipe]
    if args.export:
        export_bundle(recipe, args.workdir, args.export, threads=args.threads)
    elif args.write_seed:
        write_seed_checkpoint(recipe, args.workdir, args.write_seed)
    else:
        run_recipe(recipe, args.workdir, epochs=args.epochs, seed_checkpoint=args.seed_checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
