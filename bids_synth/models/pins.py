"""Digests of the bundles shipped in the package, so that a substituted one is refused.

A bundle's digest covers every file of its folder (weights, ``bundle.json``, model card, logs):
see :func:`bundle_digest`. The shipped bundles' digests live in ``pins.json`` beside this module,
the one place the package states them. After adding or retraining a shipped bundle, run::

    python -m bids_synth.models.pins

which rewrites ``pins.json`` from ``bids_synth/models/bundles``; review and commit it with the
bundle. A user bundle can be pinned on the command line as ``id@version#<digest>``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bids_synth.errors import ModelBundleError

PINS_FILE = Path(__file__).with_name("pins.json")


def bundle_digest(folder: str | Path) -> str:
    """sha256 over the bundle's files (:func:`~bids_synth.models.bundle.bundle_files`): each
    file's name and sha256, sorted; the same before and after ``models install``."""
    from bids_synth.models.bundle import bundle_files

    lines = []
    for path in bundle_files(folder):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{path.name}\0{content}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def shipped_pins() -> dict[str, str]:
    """``{"id@version": digest}`` of the bundles shipped in the package."""
    return json.loads(PINS_FILE.read_text()) if PINS_FILE.is_file() else {}


def check_pin(bundle, wanted: str | None = None) -> None:
    """:class:`ModelBundleError` unless the bundle's digest is ``wanted`` (a user's pin) and, for
    a bundle shipped in the package, the package's own pin."""
    from bids_synth.models.registry import SHIPPED

    if wanted and bundle.digest != wanted:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: digest {bundle.digest[:12]}… does not match the pin "
            f"{wanted[:12]}… (a different or modified bundle)"
        )
    if bundle.path.resolve().parent != Path(SHIPPED).resolve():
        return
    pinned = shipped_pins().get(bundle.ref)
    if pinned is None:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: shipped with bids-synth but not pinned by the package "
            "(maintainers: python -m bids_synth.models.pins)"
        )
    if bundle.digest != pinned:
        raise ModelBundleError(
            f"model bundle {bundle.ref}: the shipped bundle was modified or substituted (a file "
            "differs from the package's pin); reinstall bids-synth"
        )


def write_pins(root: str | Path | None = None) -> dict[str, str]:
    """Pin every bundle under ``root`` (default: the shipped bundles) into ``pins.json``."""
    from bids_synth.fileio import atomic_write_json
    from bids_synth.models.registry import SHIPPED, list_bundles

    pins = {bundle.ref: bundle.digest for bundle in list_bundles([Path(root or SHIPPED)])}
    atomic_write_json(PINS_FILE, pins)
    return pins


if __name__ == "__main__":
    for ref, digest in write_pins().items():
        print(f"{ref}#{digest}")
