"""The group report: ``OUTPUT_DIR/group/report.html``, the cohort at a glance."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from bids_synth.fileio import atomic_write_text
from bids_synth.reports import charts
from bids_synth.reports.cohort import (
    OUTLIER_Z,
    Unit,
    cohort_units,
    metric_names,
    outliers,
    read_tsv,
)
from bids_synth.reports.html import Html, badge, figure, join, page, section, table, tag
from bids_synth.reports.quality import COLUMN_PREFIX

REPORT = Path("group") / "report.html"
UNITS = {"runtime_s": "runtime (s)"}
COHORT_TABLE = Path("group") / "cohort.tsv"


def write_group_report(output_dir, rows: list[dict] | None = None) -> Path:
    """Write ``OUTPUT_DIR/group/report.html`` (self-contained) and return its path.

    ``rows`` are the cohort-table rows (default: read from ``group/cohort.tsv``). Shows the cohort
    table with links to the subject reports, every metric's distribution (numeric columns, the
    registration quality, and ``evaluation/metrics.tsv`` when present), per-site plots when the raw
    dataset names sites, and flags outliers (robust z-score beyond ±3, metric by metric).
    """
    output_dir = Path(output_dir)
    units = cohort_units(output_dir, read_tsv(output_dir / COHORT_TABLE) if rows is None else rows)
    flagged = outliers(units)
    metrics = metric_names(units)
    parts = [
        ("summary", "Summary", _summary(units, flagged)),
        ("cohort", "Cohort", _cohort_table(output_dir, units, metrics, flagged)),
    ]
    if metrics:
        parts.append(
            ("distributions", "Metric distributions", _distributions(units, metrics, flagged))
        )
    if any(unit.site for unit in units) and metrics:
        parts.append(("sites", "Per site", _per_site(units, metrics)))
    parts.append(("outliers", "Outliers", _outlier_table(flagged)))
    html = page(
        "Group report",
        f"bids-synth · {len({u.key[0] for u in units})} participants, {len(units)} participant/sessions",
        [(anchor, title) for anchor, title, _ in parts],
        join(section(anchor, title, content) for anchor, title, content in parts),
    )
    return atomic_write_text(output_dir / REPORT, html)


def _summary(units: list[Unit], flagged: dict) -> Html:
    statuses = Counter(unit.row.get("status", "unknown") for unit in units)
    sites = Counter(unit.site for unit in units if unit.site)
    items = [join([badge(status), f" {count}   "]) for status, count in sorted(statuses.items())]
    line = [tag("p", join(["Status: ", *items]))]
    if sites:
        line.append(
            tag("p", "Sites: " + ", ".join(f"{site} ({n})" for site, n in sorted(sites.items())))
        )
    line.append(
        tag("p", f"{len(flagged)} outlying value(s) (|robust z| > {OUTLIER_Z:g}).", class_="muted")
    )
    return join(line)


def _cohort_table(output_dir: Path, units: list[Unit], metrics: list[str], flagged: dict) -> Html:
    site = ["Site"] if any(unit.site for unit in units) else []
    header = [
        "Participant",
        "Session",
        *site,
        "Status",
        "Inputs",
        *map(metric_title, metrics),
        "Message",
    ]
    body, classes = [], []
    for unit in units:
        participant, session = unit.key
        report = output_dir / f"{participant}.html"
        message = unit.row.get("message")
        body.append([
            tag("a", participant, href=f"../{report.name}") if report.is_file() else participant,
            session,
            *([unit.site] if site else []),
            badge(unit.row.get("status", "unknown")),
            unit.row.get("inputs"),
            *(_metric_cell(unit, metric, flagged) for metric in metrics),
            None if message in (None, "", "n/a") else message,
        ])  # fmt: skip
        classes.append("outlier" if any(label == unit.label for label, _ in flagged) else None)
    note = (
        "Highlighted rows hold an outlying value (bold, with its robust z-score). Participant "
        "names link to their subject reports."
    )
    return join([table(header, body, row_classes=classes), tag("p", note, class_="muted")])


def _metric_cell(unit: Unit, metric: str, flagged: dict):
    value = unit.metrics.get(metric)
    if value is None:
        return None
    text = f"{value:.4g}"
    z = flagged.get((unit.label, metric))
    return tag("b", f"{text} (z={z:+.1f})") if z is not None else text


def _distributions(units: list[Unit], metrics: list[str], flagged: dict) -> Html:
    points = {
        metric_title(metric): [
            (u.metrics[metric], u.label, (u.label, metric) in flagged)
            for u in units
            if metric in u.metrics
        ]
        for metric in metrics
    }
    return figure(
        charts.distributions(points),
        "Each point is a participant/session; boxes span the quartiles, whiskers 1.5 × IQR. Red "
        f"points are outliers (|robust z| > {OUTLIER_Z:g}, z = (x − median) / (1.4826 · MAD)). "
        "Registration NMI: normalised mutual information of the aligned image with the T1w.",
        alt="metric distributions",
    )


def _per_site(units: list[Unit], metrics: list[str]) -> Html:
    by_site = {}
    for metric in metrics:
        values = defaultdict(list)
        for unit in units:
            if metric in unit.metrics:
                values[unit.site or "unknown"].append(unit.metrics[metric])
        by_site[metric_title(metric)] = dict(values)
    caption = (
        "Metric values per acquisition site (the raw dataset's participants.tsv or sessions.tsv)."
    )
    return figure(charts.per_site(by_site), caption, alt="metrics per site")


def _outlier_table(flagged: dict) -> Html:
    if not flagged:
        return tag("p", "No outliers.", class_="muted")
    rows = [
        [label, metric_title(metric), f"{z:+.1f}"] for (label, metric), z in sorted(flagged.items())
    ]
    return table(["Participant/session", "Metric", "Robust z"], rows)


def metric_title(metric: str) -> str:
    """A readable name: ``registration_nmi_CT`` → ``registration NMI CT→T1w``."""
    if metric.startswith(COLUMN_PREFIX):
        return f"registration NMI {metric.removeprefix(COLUMN_PREFIX)}→T1w"
    return UNITS.get(metric, metric)
