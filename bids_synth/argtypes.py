"""What the command lines share: their parser class and the value types of their options, also
used by the checks of settings read from a configuration file (``--config-file``,
``workflow.task_options``)."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """An integer ≥ 1 (a count: steps, processes, threads)."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def nonnegative_int(value: str) -> int:
    """An integer ≥ 0 (a random seed)."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be a non-negative integer")
    return number


def positive_float(value: str) -> float:
    """A number > 0 (a size: millimetres, gigabytes)."""
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def nonnegative_float(value: str) -> float:
    """A number ≥ 0."""
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError("must be zero or positive")
    return number


#: the Python values a configuration file may give for an option of each type, and their wording
VALUE_KINDS = {
    int: (int, "an integer"),
    positive_int: (int, "a positive integer"),
    nonnegative_int: (int, "a non-negative integer"),
    float: ((int, float), "a number"),
    positive_float: ((int, float), "a positive number"),
    nonnegative_float: ((int, float), "a non-negative number"),
}


def value_problem(value_type, value) -> str | None:
    """Why an option of ``value_type`` (None: a string) cannot take ``value``, a configuration
    file's, as the command line would check it; None when it can."""
    kind, wanted = VALUE_KINDS.get(value_type, (str, "a string"))
    if isinstance(value, bool) or not isinstance(value, kind):
        return f"must be {wanted}"
    if value_type is not None:
        try:
            value_type(str(value))
        except (argparse.ArgumentTypeError, ValueError):
            return f"must be {wanted}"
    return None


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error of bids-synth
    (the usage is in ``--help``); exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
