"""``--reports-only``: rebuild the reports from the derivatives and run records already written."""

from __future__ import annotations

import logging
from pathlib import Path

from bids_synth.errors import InputDatasetError
from bids_synth.reports.group import write_group_report
from bids_synth.reports.subject import write_subject_report
from bids_synth.runlog import latest_outcomes

LOG = logging.getLogger("bids_synth")


def rebuild_reports(config) -> int:
    """The subject report of each selected participant with a run record, and the group report
    when the group level has run; nothing is processed."""
    output_dir = Path(config.execution.output_dir)
    subjects = sorted(
        {o["participant_id"].removeprefix("sub-") for o in latest_outcomes(output_dir)}
    )
    selected = config.execution.participant_label
    subjects = [subject for subject in subjects if not selected or subject in selected]
    if not subjects:
        raise InputDatasetError(
            f"{output_dir} has no run records of the selected participants: "
            "run the participant level first"
        )
    for subject in subjects:
        LOG.info("report written: %s", write_subject_report(output_dir, subject))
    if (output_dir / "group" / "cohort.tsv").is_file():
        LOG.info("report written: %s", write_group_report(output_dir))
    return 0
