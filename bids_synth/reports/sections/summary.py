"""Summary: what went in, what came out, and how the run ended."""

from __future__ import annotations

from bids_synth.reports.html import Html, badge, details, join, key_values, tag
from bids_synth.reports.sections import register
from bids_synth.reports.session import SessionFiles


@register("summary", "Summary", order=10)
def summary(files: SessionFiles) -> Html:
    outcome = files.outcome or {}
    inputs = outcome.get("inputs", {})
    outputs = outcome.get("outputs", [])
    missing = [path for path in outputs if not (files.output_dir / path).exists()]
    if missing:
        files.warnings.append(
            f"{len(missing)} output(s) listed by the run are missing, e.g. {missing[0]}"
        )
    if not outcome:
        files.warnings.append("no run record found: derivatives of an unknown run")
    elif outcome.get("message"):
        files.warnings.append(f"run record: {outcome['message']}")
    runtime = outcome.get("runtime_s")
    rows = [
        ("Status", badge(outcome.get("status", "unknown"))),
        ("Run", outcome.get("run_id")),
        ("Inputs", _inputs(inputs) if inputs else None),
        ("Derivatives", f"{len(outputs)} files" + (f", {len(missing)} missing" if missing else "")),
        ("Processing time", f"{runtime:.1f} s" if isinstance(runtime, (int, float)) else None),
    ]
    if outcome.get("message"):
        rows.append(("Message", outcome["message"]))
    listing = details("List of derivative files", tag("pre", "\n".join(outputs))) if outputs else ""
    return join([key_values(rows), listing])


def _inputs(inputs: dict[str, str]) -> Html:
    """One line per input image: its suffix and its path in the raw dataset."""
    return join(
        tag("div", join([tag("b", f"{suffix} "), tag("code", path)]))
        for suffix, path in sorted(inputs.items())
    )
