"""Running a workflow with nipype's own engine and plugins, and reading back what happened."""

from __future__ import annotations

import contextlib
import errno
import gc
import getpass
import logging
import math
import multiprocessing
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nipype import config as nipype_config
from nipype import logging as nipype_logging
from nipype.pipeline.plugins.multiproc import process_initializer
from nipype.utils.filemanip import loadpkl

from bids_synth.bids import SessionInputs
from bids_synth.config import Config
from bids_synth.errors import OutputError
from bids_synth.fileio import atomic_write_text, output_error
from bids_synth.logs import route_nipype_log
from bids_synth.workflows import WORKFLOW_NAME, unit_work_folder

LOG = logging.getLogger("bids_synth")
_CRASH_NODE = re.compile(r"^Node: (\S+)", re.MULTILINE)
_ERROR_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception)\b.*:")
#: a node's OSError for a full disk (ENOSPC), exceeded quota (EDQUOT) or file size limit (EFBIG)
_STORAGE_ERROR = re.compile(rf"\[Errno ({errno.ENOSPC}|{errno.EDQUOT}|{errno.EFBIG})\]")
_UNIT_PATH = re.compile(rf"{WORKFLOW_NAME}\.sub_(\w+?)_wf\.(?:ses_(\w+)_wf|anat_wf)\.")
#: nipype plugins that submit each node as a Slurm job
SLURM_PLUGINS = ("SLURM", "SLURMGraph")
#: how often to ask Slurm whether the jobs of a SLURMGraph submission are still queued
SLURM_GRAPH_POLL_S = 1.0


def configure_nipype(config: Config) -> None:
    """Crash files inside the work folder, content hashing for safe resumes, fast polling;
    nipype's log on stderr at -v (INFO) and -vv (DEBUG)."""
    execution = config.execution
    work_dir = Path(execution.work_dir)
    nipype_config.update_config({
        "execution": {
            "crashdump_dir": str(work_dir / "crash" / execution.run_id),
            "crashfile_format": "txt",
            "hash_method": "content",
            "poll_sleep_duration": 0.1,
            "remove_unnecessary_outputs": False,
            "stop_on_first_crash": execution.stop_on_first_crash,
            "check_version": False,
        },
        "logging": {"log_directory": str(work_dir / "logs"), "log_to_file": False},
        "monitoring": {"enabled": False},
    })  # fmt: skip
    # failures are reported by bids-synth in one line each; nipype's own log is for -v and -vv
    level = {0: "CRITICAL", 1: "INFO"}.get(execution.verbosity, "DEBUG")
    nipype_config.set("logging", "workflow_level", level)
    nipype_config.set("logging", "interface_level", level)
    nipype_config.set("logging", "utils_level", level)
    nipype_logging.update_logging(nipype_config)
    route_nipype_log()
    # worker processes start fresh (forkserver) and read their log levels from this file
    config_dir = work_dir / "nipype"
    atomic_write_text(
        config_dir / "nipype.cfg",
        "[logging]\n"
        + "".join(f"{k}_level = {level}\n" for k in ("workflow", "interface", "utils")),
    )
    os.environ["NIPYPE_CONFIG_DIR"] = str(config_dir)


def _start_worker(cwd: str) -> None:
    """A MultiProc worker: nipype's own set-up, and its log as in the main process."""
    process_initializer(cwd)
    route_nipype_log()


def plugin_settings(config: Config) -> tuple[str, dict]:
    """The plugin and its arguments: the preset's, completed from the resource options."""
    settings = config.nipype
    args = dict(settings.plugin_args)
    if settings.plugin == "MultiProc":
        args.setdefault("n_procs", settings.nprocs)
        if settings.mem_gb:
            args.setdefault("memory_gb", settings.mem_gb)
        args.setdefault("raise_insufficient", False)
        # fresh workers: a forked copy of a process whose torch/OpenMP threads already ran
        # (the demo simulates its dataset first) can deadlock in the worker
        args.setdefault("mp_context", "forkserver")
    if settings.plugin in SLURM_PLUGINS:
        args["sbatch_args"] = str(args.get("sbatch_args") or "").strip()
        if settings.plugin == "SLURMGraph":
            # tag the jobs so that bids-synth can wait for them; drop jobs whose upstream failed
            tag = f"--comment=bids-synth:{config.execution.run_id} --kill-on-invalid-dep=yes"
            args["sbatch_args"] = f"{args['sbatch_args']} {tag}".strip()
    return settings.plugin, args


def run_workflow(workflow, config: Config) -> None:
    """Run ``workflow`` (built after :func:`configure_nipype`); failures are read back later."""
    if config.execution.write_graph:
        write_graph(workflow)
    plugin, plugin_args = plugin_settings(config)
    # ITK reads its thread count once per process, at its first use: set it before nipype starts
    # its worker processes (or Slurm jobs, which inherit this environment), so that every ITK
    # step uses --omp-nthreads whichever node a worker ran first (N4's result depends on it).
    environment = {"ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(config.nipype.omp_nthreads)}
    if plugin in SLURM_PLUGINS:
        environment.setdefault("LOGNAME", os.environ.get("LOGNAME") or _user_name())  # job names
        request_slurm_resources(workflow)
    import nipype.pipeline.plugins as nipype_plugins

    with _environment(environment):
        runner = getattr(nipype_plugins, f"{plugin}Plugin")(plugin_args=plugin_args)
        if plugin == "MultiProc":  # its workers' initializer, not nipype's: see _start_worker
            runner.pool.shutdown()  # no worker started yet
            runner.pool = ProcessPoolExecutor(
                max_workers=runner.processors,
                initializer=_start_worker,
                initargs=(os.getcwd(),),
                mp_context=multiprocessing.get_context(plugin_args["mp_context"]),
            )
        # MultiProc collects garbage before it submits each batch of jobs: with what is alive
        # now left out (the layout, the workflow graph, imported modules), that costs
        # milliseconds instead of a tenth of a second per call
        gc.freeze()
        try:
            workflow.run(plugin=runner)
        except RuntimeError as exc:
            LOG.debug("nipype: %s", exc)
        except KeyboardInterrupt:  # SIGINT or SIGTERM: no worker may write on after we exit
            stop_child_processes()
            raise
        except OSError as exc:  # nipype's own files in the work folder (disk full, ulimit -f)
            raise output_error(exc, Path(exc.filename or config.execution.work_dir)) from exc
        finally:
            gc.unfreeze()
        if plugin == "SLURMGraph":  # nipype returns once the jobs are submitted: wait for them
            wait_for_slurm_jobs(f"bids-synth:{config.execution.run_id}")


def stop_child_processes(grace_s: float = 5.0) -> None:
    """Stop every descendant of this process (nipype workers and their children): freeze them
    all first (SIGSTOP until a scan finds no new one, so that none can start a child that would
    escape to init when its parent ends), then SIGTERM them, and SIGKILL those still there after
    ``grace_s`` seconds."""
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        frozen: list[int] = []
        while new := [
            pid for pid in _descendants(os.getpid()) if pid not in frozen and not _tracker(pid)
        ]:
            _signal_all(new, signal.SIGSTOP)
            frozen += new
        _signal_all(frozen, signal.SIGTERM)
        _signal_all(frozen, signal.SIGCONT)
        for sig, wait_s in ((signal.SIGKILL, grace_s), (None, 1.0)):
            deadline = time.monotonic() + wait_s
            while frozen and time.monotonic() < deadline:
                frozen = [pid for pid in frozen if _alive(pid)]
                time.sleep(0.05)
            if sig is not None:
                _signal_all(frozen, sig)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _tracker(pid: int) -> bool:
    """Whether ``pid`` is multiprocessing's resource tracker: it ignores SIGTERM, writes nothing
    of ours and ends with this process; killed, it would be relaunched at exit to outlive us."""
    with contextlib.suppress(OSError):
        return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _descendants(root: int) -> list[int]:
    """Process ids below ``root`` (Linux ``/proc``), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue += children.get(pid, [])
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie child counts as ended, and is reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the block, then restore the caller's."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def request_slurm_resources(workflow) -> None:
    """Each node's job asks Slurm for the node's ``n_procs`` CPUs and ``mem_gb`` memory.

    The request is added to the preset's ``sbatch_args`` (nipype reads a node's own
    ``plugin_args``); a node that already names ``sbatch_args`` keeps them.
    """
    for name in workflow.list_node_names():
        node = workflow.get_node(name)
        if "sbatch_args" in node.plugin_args:
            continue
        request = f" --cpus-per-task={max(1, int(node.n_procs))}"
        if node.mem_gb:
            request += f" --mem={max(1, math.ceil(node.mem_gb * 1024))}M"
        node.plugin_args = {**node.plugin_args, "sbatch_args": request}


def wait_for_slurm_jobs(tag: str, poll_s: float = SLURM_GRAPH_POLL_S) -> None:
    """Block until no job of this user with ``--comment=tag`` is queued or running."""
    user = _user_name()
    while True:
        try:
            queue = subprocess.run(
                ["squeue", "-h", "-u", user, "-o", "%i|%k"], capture_output=True, text=True
            )
        except OSError as exc:
            LOG.warning("cannot run squeue (%s); not waiting for Slurm jobs", exc)
            return
        if queue.returncode:
            LOG.warning("squeue failed (%s); not waiting for Slurm jobs", queue.stderr.strip())
            return
        jobs = [line for line in queue.stdout.splitlines() if line.split("|", 1)[-1] == tag]
        if not jobs:
            return
        time.sleep(poll_s)


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


def write_graph(workflow) -> None:
    try:
        workflow.write_graph(graph2use="colored", format="svg", simple_form=True)
    except Exception as exc:  # graphviz's dot may be missing: the .dot file is still written
        LOG.warning("workflow graph written as .dot only (%s)", str(exc).splitlines()[0])


def failed_with(message: str, error: type) -> bool:
    """Whether a failure message of :func:`unit_failures` names ``error`` (e.g. OutputError);
    a full disk, quota or file size limit met by a node counts as an :class:`OutputError`."""
    if error is OutputError and _STORAGE_ERROR.search(message):
        return True
    return f"bids_synth.errors.{error.__name__}:" in message


def unit_failures(crash_dir: Path) -> dict[str, list[str]]:
    """``{'sub-01_ses-a': ['node ... failed: Error: ... (crash file ...)', ...]}``: one message
    per crash file, in the order they were written."""
    failures: dict[str, list[str]] = {}
    for crash in sorted(crash_dir.glob("crash-*")):
        text = crash.read_text(errors="replace")
        match = _CRASH_NODE.search(text)
        unit = _UNIT_PATH.search(match.group(1)) if match else None
        if not unit:
            continue
        name = f"sub-{unit.group(1)}" + (f"_ses-{unit.group(2)}" if unit.group(2) else "")
        node = match.group(1).split(".", 3)[-1]
        failures.setdefault(name, []).append(
            f"node {node} failed: {_last_error(text)} (crash file: {crash})"
        )
    return failures


def _last_error(crash_text: str) -> str:
    """The innermost exception line of a nipype crash file."""
    errors = [line.strip() for line in crash_text.splitlines() if _ERROR_LINE.match(line.strip())]
    return errors[-1] if errors else "see the crash file"


def unit_runtime(work_dir: Path, unit: SessionInputs) -> float | None:
    """Seconds spent in the nodes of one participant/session (cached nodes count their first run)."""
    folder = unit_work_folder(work_dir, unit.subject, unit.session)
    total = 0.0
    for result in folder.rglob("result_*.pklz"):
        try:
            runtime = getattr(loadpkl(result), "runtime", None)
        except Exception:  # a result cached by an older version of an interface
            continue
        total += float(getattr(runtime, "duration", 0.0) or 0.0)
    return round(total, 2) if total else None
