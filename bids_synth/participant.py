"""Participant level: discover inputs, check them, build and run the workflow, record outcomes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bids_synth.bids import SessionInputs, collect_sessions, load_layout, select_subjects
from bids_synth.boilerplate import write_boilerplate
from bids_synth.config import Config
from bids_synth.derivatives import DESCRIPTIONS, write_dataset_files
from bids_synth.errors import (
    BidsSynthError,
    InvalidImageError,
    ModelBundleError,
    NothingToProcessError,
    OutputError,
    ProcessingError,
)
from bids_synth.execution import (
    configure_nipype,
    failed_with,
    run_workflow,
    unit_failures,
    unit_runtime,
)
from bids_synth.fileio import atomic_write_text, load_image
from bids_synth.reports import write_subject_report
from bids_synth.runlog import UnitOutcome, write_run_log
from bids_synth.workflows.base import init_bids_synth_wf, record_path
from bids_synth.workflows.synthesis import registered_tasks

LOG = logging.getLogger("bids_synth")


def run_participants(config: Config) -> int:
    """Process every selected participant/session; return the exit code."""
    execution = config.execution
    started = time.time()
    units = discover_units(config)
    valid, outcomes = check_inputs(units)
    if not valid:
        raise InvalidImageError("; ".join(f"{o.name}: {o.message}" for o in outcomes))
    for outcome in outcomes:
        LOG.error("%s: %s: skipped", outcome.name, outcome.message)

    configure_nipype(config)  # before building: workflows copy nipype's settings when created
    workflow = init_bids_synth_wf(config, valid)
    verify_model_bundles(workflow)  # nothing is written before the workflow is known to be usable
    methods = write_boilerplate(workflow, execution.output_dir, seed=config.seeds.random_seed)
    if execution.boilerplate_only:
        LOG.info("methods boilerplate written to %s/logs/CITATION.md", execution.output_dir)
        return 0

    descriptions = dict(DESCRIPTIONS)
    for name in config.workflow.tasks:
        descriptions.update(registered_tasks()[name].descriptions)
    write_dataset_files(
        execution.output_dir, raw_root=execution.bids_dir, descriptions=descriptions
    )
    for subject in sorted({unit.subject for unit in valid}):
        log_dir = Path(execution.output_dir) / f"sub-{subject}" / "log" / execution.run_id
        atomic_write_text(log_dir / "config.toml", config.to_toml())
        atomic_write_text(log_dir / "CITATION.md", methods)
    LOG.info(
        "running %d participant/session(s) with the %s plugin", len(valid), config.nipype.plugin
    )
    run_workflow(workflow, config)

    failures = unit_failures(Path(execution.work_dir) / "crash" / execution.run_id)
    for unit in valid:
        record = record_path(execution.output_dir, unit, execution.run_id)
        outcome = UnitOutcome.from_unit(unit, execution.bids_dir)
        outcome.runtime_s = unit_runtime(Path(execution.work_dir), unit)
        if record.exists():
            outcome.mark_success(record)
        else:
            outcome.status = "failed"
            outcome.message = failures.get(unit.name, "processing did not finish (see the log)")
            LOG.error("%s: %s", unit.name, outcome.message)
        outcomes.append(outcome)
    write_run_log(execution.output_dir, execution.run_id, outcomes, started=started)
    for subject in sorted({unit.subject for unit in valid}):
        write_subject_report(execution.output_dir, subject)
    return exit_code(outcomes)


def discover_units(config: Config) -> list[SessionInputs]:
    """All participant/sessions to process, through pybids; participants without a T1w skipped."""
    execution = config.execution
    layout = load_layout(
        execution.bids_dir,
        validate=not execution.skip_bids_validation,
        participants=execution.participant_label,
    )
    unknown = sorted(set(execution.session_label) - set(layout.get_sessions()))
    if unknown:
        raise NothingToProcessError(
            "session label(s) not found in the dataset: "
            + ", ".join(f"ses-{label}" for label in unknown)
        )
    units = []
    for subject in select_subjects(layout, execution.participant_label):
        found = collect_sessions(
            layout, subject, sessions=execution.session_label, filters=execution.bids_filters
        )
        if not found:
            LOG.warning(
                "sub-%s: no T1w image found (or none matches the filters): skipped", subject
            )
        for unit in found:
            if unit.ignored_t1w:
                LOG.info(
                    "%s: %d T1w images, using %s",
                    unit.name,
                    1 + len(unit.ignored_t1w),
                    Path(unit.t1w).name,
                )
        units += found
    if not units:
        raise NothingToProcessError("no selected participant has a T1w image to process")
    return units


def check_inputs(units: list[SessionInputs]) -> tuple[list[SessionInputs], list]:
    """Split units into usable ones and the outcomes of those with an invalid image."""
    valid, outcomes = [], []
    for unit in units:
        try:
            for suffix, path in unit.all_inputs.items():
                load_image(path, what=f"{suffix} image")
        except BidsSynthError as exc:
            outcome = UnitOutcome.from_unit(unit, "")
            outcome.status, outcome.message = "invalid-input", str(exc)
            outcomes.append(outcome)
            continue
        valid.append(unit)
    return valid, outcomes


def verify_model_bundles(workflow) -> None:
    """Check the weights of every model bundle a node will load (its ``bundle`` input), once.

    A tampered or unreadable bundle then ends the run with one line (exit 7) before any
    processing, instead of failing every participant after its preprocessing.
    """
    from bids_synth.models import Bundle

    folders = set()
    for name in workflow.list_node_names():
        folder = getattr(workflow.get_node(name).inputs, "bundle", None)
        if isinstance(folder, str) and folder:
            folders.add(folder)
    for folder in sorted(folders):
        Bundle.read(folder).verify()


def exit_code(outcomes) -> int:
    statuses = {outcome.status for outcome in outcomes}
    failed = [outcome.message for outcome in outcomes if outcome.status == "failed"]
    for error in (OutputError, ModelBundleError):  # one cause behind every failure: its code
        if failed and all(failed_with(message, error) for message in failed):
            return error.exit_code  # e.g. the disk filled up while publishing derivatives
    if "failed" in statuses:
        return ProcessingError.exit_code
    if "invalid-input" in statuses:
        return InvalidImageError.exit_code
    return 0
