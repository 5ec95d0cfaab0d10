"""Progress bars for long loops (training epochs, cohort processing) that stay quiet in logs.

A bar is drawn on stderr only when stderr is a terminal and ``BIDS_SYNTH_NO_PROGRESS`` is not set
to a true value (``1``, ``true``, ``yes``); batch jobs, CI and redirected output get no bar.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm import tqdm

NO_PROGRESS_ENV = "BIDS_SYNTH_NO_PROGRESS"


def progress_enabled() -> bool:
    """True when a bar should be drawn: stderr is a TTY and ``BIDS_SYNTH_NO_PROGRESS`` is unset."""
    if os.environ.get(NO_PROGRESS_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    return sys.stderr is not None and sys.stderr.isatty()


def progress(
    iterable: Iterable | None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
) -> tqdm:
    """Wrap ``iterable`` (None: a bar advanced by ``update()``) in a tqdm bar on stderr, disabled
    unless :func:`progress_enabled`.

    The result iterates like ``iterable``; ``set_postfix(loss=...)`` and friends are no-ops when quiet.
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not progress_enabled(),
        dynamic_ncols=True,
    )
