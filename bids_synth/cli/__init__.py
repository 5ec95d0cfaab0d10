"""Command-line entry point: the BIDS-App form and the sub-commands.

``bids-synth BIDS_DIR OUTPUT_DIR participant|group [options]`` runs the app; ``bids-synth
<sub-command> ...`` runs one of :data:`SUBCOMMANDS`. Each sub-command module exposes
``main(argv) -> int``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import sys
import threading

from bids_synth.errors import (
    BROKEN_PIPE_EXIT_CODE,
    BidsSynthError,
    Interrupted,
    raise_interrupted,
)
from bids_synth.logs import LOG_DATEFMT, LOG_FORMAT

SUBCOMMANDS = {
    "demo": ("bids_synth.cli.demo", "make a small phantom BIDS dataset and run both levels on it"),
    "simulate": ("bids_synth.cli.simulate", "write a simulated BIDS dataset from the head model"),
    "train": ("bids_synth.cli.train", "train a model bundle"),
    "models": ("bids_synth.cli.models", "list, show, verify and install model bundles"),
    "evaluate": ("bids_synth.cli.evaluate", "compare derivatives with reference images"),
    "import-synthrad": ("bids_synth.cli.import_synthrad", "convert a SynthRAD folder to BIDS"),
}

LOG = logging.getLogger("bids_synth")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        return module.main(argv[1:])
    from bids_synth.cli.run import main as run_main

    return run_main(argv)


def guarded(func):
    """Turn :class:`BidsSynthError` into one error line and its exit code; SIGINT and SIGTERM
    into one line and 128 + the signal number (130, 143); a closed stdout into a quiet 141."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, raise_interrupted) if main_thread else None
        try:
            code = func(*args, **kwargs) or 0
            sys.stdout.flush()  # inside the guard: a closed pipe is reported here
            return code
        except BrokenPipeError:
            if not _stdout_reader_gone():
                raise  # another pipe broke: a real failure
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to say
            return BROKEN_PIPE_EXIT_CODE
        except BidsSynthError as exc:
            print(f"bids-synth: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            stop = exc if isinstance(exc, Interrupted) else Interrupted()
            print(f"bids-synth: interrupted by {stop.args[0]}{stop.detail}", file=sys.stderr)
            return stop.exit_code
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``| head``)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def setup_logging(verbosity: int = 0) -> None:
    """bids-synth's progress to stderr (debug with -vv); other libraries' warnings only."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    LOG.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
