"""Errors that end a run with one clear line and a documented exit code.

Exit codes (also listed in the README):

====  ==========================================================================
0     success
1     unexpected internal error (a bug: please report it with the log)
2     invalid command line or configuration file
3     invalid input dataset (not a directory, not BIDS, bad filter file)
4     nothing to process (unknown participant labels, no participant with a T1w)
5     invalid input image (unreadable, truncated, wrong dimensionality, NaN/Inf, ...)
6     output problem (output inside the input, not writable, disk full)
7     model bundle problem (missing, tampered weights, incompatible contract)
8     processing failed for at least one participant (see the crash files)
130   interrupted by SIGINT (Ctrl-C); finished participants are kept, a rerun resumes
141   standard output closed by its reader (``| head``); stops quietly
143   interrupted by SIGTERM (docker stop, Slurm time limit, scancel); as for 130
====  ==========================================================================
"""

import signal


class BidsSynthError(Exception):
    """Base class: ``str(error)`` is the one line shown to the user."""

    exit_code = 1


class UsageError(BidsSynthError):
    exit_code = 2


class InputDatasetError(BidsSynthError):
    exit_code = 3


class NothingToProcessError(BidsSynthError):
    exit_code = 4


class InvalidImageError(BidsSynthError):
    exit_code = 5


class OutputError(BidsSynthError):
    exit_code = 6


class ModelBundleError(BidsSynthError):
    exit_code = 7


class ProcessingError(BidsSynthError):
    exit_code = 8


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run stops; its exit code is 128 + the signal number."""

    def __init__(self, signum: int = signal.SIGINT, detail: str = ""):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.detail = signum, detail

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def raise_interrupted(signum, _frame) -> None:
    """Signal handler: stop the main thread as Ctrl-C does, with the signal's name."""
    raise Interrupted(signum)


#: stdout closed by its reader (``| head``): 128 + SIGPIPE, as a shell reports a killed pipe
BROKEN_PIPE_EXIT_CODE = 128 + signal.SIGPIPE
EXIT_CODES = {
    0: "success",
    1: "unexpected internal error",
    UsageError.exit_code: "invalid command line or configuration",
    InputDatasetError.exit_code: "invalid input dataset",
    NothingToProcessError.exit_code: "nothing to process",
    InvalidImageError.exit_code: "invalid input image",
    OutputError.exit_code: "output problem",
    ModelBundleError.exit_code: "model bundle problem",
    ProcessingError.exit_code: "processing failed for at least one participant",
    128 + signal.SIGINT: "interrupted by SIGINT (finished participants kept)",
    128 + signal.SIGTERM: "interrupted by SIGTERM (finished participants kept)",
    BROKEN_PIPE_EXIT_CODE: "standard output closed by its reader (stops quietly)",
}
