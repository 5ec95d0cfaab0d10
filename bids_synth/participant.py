"""Participant level: discover inputs, check them, build and run the workflow, record outcomes."""

from __future__ import annotations

import logging
import re
import time
from contextlib import nullcontext
from pathlib import Path

from bids_synth.bids import (
    SessionInputs,
    collect_sessions,
    load_layout,
    read_sidecar,
    select_subjects,
)
from bids_synth.boilerplate import write_boilerplate
from bids_synth.config import Config
from bids_synth.derivatives import DESCRIPTIONS, write_dataset_files
from bids_synth.errors import (
    BidsSynthError,
    Interrupted,
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
from bids_synth.reports.mosaics import mosaics_kept_in
from bids_synth.runlog import UnitOutcome, write_run_log
from bids_synth.workflows.base import init_bids_synth_wf, record_path
from bids_synth.workflows.synthesis import registered_tasks
from bids_synth.worklock import work_folder_lock

LOG = logging.getLogger("bids_synth")
_FAILED_NODE = re.compile(r"^node (\w+)_wf\.")


def run_participants(config: Config) -> int:
    """Process every selected participant/session; return the exit code."""
    execution = config.execution
    started = time.time()
    units = discover_units(config)
    tasks = registered_tasks()
    valid, outcomes = check_inputs(
        units, sidecars=any(tasks[name].reads_sidecars for name in config.workflow.tasks)
    )
    if not valid:
        raise InvalidImageError("; ".join(f"{o.name}: {o.message}" for o in outcomes))
    for outcome in outcomes:
        LOG.error("%s: %s: skipped", outcome.name, outcome.message)
    # the boilerplate is written to the output folder only: it may run beside a run of the folder
    lock = (
        nullcontext()
        if execution.boilerplate_only
        else work_folder_lock(execution.work_dir, run_id=execution.run_id)
    )
    with lock:
        return process_units(config, valid, outcomes, started)


def process_units(
    config: Config, valid: list[SessionInputs], outcomes: list, started: float
) -> int:
    """Build and run the workflow of the checked units, record and report their outcomes."""
    execution = config.execution
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
    try:
        run_workflow(workflow, config)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM as Interrupted
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        outcomes += [_outcome(config, unit) for unit in valid]
        for outcome in outcomes:
            if outcome.status == "pending":
                outcome.status = "interrupted"
                outcome.message = "the run was stopped first; the same command resumes it"
        write_run_log(execution.output_dir, execution.run_id, outcomes, started=started)
        finished = sum(outcome.status == "success" for outcome in outcomes)
        stop.detail = (
            f": workers stopped; {finished} of {len(valid)} participant/session(s) finished and "
            "kept; the same command resumes the rest"
        )
        raise stop from None

    failures = unit_failures(Path(execution.work_dir) / "crash" / execution.run_id)
    for unit in valid:
        outcome = _outcome(config, unit)
        if outcome.status == "success":
            if outcome.removed:
                LOG.warning("%s: %s", unit.name, removed_message(outcome.removed))
        else:
            outcome.status = "failed"
            messages = failures.get(unit.name) or ["processing did not finish (see the log)"]
            outcome.message = messages[0]
            failed = failed_tasks(messages, config.workflow.tasks)
            if failed:
                outcome.failed_task = failed[0]
                outcome.message += rerun_hint(failed, config.workflow.tasks)
            LOG.error("%s: %s", unit.name, outcome.message)
        outcomes.append(outcome)
    write_run_log(execution.output_dir, execution.run_id, outcomes, started=started)
    with mosaics_kept_in(Path(execution.work_dir) / "reports"):
        for subject in sorted({unit.subject for unit in valid}):
            write_subject_report(execution.output_dir, subject)
    return exit_code(outcomes)


def _outcome(config: Config, unit: SessionInputs) -> UnitOutcome:
    """The outcome of ``unit`` in this run so far: a success once its record is written."""
    execution = config.execution
    outcome = UnitOutcome.from_unit(unit, execution.bids_dir)
    outcome.runtime_s = unit_runtime(Path(execution.work_dir), unit)
    record = record_path(execution.output_dir, unit, execution.run_id)
    if record.exists():
        outcome.mark_success(record)
    return outcome


def removed_message(removed: list[str]) -> str:
    """One line naming the stale derivatives a commit removed (files of the record's
    ``removed``, one name per image or transform with its sidecar)."""
    names = list(dict.fromkeys(Path(path).name.split(".", 1)[0] for path in removed))
    return (
        f"removed {len(names)} derivative(s) of an earlier run made from inputs that have "
        f"changed since (with their sidecars): {', '.join(names)}"
    )


def failed_tasks(messages: list[str], tasks) -> list[str]:
    """The tasks whose nodes failed, in order, from the failure messages of
    :func:`unit_failures`."""
    matches = (_FAILED_NODE.match(message) for message in messages)
    names = [match.group(1) for match in matches if match and match.group(1) in tasks]
    return list(dict.fromkeys(names))


def rerun_hint(failed: list[str], tasks) -> str:
    """What a participant whose ``failed`` tasks failed gets: nothing published, and how to get
    the rest.

    A participant/session's derivatives are published all together (never a partial set); a
    rerun without the failing tasks reuses every finished node from the work folder.
    """
    others = [name for name in tasks if name not in failed]
    rerun = f"--tasks {' '.join(others)}" if others else f"no --tasks {' '.join(failed)}"
    which = f"task {failed[0]}" if len(failed) == 1 else f"tasks {', '.join(failed)}"
    return (
        f"; {which} failed, so none of this participant's derivatives were published: "
        f"rerun with {rerun} to publish the others, reusing every finished step"
    )


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
        sessions = sorted(layout.get_sessions(subject=subject))
        if execution.session_label:
            sessions = [session for session in sessions if session in execution.session_label]
        without = [
            f"sub-{subject}_ses-{s}" for s in sessions if s not in {u.session for u in found}
        ]
        if not found and not sessions:
            without = [f"sub-{subject}"]
        for name in without:
            LOG.warning("%s: no T1w image found (or none matches the filters): skipped", name)
        for unit in found:
            if unit.ignored_t1w:
                LOG.warning(
                    "%s: %d T1w images, using %s",
                    unit.name,
                    1 + len(unit.ignored_t1w),
                    Path(unit.t1w).name,
                )
        units += found
    if not units:
        raise NothingToProcessError("no selected participant has a T1w image to process")
    return units


def check_inputs(
    units: list[SessionInputs], *, sidecars: bool = False
) -> tuple[list[SessionInputs], list]:
    """Split units into usable ones and the outcomes of those with an invalid image (or, with
    ``sidecars``, an unusable sidecar)."""
    valid, outcomes = [], []
    for unit in units:
        try:
            if unit.problem:
                raise InvalidImageError(unit.problem)
            for suffix, path in unit.all_inputs.items():
                load_image(path, what=f"{suffix} image")
                if sidecars:
                    read_sidecar(path)
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
    for error in (OutputError, ModelBundleError, InvalidImageError):
        if failed and all(failed_with(message, error) for message in failed):
            return error.exit_code  # one cause behind every failure, e.g. a full disk
    if "failed" in statuses:
        return ProcessingError.exit_code
    if "invalid-input" in statuses:
        return InvalidImageError.exit_code
    return 0
