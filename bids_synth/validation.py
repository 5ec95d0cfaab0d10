"""The official BIDS validator (``bids-validator-deno``), run on a dataset as a subprocess.

bids-synth checks its input dataset with it before any work starts (as fMRIPrep does) and its
tests check the derivatives with it. Where it is not installed, :func:`validator_executable`
returns None and callers fall back to pybids' checks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bids_synth.bids import is_ct
from bids_synth.errors import InputDatasetError

LOG = logging.getLogger("bids_synth")

EXECUTABLE = "bids-validator-deno"

#: errors on one input file that bids-synth checks itself per participant (unreadable or not 3D
#: images: exit 5 for that participant, the others still run; sidecars: bids-synth reads images
#: only): reported as warnings instead of stopping the whole run
PER_PARTICIPANT_CODES = re.compile(
    r"^(EMPTY_FILE|NIFTI_HEADER_UNREADABLE|SYMLINK_BROKEN|JSON_INVALID|\w+_TOO_MANY_DIMENSIONS)$"
)


class ValidatorUnavailable(RuntimeError):
    """The validator is missing or did not produce a report."""


@dataclass(frozen=True)
class Issue:
    severity: str  # error | warning
    code: str
    location: str  # path inside the dataset, e.g. /sub-01/anat/sub-01_T1w.nii.gz
    detail: str = ""  # the offending key or column, when the validator names one


def validator_executable() -> str | None:
    """The ``bids-validator-deno`` command: on PATH or beside this Python (a virtualenv)."""
    beside = Path(sys.executable).parent / EXECUTABLE
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(EXECUTABLE)


def validate(
    root: str | Path, *, executable: str | None = None, timeout: float = 600
) -> list[Issue]:
    """Every issue the validator reports on the dataset at ``root``; CT files' issues left out
    (the BIDS schema cannot name CT yet, BEP024).

    :class:`ValidatorUnavailable` when the validator is missing, fails or times out.
    """
    executable = executable or validator_executable()
    if executable is None:
        raise ValidatorUnavailable(f"{EXECUTABLE} is not installed")
    command = [executable, "--format", "json", "--no-color", str(root)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        report = json.loads(done.stdout)
        found = report["issues"]["issues"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as exc:
        raise ValidatorUnavailable(f"{EXECUTABLE} gave no report on {root}: {exc}") from exc
    issues = [
        Issue(
            severity=item.get("severity", "error"),
            code=item.get("code", "UNKNOWN"),
            location=item.get("location") or "",
            detail=item.get("subCode") or "",
        )
        for item in found
    ]
    return [issue for issue in issues if not is_ct(issue.location)]


def errors(issues: list[Issue]) -> list[Issue]:
    return [issue for issue in issues if issue.severity == "error"]


def summarise(issues: list[Issue], *, examples: int = 3) -> str:
    """One line per issue code: its count and a few of the files it concerns."""
    by_code = defaultdict(list)
    for issue in issues:
        where = issue.location + (f" ({issue.detail})" if issue.detail else "")
        by_code[issue.code].append(where or "the dataset")
    lines = []
    for code, places in sorted(by_code.items()):
        shown = ", ".join(places[:examples]) + (", ..." if len(places) > examples else "")
        lines.append(f"  {code} ×{len(places)}: {shown}")
    return "\n".join(lines)


def check_input_dataset(root: str | Path, participants: list[str] = ()) -> bool:
    """Validate the input dataset with the official validator before any work starts.

    Its errors (on the selected ``participants``' files and the dataset's own files) end the run
    with one :class:`InputDatasetError` listing them all; :data:`PER_PARTICIPANT_CODES` are
    logged as warnings instead. Returns False when the validator is unavailable (the caller then
    falls back to pybids' checks).
    """
    try:
        issues = validate(root)
    except ValidatorUnavailable as exc:
        LOG.info("official BIDS validator not used (%s): checking with pybids", exc)
        return False
    selected = tuple(f"/sub-{label}/" for label in participants)
    if selected:  # other participants' files do not concern this run
        issues = [
            issue
            for issue in issues
            if not issue.location.startswith("/sub-") or issue.location.startswith(selected)
        ]
    fatal = [i for i in errors(issues) if not PER_PARTICIPANT_CODES.match(i.code)]
    relaxed = [i for i in errors(issues) if PER_PARTICIPANT_CODES.match(i.code)]
    if relaxed:
        LOG.warning(
            "BIDS validator errors left to the per-participant checks:\n%s", summarise(relaxed)
        )
    if fatal:
        raise InputDatasetError(
            f"{root} fails BIDS validation ({len(fatal)} error(s); "
            f"--skip-bids-validation to process it anyway):\n{summarise(fatal)}"
        )
    warnings = len(issues) - len(relaxed)
    LOG.info("BIDS validator: %s passes (%d warning(s))", root, warnings)
    return True
