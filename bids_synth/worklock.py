"""One run at a time per work folder.

Two runs sharing a work folder would race inside nipype's node folders. The lock is an advisory
``flock`` on a file in the work folder: the kernel drops it when its holder exits, however it
exits, so the lock of a killed run is simply taken over by the next one. The file names the
holder (run id, process, host, start time) for the one-line refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from bids_synth.errors import OutputError

LOG = logging.getLogger("bids_synth")
LOCK_FILE = ".bids-synth-run.lock"


@contextlib.contextmanager
def work_folder_lock(work_dir: str | Path, *, run_id: str):
    """Hold the work folder's lock for the block; :class:`OutputError` if another run holds it."""
    path = Path(work_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    except OSError as exc:
        raise OutputError(f"cannot create the work folder lock {path}: {exc.strerror}") from exc
    with handle:
        previous = _holder(handle)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"the work folder {work_dir} is in use by {_describe(previous)}: wait for that "
                "run to end, or give this one another work folder (-w)"
            ) from None
        if previous:
            LOG.info("work folder lock of %s taken over (it has ended)", _describe(previous))
        handle.seek(0)
        handle.truncate()
        holder = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
        handle.write(json.dumps({**holder, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle) -> dict:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another bids-synth run"
    return (
        f"bids-synth run {holder.get('run_id')} (pid {holder.get('pid')} on "
        f"{holder.get('host')}, started {holder.get('started')})"
    )
