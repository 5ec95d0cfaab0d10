"""Read, verify, load and save model bundles (format: ../shared/DESIGN.md, "Model bundles").

``bundle.json`` holds the metadata (id, semver version, task, architecture name + kwargs, input
and output contracts, training data, metrics, software version) and the weights' sha256. The
weights are read once, hashed, and only then parsed by safetensors from those same bytes: a
tampered file is refused and nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bids_synth.errors import ModelBundleError
from bids_synth.fileio import atomic_write, atomic_write_json, atomic_write_text

BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "MODEL_CARD.md"
FORMAT_VERSION = 1


def bundle_files(folder: str | Path) -> list[Path]:
    """The files that make the bundle in ``folder``: those directly in it, sorted (not the
    ``training/`` work folder that ``bids-synth train`` keeps there by default, nor hidden files)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


REQUIRED_KEYS = ("id", "version", "task", "architecture", "input", "output", "weights")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)


def identity_problem(bundle_id: str, version: str) -> str | None:
    """Why ``bundle_id`` / ``version`` cannot name a bundle; None when they can."""
    if not _ID.match(str(bundle_id)):
        return f"invalid id {bundle_id!r} (lowercase letters, digits, '.', '_' and '-')"
    if not _SEMVER.match(str(version)):
        return f"invalid version {version!r} (a semantic version, e.g. 1.0.0)"
    return None


def semver_key(version: str) -> tuple:
    """Sort key of a semantic version (pre-releases sort before their release)."""
    core, _, pre = version.split("+")[0].partition("-")
    return (*map(int, core.split(".")), pre == "", pre)


@dataclass(frozen=True)
class Bundle:
    """A bundle folder and its parsed ``bundle.json``."""

    path: Path
    meta: dict

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def sha256(self) -> str:
        """The weights' sha256, as ``bundle.json`` states it."""
        return self.meta["weights"]["sha256"]

    @cached_property
    def digest(self) -> str:
        """sha256 over the bundle's files (:func:`bids_synth.models.pins.bundle_digest`)."""
        from bids_synth.models.pins import bundle_digest

        return bundle_digest(self.path)

    @classmethod
    def read(cls, path: str | Path) -> Bundle:
        """Parse and check ``path/bundle.json`` (no weights read, no torch)."""
        path = Path(path)
        try:
            meta = json.loads((path / BUNDLE_FILE).read_text())
        except FileNotFoundError as exc:
            raise ModelBundleError(f"model bundle {path}: no {BUNDLE_FILE}") from exc
        except (OSError, ValueError) as exc:
            raise ModelBundleError(
                f"model bundle {path}: unreadable {BUNDLE_FILE} ({exc})"
            ) from exc
        missing = (
            [key for key in REQUIRED_KEYS if key not in meta]
            if isinstance(meta, dict)
            else list(REQUIRED_KEYS)
        )
        if missing:
            raise ModelBundleError(f"model bundle {path}: {BUNDLE_FILE} lacks {', '.join(missing)}")
        if problem := identity_problem(meta["id"], meta["version"]):
            raise ModelBundleError(f"model bundle {path}: {problem}")
        return cls(path, meta)

    def read_weights(self) -> bytes:
        """The weight file's bytes after checking their sha256; :class:`ModelBundleError` if not."""
        try:
            data = (self.path / WEIGHTS_FILE).read_bytes()
        except OSError as exc:
            raise ModelBundleError(
                f"model bundle {self.ref}: weights unreadable ({exc.strerror or exc})"
            ) from exc
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ModelBundleError(
                f"model bundle {self.ref}: weights sha256 mismatch (file tampered or corrupt)"
            )
        return data

    def verify(self) -> None:
        """Check the weights' sha256 and, for a shipped bundle, the digest of every file against
        the package's pin (raises :class:`ModelBundleError`)."""
        from bids_synth.models.pins import check_pin

        self.read_weights()
        check_pin(self)

    def load_network(self, device: str = "cpu"):
        """Build the architecture, load the verified weights (safetensors, no pickle), eval mode."""
        from safetensors.torch import load as load_safetensors

        from bids_synth.nn.factory import build_network

        data = self.read_weights()
        architecture = self.meta["architecture"]
        try:
            network = build_network(architecture["name"], **architecture.get("kwargs", {}))
            network.load_state_dict(load_safetensors(data))
        except (ValueError, TypeError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0]
            raise ModelBundleError(
                f"model bundle {self.ref}: weights do not fit the architecture ({reason})"
            ) from exc
        return network.eval().to(device)


def save_bundle(folder: str | Path, network, *, meta: dict, card: str | None = None) -> Bundle:
    """Write ``network``'s weights and ``meta`` (without ``weights``) as a bundle in ``folder``.

    ``meta`` needs id, version, task, architecture (name + kwargs that rebuild ``network``), input
    and output. The weights go first and ``bundle.json`` last, so a folder with a ``bundle.json``
    is always complete. ``card`` is the MODEL_CARD.md text.
    """
    from safetensors.torch import save as save_safetensors

    folder = Path(folder)
    tensors = {
        key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()
    }
    data = save_safetensors(
        tensors
    )  # no header metadata: its key order is not stable, the bytes would vary
    with atomic_write(folder / WEIGHTS_FILE) as handle:
        handle.write(data)
    if card is not None:
        atomic_write_text(folder / CARD_FILE, card)
    full = {
        **meta,
        "format": FORMAT_VERSION,
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest()},
    }
    atomic_write_json(folder / BUNDLE_FILE, full)
    return Bundle.read(folder)
