"""Where the optional real reference images live (never bundled with the package).

``$BIDS_SYNTH_REFDATA`` if set, else ``shared/data/reference`` beside the source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "BIDS_SYNTH_REFDATA"


def reference_dir() -> Path:
    """The reference-data folder (it may not exist: check with :func:`reference_file`)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "reference"


def reference_file(name: str) -> Path:
    """Path of one reference file; ``FileNotFoundError`` naming the variable when it is missing."""
    path = reference_dir() / name
    if not path.exists():
        raise FileNotFoundError(
            f"reference image {name} not found in {reference_dir()} (set {ENV_VAR} to the folder "
            "holding the reference images)"
        )
    return path
