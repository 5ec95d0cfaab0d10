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


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error of bids-synth
    (the usage is in ``--help``); exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
