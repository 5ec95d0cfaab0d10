"""Run records: what each run did for each participant/session (``OUTPUT/logs/<run_id>.json``).

Each process writes its own record, so concurrent runs into one output folder never share a file;
the group level reads them all and keeps the latest outcome of each participant/session.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bids_synth import __version__
from bids_synth.bids import SessionInputs
from bids_synth.fileio import atomic_write_json


@dataclass
class UnitOutcome:
    participant_id: str
    session_id: str | None
    inputs: dict[str, str] = field(default_factory=dict)  # suffix -> path relative to the dataset
    status: str = "pending"  # success | failed | invalid-input | interrupted
    message: str = ""
    failed_task: str | None = None  # the synthesis task whose failure stopped the publication
    outputs: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # stale derivatives of earlier runs
    runtime_s: float | None = None

    @classmethod
    def from_unit(cls, unit: SessionInputs, raw_root: str) -> UnitOutcome:
        def relative(path: str) -> str:
            return os.path.relpath(path, raw_root) if raw_root else Path(path).name

        return cls(
            participant_id=f"sub-{unit.subject}",
            session_id=f"ses-{unit.session}" if unit.session else None,
            inputs={suffix: relative(path) for suffix, path in unit.all_inputs.items()},
        )

    @property
    def name(self) -> str:
        return self.participant_id + (f"_{self.session_id}" if self.session_id else "")

    def mark_success(self, record: Path) -> None:
        content = json.loads(record.read_text())
        self.status = "success"
        self.outputs, self.removed = content["outputs"], content["removed"]


def write_run_log(output_dir: str, run_id: str, outcomes: list[UnitOutcome], *, started: float):
    atomic_write_json(
        Path(output_dir) / "logs" / f"{run_id}.json",
        {
            "run_id": run_id,
            "software_version": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_time_s": round(time.time() - started, 1),
            "units": [asdict(outcome) for outcome in outcomes],
        },
    )


def latest_outcomes(output_dir: str | Path) -> list[dict]:
    """The most recent outcome of every participant/session found in the run records (an
    interrupted run's only where no earlier run has one)."""
    latest: dict[tuple, dict] = {}
    for path in sorted((Path(output_dir) / "logs").glob("*.json")):  # run ids sort by time
        record = json.loads(path.read_text())
        for unit in record.get("units", []):
            key = (unit["participant_id"], unit["session_id"])
            if unit["status"] == "interrupted" and key in latest:
                continue  # a stopped rerun leaves the earlier outcome standing
            latest[key] = {
                **unit,
                "run_id": record["run_id"],
            }
    return [latest[key] for key in sorted(latest, key=lambda k: (k[0], k[1] or ""))]
