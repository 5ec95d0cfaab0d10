"""``bids-synth BIDS_DIR OUTPUT_DIR participant|group``: settings, checks, and the run itself."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

from bids_synth.cli import guarded, setup_logging
from bids_synth.cli.parser import build_parser
from bids_synth.config import Config, default_omp_nthreads
from bids_synth.errors import InputDatasetError, OutputError, UsageError


@guarded
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    config = build_config(args)
    if config.execution.reports_only:
        from bids_synth.reports.rebuild import rebuild_reports

        return rebuild_reports(config)
    if config.execution.analysis_level == "group":
        from bids_synth.group import run_group

        return run_group(config)
    from bids_synth.participant import run_participants

    return run_participants(config)


def build_config(args) -> Config:
    """Defaults, then ``--config-file``, then the options given on the command line."""
    from bids_synth.bids import normalise_labels, validate_filters

    config = Config.from_toml(args.config_file) if args.config_file else Config()
    execution, nipype, workflow = config.execution, config.nipype, config.workflow
    execution.bids_dir = str(args.bids_dir.resolve())
    execution.output_dir = str(args.output_dir.resolve())
    execution.analysis_level = args.analysis_level
    execution.verbosity = args.verbose
    execution.run_id = new_run_id()
    if args.work_dir:
        execution.work_dir = str(args.work_dir)
    execution.work_dir = str(Path(execution.work_dir or Path.cwd() / "work").resolve())
    if args.participant_label:
        execution.participant_label = args.participant_label
    if args.session_label:
        execution.session_label = args.session_label
    execution.participant_label = normalise_labels(execution.participant_label, prefix="sub-")
    execution.session_label = normalise_labels(execution.session_label, prefix="ses-")
    if args.bids_filter_file:
        execution.bids_filters = read_filter_file(args.bids_filter_file)
    validate_filters(execution.bids_filters)
    for name in (
        "skip_bids_validation",
        "boilerplate_only",
        "reports_only",
        "write_graph",
        "stop_on_first_crash",
    ):
        if getattr(args, name) is not None:
            setattr(execution, name, getattr(args, name))

    if execution.boilerplate_only and execution.reports_only:
        raise UsageError("--boilerplate-only and --reports-only exclude each other")
    if args.use_plugin:
        nipype.plugin, nipype.plugin_args = read_plugin_file(args.use_plugin)
    for name in ("nprocs", "omp_nthreads", "mem_gb"):
        if getattr(args, name) is not None:
            setattr(nipype, name, getattr(args, name))
    nipype.nprocs = nipype.nprocs or os.cpu_count() or 1
    nipype.omp_nthreads = nipype.omp_nthreads or default_omp_nthreads(nipype.nprocs)

    if args.tasks is not None:
        workflow.tasks = args.tasks
    read_task_options(config, args)
    for name in ("coreg_transform", "brain_mask_method", "device"):
        if getattr(args, name) is not None:
            setattr(workflow, name, getattr(args, name))
    if args.random_seed is not None:
        config.seeds.random_seed = args.random_seed
    check_device(config)
    check_paths(config)
    return config


def check_device(config: Config) -> None:
    """Refuse a device that is invalid or not there now, not after the preprocessing."""
    from bids_synth.nn.devices import resolve_device

    try:
        resolve_device(config.workflow.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def read_task_options(config: Config, args) -> None:
    """Check the chosen tasks exist and the configuration's task options, and merge each task's
    command-line options."""
    from bids_synth.workflows.synthesis import check_task_options, registered_tasks, task_options

    tasks = registered_tasks()
    check_task_options(config.workflow.task_options, source="configuration")
    unavailable = sorted(set(config.workflow.tasks) - set(tasks))
    if unavailable:
        raise UsageError(
            f"task(s) not available in this version: {', '.join(unavailable)} "
            f"(available: {', '.join(tasks) or 'none yet; preprocessing only'})"
        )
    for name, task in tasks.items():
        options = {**config.workflow.task_options.get(name, {}), **task_options(task, args)}
        if options:
            config.workflow.task_options[name] = options


def new_run_id() -> str:
    """Sortable, unique run identifier: UTC time plus a random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4().hex[:8]}"


def read_filter_file(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise InputDatasetError(f"BIDS filter file {path} not found") from exc
    except OSError as exc:
        raise InputDatasetError(f"BIDS filter file {path} cannot be read: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDatasetError(f"BIDS filter file {path} is not valid JSON: {exc}") from exc


def read_plugin_file(path: Path) -> tuple[str, dict]:
    """A nipype plugin YAML: ``plugin: MultiProc`` and optional ``plugin_args: {...}``."""
    try:
        settings = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"plugin file {path} not found") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"plugin file {path} is not valid YAML: {exc}") from exc
    if not isinstance(settings, dict) or not isinstance(settings.get("plugin"), str):
        raise UsageError(f"plugin file {path} must name a nipype plugin ('plugin: MultiProc')")
    plugin_args = settings.get("plugin_args") or {}
    if not isinstance(plugin_args, dict):
        raise UsageError(f"plugin file {path}: plugin_args must be a mapping")
    import nipype.pipeline.plugins as nipype_plugins

    if not hasattr(nipype_plugins, f"{settings['plugin']}Plugin"):
        raise UsageError(f"plugin file {path}: nipype has no plugin {settings['plugin']!r}")
    return settings["plugin"], plugin_args


def check_paths(config: Config) -> None:
    """Refuse output or work folders inside the input dataset (a symbolic link in the output
    folder into it included), or that cannot be written."""
    from bids_synth.fileio import links_into

    execution = config.execution
    bids_dir = Path(execution.bids_dir)
    folders = [("output", execution.output_dir)]
    if execution.analysis_level == "participant":
        folders.append(("work", execution.work_dir))
    for label, folder in folders:
        path = Path(folder)
        if path == bids_dir or bids_dir in path.parents:
            raise OutputError(
                f"the {label} folder {path} is the BIDS folder or inside it: choose another place"
            )
        check_writable(path, label)
    links = (
        links_into(execution.output_dir, bids_dir) if Path(execution.output_dir).is_dir() else []
    )
    if links:
        raise OutputError(
            f"the output folder holds a symbolic link into the BIDS folder ({links[0]} -> "
            f"{links[0].resolve()}): derivatives would be written into the input; remove it"
        )


def check_writable(path: Path, label: str) -> None:
    """:class:`OutputError` unless ``path`` is (or can be created as) a writable folder."""
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise OutputError(f"the {label} folder {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"the {label} folder {path} is not writable "
            "(permission denied or read-only file system)"
        )
