"""Whole-participant wall time and peak memory at 1 mm, and cohort throughput at 1 and 2 workers.

Data come from the generative head model (``write_simulated_dataset``): one 1 mm participant
(T1w, T2w, CT) for the single-participant figures, and a cohort of ``--cohort`` participants at
2 mm processed twice from scratch, with ``--nprocs 1`` and ``--nprocs 2``. Each run is a separate
``bids-synth`` process; its peak memory is the largest resident set of its process tree. Usage::

    python benchmarks/bench_cohort.py [--cohort 4] [--append]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import append_section  # noqa: E402


def run_app(bids: Path, out: Path, work: Path, nprocs: int) -> tuple[float, float]:
    """Run the participant level; return wall seconds and peak RSS (GiB) of the process tree."""
    command = [
        sys.executable, "-m", "bids_synth", str(bids), str(out), "participant",
        "-w", str(work), "--nprocs", str(nprocs), "--omp-nthreads", "1",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=int, default=4, help="participants in the cohort run")
    parser.add_argument("--append", action="store_true", help="append the results to BENCHMARKS.md")
    args = parser.parse_args()
    from bids_synth.simulate.dataset import write_simulated_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        head = write_simulated_dataset(
            tmp / "head", n_subjects=1, sites=1, traveling_subjects=0, resolution=1.0, seed=1
        )
        single_wall, single_peak = run_app(head, tmp / "head_out", tmp / "head_work", nprocs=2)
        cohort = write_simulated_dataset(
            tmp / "cohort",
            n_subjects=args.cohort,
            sites=2,
            traveling_subjects=0,
            resolution=2.0,
            seed=2,
        )
        throughput = {}
        for workers in (1, 2):
            wall, _ = run_app(cohort, tmp / f"out{workers}", tmp / f"work{workers}", nprocs=workers)
            throughput[workers] = (wall, args.cohort / wall * 3600)

    lines = [
        "| run | wall (s) | participants / hour | peak RSS (GiB) |",
        "|---|---|---|---|",
        f"| one participant, 1 mm (180×216×200), T1w+T2w+CT, 2 workers | {single_wall:.0f} | "
        f"{3600 / single_wall:.1f} | {single_peak:.2f} |",
    ]
    for workers, (wall, rate) in throughput.items():
        lines.append(
            f"| cohort of {args.cohort} at 2 mm, {workers} worker(s) | {wall:.0f} | {rate:.1f} | |"
        )
    speedup = throughput[1][0] / throughput[2][0]
    text = "\n".join(lines) + f"\n\nSpeed-up from 1 to 2 workers: **{speedup:.2f}×**."
    print(text)
    if args.append:
        append_section(
            "Whole participant and cohort throughput",
            "python benchmarks/bench_cohort.py --append",
            text,
        )


if __name__ == "__main__":
    main()
