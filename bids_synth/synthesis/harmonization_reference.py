"""Nyul reference files: the group level writes one JSON per contrast, the participant level reads it.

``OUT/group/harmonize/desc-nyul_<suffix>_reference.json`` (``group/`` is in the .bidsignore).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bids_synth import __version__
from bids_synth.errors import UsageError
from bids_synth.fileio import atomic_write_json
from bids_synth.synthesis.harmonization import NyulReference

REFERENCE_FOLDER = Path("group") / "harmonize"
REFERENCE_PATTERN = "desc-nyul_{suffix}_reference.json"
#: where a harmonization bundle's reference of its own outputs is learned and applied
#: (:mod:`bids_synth.training.output_reference`)
BUNDLE_REFERENCE_MASK = "desc-head_mask"


def reference_path(output_dir: str | Path, suffix: str) -> Path:
    return Path(output_dir) / REFERENCE_FOLDER / REFERENCE_PATTERN.format(suffix=suffix)


def write_reference(path: str | Path, reference: NyulReference, *, suffix: str, mask: str) -> Path:
    """Write ``reference`` atomically, with what it was learned from and the software version."""
    return atomic_write_json(path, {
        "Method": "nyul",
        "Suffix": suffix,
        "Mask": mask,
        "Percentiles": list(reference.percentiles),
        "StandardLandmarks": list(reference.landmarks),
        "StandardRange": list(reference.standard_range),
        "Images": reference.images,
        "SoftwareName": "bids-synth",
        "SoftwareVersion": __version__,
    })  # fmt: skip


def read_reference(path: str | Path) -> tuple[NyulReference, dict]:
    """The reference and the file's content; :class:`UsageError` naming the file when unusable."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
        reference = NyulReference(
            content["Percentiles"],
            content["StandardLandmarks"],
            content["StandardRange"],
            content.get("Images", []),
        )
    except FileNotFoundError as exc:
        raise UsageError(f"harmonization reference {path} not found") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"harmonization reference {path} is not a Nyul reference: {exc}") from exc
    if content.get("Method") != "nyul" or not isinstance(content.get("Suffix"), str):
        raise UsageError(f"harmonization reference {path} is not a Nyul reference (Method, Suffix)")
    return reference, content


def find_references(location: str | Path) -> dict[str, Path]:
    """Reference files by contrast: ``location`` is one reference file or a folder holding them."""
    location = Path(location)
    if location.is_dir():
        files = sorted(location.glob(REFERENCE_PATTERN.format(suffix="*")))
        if not files:
            raise UsageError(f"{location} holds no {REFERENCE_PATTERN.format(suffix='<suffix>')}")
    else:
        files = [location]
    return {read_reference(path)[1]["Suffix"]: path for path in files}


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
