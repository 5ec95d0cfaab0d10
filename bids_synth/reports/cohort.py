"""Cohort data of the group report: the cohort table, sites, evaluation metrics, outliers."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bids_synth.evaluation import ID_COLUMNS, TSV_NAME
from bids_synth.reports.quality import COLUMN_PREFIX, registration_metrics
from bids_synth.reports.session import Derivative, raw_dataset

OUTLIER_Z = 3.0
NOT_METRICS = ("participant_id", "session_id", "status", "inputs", "n_outputs", "run_id", "message")
EVALUATION_TABLE = Path("evaluation") / TSV_NAME


@dataclass
class Unit:
    """One participant/session of the cohort: its cohort-table row, site and metric values."""

    row: dict
    site: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str | None]:
        session = self.row.get("session_id")
        return (self.row["participant_id"], None if session in (None, "", "n/a") else session)

    @property
    def label(self) -> str:
        participant, session = self.key
        return participant + (f"_{session}" if session else "")


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def cohort_units(output_dir: Path, rows: list[dict]) -> list[Unit]:
    """Units with their numeric columns, registration quality (computed for successful units when
    the table lacks it), evaluation metrics and site."""
    units = [Unit(dict(row)) for row in rows]
    with_registration = any(key.startswith(COLUMN_PREFIX) for row in rows for key in row)
    sites = participant_sites(output_dir)
    evaluation = evaluation_metrics(output_dir)
    for unit in units:
        values = {key: value for key, value in unit.row.items() if key not in NOT_METRICS}
        if not with_registration and unit.row.get("status") == "success":
            values |= registration_metrics(output_dir, *unit.key)
        values |= evaluation.get(unit.key, {})
        unit.metrics = {
            key: number for key, value in values.items() if (number := _number(value)) is not None
        }
        unit.site = sites.get(unit.key) or sites.get((unit.key[0], None))
    return units


def participant_sites(output_dir: Path) -> dict[tuple[str, str | None], str]:
    """``{(participant, session or None): site}`` from the raw dataset's ``participants.tsv`` and
    ``sub-*/sub-*_sessions.tsv`` (``site`` column; a session's site wins)."""
    raw = raw_dataset(output_dir)
    if raw is None:
        return {}
    sites = {}
    if (raw / "participants.tsv").is_file():
        for row in read_tsv(raw / "participants.tsv"):
            if row.get("site") not in (None, "", "n/a"):
                sites[(row["participant_id"], None)] = row["site"]
    for table in sorted(raw.glob("sub-*/sub-*_sessions.tsv")):
        participant = table.parent.name
        for row in read_tsv(table):
            if row.get("site") not in (None, "", "n/a"):
                sites[(participant, row["session_id"])] = row["site"]
    return sites


def evaluation_metrics(output_dir: Path) -> dict[tuple[str, str | None], dict[str, float]]:
    """``{(participant, session): {"<task> <suffix> <metric>": value}}`` from the evaluation table."""
    path = output_dir / EVALUATION_TABLE
    if not path.is_file():
        return {}
    found: dict[tuple[str, str | None], dict[str, float]] = {}
    for row in read_tsv(path):
        session = row.get("session")
        key = (f"sub-{row['subject']}", None if session in (None, "", "n/a") else f"ses-{session}")
        suffix = Derivative.parse(Path(row["prediction"])).suffix
        for column, value in row.items():
            if column not in ID_COLUMNS and (number := _number(value)) is not None:
                found.setdefault(key, {})[f"{row['task']} {suffix} {column}"] = number
    return found


def robust_z(values: list[float]) -> np.ndarray:
    """z = (x − median) / (1.4826·MAD), the MAD-based z-score (0 everywhere when MAD = 0)."""
    x = np.asarray(values, dtype=float)
    mad = np.median(np.abs(x - np.median(x)))
    return np.zeros_like(x) if mad == 0 else (x - np.median(x)) / (1.4826 * mad)


def outliers(units: list[Unit]) -> dict[tuple[str, str], float]:
    """``{(unit label, metric): robust z}`` for every |z| > :data:`OUTLIER_Z`, metric by metric."""
    flagged = {}
    for metric in metric_names(units):
        having = [unit for unit in units if metric in unit.metrics]
        for unit, z in zip(having, robust_z([unit.metrics[metric] for unit in having])):
            if abs(z) > OUTLIER_Z:
                flagged[(unit.label, metric)] = float(z)
    return flagged


def metric_names(units: list[Unit]) -> list[str]:
    return list(dict.fromkeys(metric for unit in units for metric in unit.metrics))


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
