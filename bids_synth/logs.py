"""The log format of bids-synth, and nipype's log routed into it."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"


def route_nipype_log() -> None:
    """nipype's log to stderr in bids-synth's format, instead of to stdout in nipype's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    nipype_logger = logging.getLogger("nipype")
    nipype_logger.handlers = [handler]
    nipype_logger.propagate = False
