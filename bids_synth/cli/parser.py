"""Command-line parser of the BIDS-App form (``bids-synth BIDS_DIR OUTPUT_DIR LEVEL``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_synth import __version__
from bids_synth.argtypes import OneLineErrorParser, nonnegative_int, positive_float, positive_int
from bids_synth.config import BRAIN_MASK_METHODS, COREG_TRANSFORMS


def build_parser() -> argparse.ArgumentParser:
    from bids_synth.cli import SUBCOMMANDS
    from bids_synth.workflows.synthesis import registered_tasks

    task_names = tuple(registered_tasks())
    commands = "\n".join(f"  {name:<16} {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    parser = OneLineErrorParser(
        prog="bids-synth",
        description=(
            "bids-synth: medical image synthesis as a BIDS App. Preprocesses the anatomical "
            "images of each participant (N4, head/brain masks, alignment to the T1w with ANTs) "
            "and runs the synthesis tasks chosen with --tasks, writing a BIDS derivatives dataset."
        ),
        epilog=f"sub-commands (bids-synth <command> --help):\n{commands}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="root folder of the input BIDS dataset")
    parser.add_argument(
        "output_dir", type=Path, help="output folder: the root of the derivatives dataset"
    )
    parser.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="participant: process each participant; group: summarise the processed cohort",
    )
    parser.add_argument("--version", action="version", version=f"bids-synth {__version__}")

    bids = parser.add_argument_group("Selecting the data")
    bids.add_argument(
        "--participant-label", "--participant_label", nargs="+", metavar="LABEL",
        help="participants to process, with or without 'sub-' (default: all)",
    )  # fmt: skip
    bids.add_argument(
        "--session-label", nargs="+", metavar="LABEL",
        help="sessions to process, with or without 'ses-' (default: all)",
    )  # fmt: skip
    bids.add_argument(
        "--bids-filter-file", type=Path, metavar="FILE",
        help="JSON object of extra pybids query entities per input kind "
        '(keys t1w, t2w, flair, pd, ct), e.g. {"t1w": {"acquisition": "mprage"}}',
    )  # fmt: skip
    bids.add_argument(
        "--skip-bids-validation", action="store_true", default=None,
        help="do not check the input dataset with the BIDS validator (bids-validator-deno where "
        "installed, else pybids); also processes folders without dataset_description.json",
    )  # fmt: skip

    tasks = parser.add_argument_group("Synthesis")
    tasks.add_argument(
        "--tasks", nargs="+", choices=task_names, metavar="TASK",
        help=f"synthesis tasks to run after preprocessing ({', '.join(task_names)}); "
        "without --tasks: preprocessing derivatives only",
    )  # fmt: skip
    tasks.add_argument(
        "--coreg-transform", choices=COREG_TRANSFORMS,
        help="transform aligning the other images to the T1w (default: rigid)",
    )  # fmt: skip
    tasks.add_argument(
        "--brain-mask-method", choices=BRAIN_MASK_METHODS,
        help="how the T1w's brain mask is found: morphology (intensity classes and mathematical "
        "morphology), model (the newest brainmask bundle, a network trained on heads of random "
        "contrasts) or auto (model once that bundle has passed its real-scan check, else "
        "morphology; the default)",
    )  # fmt: skip
    tasks.add_argument(
        "--device", metavar="DEVICE",
        help="where the networks run: auto (a GPU when there is one), cpu, cuda or cuda:N "
        "(default: auto)",
    )  # fmt: skip
    tasks.add_argument(
        "--random-seed", type=nonnegative_int, metavar="N",
        help="seed of every random step; same inputs and seed give identical CPU outputs",
    )  # fmt: skip

    for task in registered_tasks().values():
        if task.add_arguments:
            task.add_arguments(parser.add_argument_group(f"Task {task.name}: {task.help}"))

    perf = parser.add_argument_group("Resources and execution")
    perf.add_argument(
        "-w",
        "--work-dir",
        type=Path,
        help="nipype working folder, reused by reruns; one run at a time may use it "
        "(default: 'work' in the current folder)",
    )
    perf.add_argument(
        "--nprocs",
        "--n-cpus",
        type=positive_int,
        metavar="N",
        help="processes run at once by the MultiProc plugin (default: all cores)",
    )
    perf.add_argument(
        "--omp-nthreads",
        type=positive_int,
        metavar="N",
        help="threads per process (ITK, torch) (default: half of nprocs, 1 to 8)",
    )
    perf.add_argument(
        "--mem-gb",
        type=positive_float,
        metavar="GB",
        help="memory the scheduler may hand out (default: no limit)",
    )
    perf.add_argument(
        "--use-plugin",
        type=Path,
        metavar="YAML",
        help="nipype plugin settings (see workflows/plugins/*.yml)",
    )
    perf.add_argument(
        "--config-file",
        type=Path,
        metavar="TOML",
        help="run settings (see workflows/configs/*.toml); options given here win",
    )
    perf.add_argument(
        "--write-graph",
        action="store_true",
        default=None,
        help="write the workflow graph (dot/png) into the work folder",
    )
    perf.add_argument(
        "--boilerplate-only",
        action="store_true",
        default=None,
        help="write the methods boilerplate (OUTPUT_DIR/logs/CITATION.md, .bib) and run nothing",
    )
    perf.add_argument(
        "--reports-only",
        action="store_true",
        default=None,
        help="rebuild the subject reports (and the group report, with records) from the existing "
        "derivatives and run nothing else",
    )
    perf.add_argument(
        "--stop-on-first-crash",
        action="store_true",
        default=None,
        help="stop at the first failing node instead of finishing the others",
    )
    perf.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output (-v: Nipype's log too, -vv: debug)",
    )
    return parser
