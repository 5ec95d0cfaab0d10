"""Value types of command-line options, shared by the parsers and the checks of settings read
from a configuration file (``--config-file``, ``workflow.task_options``)."""

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
