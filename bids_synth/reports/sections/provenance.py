"""Provenance: software, models with their sha256, devices, runtimes per node, the run's config."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bids_synth.reports.html import Html, details, join, key_values, table, tag
from bids_synth.reports.sections import register
from bids_synth.reports.session import SessionFiles
from bids_synth.reports.sidecars import lookup, model_fields, sidecar_warnings

COLUMNS = ("Method", "Model", "sha256", "Device", "Runtime")
#: the runtime line of nipype's ``_report/report.rst`` in each node folder
_DURATION = re.compile(r"^\* duration : ([0-9.eE+-]+)$", re.MULTILINE)


@register("provenance", "Provenance", order=90)
def provenance(files: SessionFiles) -> Html | None:
    if not files.files and not files.outcome:
        return None
    parts = [key_values(_software(files)), tag("h4", "Derivatives"), _outputs_table(files)]
    runtimes = node_runtimes(files)
    if runtimes:
        summary = (
            f"Runtime per node ({len(runtimes)} nodes, {sum(runtimes.values()):.1f} s in total; "
            "nodes reused from the cache count their first run)"
        )
        rows = [[tag("code", node), f"{seconds:.2f}"] for node, seconds in runtimes.items()]
        parts.append(details(summary, table(["Node", "Seconds"], rows)))
    if files.config_toml:
        summary = f"Configuration of run {files.run_id} (config.toml)"
        parts.append(details(summary, tag("pre", files.config_toml)))
    return join(parts)


def _software(files: SessionFiles) -> list[tuple]:
    record = _run_record(files)
    generated = _generated_by(files.output_dir)
    version = record.get("software_version") or generated.get("Version", "")
    container = lookup(generated, "Container") or {}
    container_name = f"{container.get('Type', '')} {container.get('Tag', '')}".strip()
    pairs = [
        ("Software", f"{generated.get('Name', 'bids-synth')} {version}"),
        ("Container", container_name or "none (local install)"),
        ("Run", files.run_id),
        ("Started (UTC)", record.get("started")),
        ("Run wall time", f"{record['wall_time_s']:.1f} s" if "wall_time_s" in record else None),
    ]
    return [(label, value) for label, value in pairs if value]


def _outputs_table(files: SessionFiles) -> Html:
    """One row per sidecar: method, model, weights' sha256, device, runtime; its warnings noted."""
    rows = []
    for sidecar_file in files.select(extension=".json"):
        sidecar = files.sidecar(sidecar_file.path)
        files.warnings += [f"{sidecar_file.name}: {w}" for w in sidecar_warnings(sidecar)]
        fields = dict(model_fields(sidecar))
        name = tag("code", sidecar_file.name.removesuffix(".json"))
        rows.append([name, *(fields.get(column) for column in COLUMNS)])
    if not rows:
        return tag("p", "No sidecars found.", class_="muted")
    return table(["File", *COLUMNS], rows)


def node_runtimes(files: SessionFiles) -> dict[str, float]:
    """Seconds per nipype node of the session, read from the node reports left in the work folder."""
    work_dir = files.work_dir
    from bids_synth.workflows import unit_work_folder

    folder = unit_work_folder(work_dir, files.subject, files.session) if work_dir else None
    if folder is None or not folder.is_dir():
        return {}
    runtimes = {}
    for report in sorted(folder.rglob("_report/report.rst")):
        duration = _DURATION.search(report.read_text(errors="replace"))
        if duration:
            node = report.parent.parent.relative_to(folder).as_posix().replace("/", ".")
            runtimes[node] = float(duration.group(1))
    return runtimes


def _run_record(files: SessionFiles) -> dict:
    path = files.output_dir / "logs" / f"{files.run_id}.json"
    try:
        return json.loads(path.read_text()) if files.run_id else {}
    except (OSError, ValueError):
        return {}


def _generated_by(output_dir: Path) -> dict:
    try:
        description = json.loads((output_dir / "dataset_description.json").read_text())
        return (description.get("GeneratedBy") or [{}])[0]
    except (OSError, ValueError):
        return {}
