"""The subject report: ``OUTPUT_DIR/sub-<label>.html``, every session of one participant."""

from __future__ import annotations

import logging
from pathlib import Path

from bids_synth.fileio import atomic_write_text
from bids_synth.reports.html import Html, join, page, section, tag
from bids_synth.reports.methods import methods_html
from bids_synth.reports.sections import Section, sections
from bids_synth.reports.session import SessionFiles, subject_sessions

LOG = logging.getLogger("bids_synth")

ORIENTATION = (
    "Views are reoriented to RAS and shown in the neurological convention: the subject's left "
    "is on the left of axial and coronal views, anterior is up in axial views and on the right of "
    "sagittal views, superior is up in coronal and sagittal views."
)


def write_subject_report(output_dir, subject: str, *, run_id: str | None = None) -> Path:
    """Write ``OUTPUT_DIR/sub-<subject>.html`` (self-contained) and return its path.

    Covers every session of the participant, each with its latest run outcome (or its outcome in
    ``run_id``). A section appears when its outputs exist; a section that cannot be drawn becomes
    a warning instead of failing the report.
    """
    output_dir = Path(output_dir)
    subject = subject.removeprefix("sub-")
    sessions = subject_sessions(output_dir, subject, run_id)
    nav, body = [], []
    for report_section in sections():
        content = _section_content(report_section, sessions)
        if content:
            nav.append((report_section.key, report_section.title))
            body.append(section(report_section.key, report_section.title, content))
    runs_methods = list(dict.fromkeys(s.methods for s in sessions if s.methods))
    if runs_methods:  # one text per run, however many sessions it processed
        nav.append(("methods", "Methods"))
        body.append(section("methods", "Methods", methods_html(runs_methods)))
    warnings = [(s, w) for s in sessions for w in s.warnings]
    nav.append(("warnings", "Warnings"))
    body.append(section("warnings", "Warnings", _warnings(warnings)))
    session_names = ", ".join(s.label for s in sessions if s.session)
    subtitle = "Subject report" + (f" · sessions {session_names}" if session_names else "")
    html = page(
        f"sub-{subject}", subtitle, nav, join([tag("p", ORIENTATION, class_="note"), *body])
    )
    return atomic_write_text(output_dir / f"sub-{subject}.html", html)


def _section_content(report_section: Section, sessions: list[SessionFiles]) -> Html | None:
    """The section's content of every session (headed by the session when there are several)."""
    parts = []
    for files in sessions:
        try:
            content = report_section.build(files)
        except Exception as exc:  # noqa: BLE001  a broken figure must not cost the whole report
            LOG.warning("%s: report section %r failed: %s", files.name, report_section.key, exc)
            files.warnings.append(f"section “{report_section.title}” could not be drawn: {exc}")
            continue
        if content:
            heading = tag("h3", files.label, class_="session") if files.session else ""
            parts.append(join([heading, content]))
    return join(parts) if parts else None


def _warnings(warnings: list[tuple[SessionFiles, str]]) -> Html:
    if not warnings:
        return tag("p", "No warnings.", class_="muted")
    return tag(
        "ul",
        join(tag("li", f"{files.label}: {text}") for files, text in warnings),
        class_="warnings",
    )
