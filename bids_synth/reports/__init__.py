"""Subject and group HTML reports: self-contained files (inline CSS, PNG figures as data URIs).

:func:`write_subject_report` writes ``OUTPUT_DIR/sub-<label>.html`` from a participant's
derivatives, sidecars and run records; its sections live in :mod:`bids_synth.reports.sections`,
one module each. :func:`write_group_report` writes ``OUTPUT_DIR/group/report.html`` from the
cohort table. :func:`registration_metrics` gives the registration-quality columns of one
participant/session for the cohort table.
"""

from bids_synth.reports.group import write_group_report
from bids_synth.reports.quality import registration_metrics
from bids_synth.reports.subject import write_subject_report

__all__ = ["registration_metrics", "write_group_report", "write_subject_report"]
