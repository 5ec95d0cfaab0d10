"""Find, list and install model bundles without importing torch.

Lookup order: an explicit bundle folder, then ``$BIDS_SYNTH_HOME/models`` (default
``~/.bids-synth/models``), then the bundles shipped in the package (``bids_synth/models/bundles``).
A bundle is referred to by its folder, its id (highest version in the first place that has it) or
``id@version``. Nothing here touches the network.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from bids_synth.errors import ModelBundleError
from bids_synth.fileio import atomic_copy
from bids_synth.models.bundle import BUNDLE_FILE, Bundle, bundle_files, semver_key

LOG = logging.getLogger("bids_synth.models")
SHIPPED = Path(__file__).parent / "bundles"


def home_models() -> Path:
    """``$BIDS_SYNTH_HOME/models``, where ``models install`` puts bundles."""
    home = os.environ.get("BIDS_SYNTH_HOME") or Path.home() / ".bids-synth"
    return Path(home) / "models"


def search_paths() -> list[Path]:
    """Folders holding bundles, in lookup order."""
    return [home_models(), SHIPPED]


def _bundles_in(root: Path) -> list[Bundle]:
    found = []
    for folder in sorted(p for p in root.glob("*") if (p / BUNDLE_FILE).is_file()):
        try:
            found.append(Bundle.read(folder))
        except ModelBundleError as exc:
            LOG.warning("skipping %s", exc)
    return found


def list_bundles(paths: list[Path] | None = None) -> list[Bundle]:
    """Every readable bundle under ``paths`` (default :func:`search_paths`), in lookup order."""
    return [bundle for root in (paths or search_paths()) for bundle in _bundles_in(Path(root))]


def find_bundle(ref: str, paths: list[Path] | None = None) -> Bundle:
    """The bundle named by ``ref``: a folder with a ``bundle.json``, an id, or ``id@version``,
    each optionally followed by ``#<digest>``, which the bundle's files must then match."""
    from bids_synth.models.pins import check_pin

    ref, _, pin = ref.partition("#")
    bundle = _find(ref, paths)
    if pin:
        check_pin(bundle, pin)
    return bundle


def _find(ref: str, paths: list[Path] | None) -> Bundle:
    if (Path(ref) / BUNDLE_FILE).is_file():
        return Bundle.read(ref)
    wanted_id, _, wanted_version = ref.partition("@")
    for root in paths or search_paths():
        matches = [
            b
            for b in _bundles_in(Path(root))
            if b.id == wanted_id and wanted_version in ("", b.version)
        ]
        if matches:
            return max(matches, key=lambda b: semver_key(b.version))
    known = ", ".join(sorted({b.ref for b in list_bundles(paths)})) or "none installed"
    raise ModelBundleError(f"model bundle {ref}: not found (known: {known})")


def install_bundle(source: str | Path, *, destination: Path | None = None) -> Bundle:
    """Verify the bundle in ``source`` and copy it to ``destination/<id>-<version>``.

    ``destination`` defaults to :func:`home_models`; an installed bundle with the same id and
    version is replaced. The copy is assembled beside the target and renamed into place.
    """
    bundle = Bundle.read(source)
    bundle.verify()
    root = destination or home_models()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{bundle.id}-{bundle.version}"
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        files = bundle_files(bundle.path)  # bundle.json last: a readable copy is a whole one
        for path in sorted(files, key=lambda p: p.name == BUNDLE_FILE):
            atomic_copy(path, staging / path.name)
        installed = Bundle.read(staging)
        installed.verify()
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Bundle.read(target)
