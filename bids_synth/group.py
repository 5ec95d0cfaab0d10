"""Group level: cohort table, evaluation against references when there are any, group report."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from bids_synth.config import Config
from bids_synth.derivatives import dataset_lock
from bids_synth.errors import NothingToProcessError
from bids_synth.evaluation import evaluate_derivatives, write_evaluation
from bids_synth.fileio import atomic_write_json, atomic_write_text
from bids_synth.reports import write_group_report
from bids_synth.runlog import latest_outcomes
from bids_synth.workflows.synthesis import registered_tasks

LOG = logging.getLogger("bids_synth")

COHORT_COLUMNS = (
    "participant_id", "session_id", "status", "inputs", "n_outputs", "runtime_s", "run_id", "message",
)  # fmt: skip


def run_group(config: Config) -> int:
    output_dir = Path(config.execution.output_dir)
    if not (output_dir / "dataset_description.json").is_file():
        raise NothingToProcessError(
            f"{output_dir} holds no bids-synth derivatives: run the participant level first"
        )
    rows = cohort_rows(output_dir)
    if not rows:
        raise NothingToProcessError(
            f"{output_dir} has no run records: run the participant level first"
        )
    write_cohort_table(output_dir, rows)
    for name in config.workflow.tasks:
        if registered_tasks()[name].group:
            registered_tasks()[name].group(config)
    scores = evaluate_derivatives(output_dir, config.execution.bids_dir)
    if scores:  # synthetic outputs with references (a real CT, simulated ground truth)
        write_evaluation(scores, output_dir / "evaluation")
        LOG.info("evaluation: %d output(s) scored against their references", len(scores))
    write_group_report(output_dir, rows)
    failed = sum(row["status"] != "success" for row in rows)
    LOG.info("cohort table: %d participant/session(s), %d not successful", len(rows), failed)
    return 0


def cohort_rows(output_dir: Path) -> list[dict]:
    """One row per participant/session: its latest outcome, checked against the files on disk."""
    rows = []
    for outcome in latest_outcomes(output_dir):
        missing = [path for path in outcome["outputs"] if not (output_dir / path).exists()]
        status, message = outcome["status"], outcome["message"]
        if missing:
            status, message = "incomplete", f"{len(missing)} output(s) missing, e.g. {missing[0]}"
        rows.append({
            "participant_id": outcome["participant_id"],
            "session_id": outcome["session_id"] or "n/a",
            "status": status,
            "inputs": ",".join(sorted(outcome["inputs"])),
            "n_outputs": len(outcome["outputs"]),
            "runtime_s": "n/a" if outcome["runtime_s"] is None else outcome["runtime_s"],
            "run_id": outcome["run_id"],
            "message": message or "n/a",
        })  # fmt: skip
    return rows


def write_cohort_table(output_dir: Path, rows: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COHORT_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    table = output_dir / "group" / "cohort.tsv"
    with dataset_lock(output_dir):
        atomic_write_text(table, buffer.getvalue())
        atomic_write_json(table.with_suffix(".json"), COHORT_SIDECAR)
    return table


COHORT_SIDECAR = {
    "participant_id": {"Description": "participant label"},
    "session_id": {"Description": "session label, n/a without sessions"},
    "status": {
        "Description": "outcome of the latest run",
        "Levels": {
            "success": "all derivatives written",
            "failed": "processing failed (see message and the crash file)",
            "invalid-input": "an input image was unusable; nothing was written",
            "incomplete": "derivatives listed by the run are missing on disk",
            "interrupted": "the run was stopped before this participant/session finished",
        },
    },
    "inputs": {"Description": "input images found (BIDS suffixes)"},
    "n_outputs": {"Description": "number of derivative files written"},
    "runtime_s": {
        "Description": "processing time of the participant/session's nodes",
        "Units": "s",
    },
    "run_id": {"Description": "run that produced this row (see logs/<run_id>.json)"},
    "message": {"Description": "error or warning of the run"},
}
