"""What a report knows about one participant/session: its derivatives, sidecars and run record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlparse

import tomllib

from bids_synth.bids import source_entities
from bids_synth.reports.volumes import Volume
from bids_synth.runlog import latest_outcomes

_ANY = object()


@dataclass(frozen=True)
class Derivative:
    """A file of the derivatives dataset with the entities parsed from its name."""

    path: Path
    entities: dict[str, str]
    suffix: str
    extension: str

    @classmethod
    def parse(cls, path: Path) -> Derivative:
        stem, _, extension = path.name.partition(".")
        *pairs, suffix = stem.split("_")
        entities = dict(pair.split("-", 1) for pair in pairs if "-" in pair)
        return cls(path, entities, suffix, "." + extension)

    @property
    def name(self) -> str:
        return self.path.name

    def matches(self, suffix, extension: str, criteria: dict) -> bool:
        """``suffix`` (one or a tuple) and ``extension`` match; each criterion equals its entity
        (None: the entity is absent); entities without a criterion may take any value."""
        suffixes = suffix if isinstance(suffix, tuple) else (suffix,)
        return (
            (suffix is _ANY or self.suffix in suffixes)
            and self.extension == extension
            and all(self.entities.get(key) == value for key, value in criteria.items())
        )


@dataclass
class SessionFiles:
    """The derivatives of ``sub-<subject>[_ses-<session>]`` and what the run recorded about them.

    ``warnings`` collects problems found while reporting; the report lists them at the end.
    """

    output_dir: Path
    subject: str
    session: str | None
    outcome: dict | None = None
    warnings: list[str] = field(default_factory=list)
    _volumes: dict[Path, Volume] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def label(self) -> str:
        """How the session is named in headings: ``ses-a``, or the participant without sessions."""
        return f"ses-{self.session}" if self.session else f"sub-{self.subject}"

    @cached_property
    def files(self) -> list[Derivative]:
        """The session's derivatives named after the inputs of its latest run, when the run
        record lists them (those of other selections, e.g. another ``acq-``, are left out)."""
        folder = self.output_dir / f"sub-{self.subject}"
        if self.session:
            folder /= f"ses-{self.session}"
        anat = folder / "anat"
        found = [Derivative.parse(p) for p in sorted(anat.iterdir())] if anat.is_dir() else []
        inputs = [path for path in (self.outcome or {}).get("inputs", {}).values() if path]
        if not inputs:
            return found
        chosen = [source_entities(path) for path in inputs]
        return [f for f in found if source_entities(f.path) in chosen]

    def select(self, suffix=_ANY, extension: str = ".nii.gz", **criteria) -> list[Derivative]:
        """Derivatives whose suffix, extension and given entities match (see :meth:`Derivative.matches`)."""
        return [f for f in self.files if f.matches(suffix, extension, criteria)]

    def find(self, suffix, extension: str = ".nii.gz", **criteria) -> Path | None:
        """The first match of :meth:`select`, or None."""
        found = self.select(suffix, extension, **criteria)
        return found[0].path if found else None

    @property
    def t1w(self) -> Path | None:
        return self.find("T1w", desc="preproc", space=None)

    def mask(self, kind: str) -> Path | None:
        """``desc-<kind>_mask`` on the T1w grid (``kind``: head or brain)."""
        return self.find("mask", desc=kind, space=None)

    def volume(self, path: Path) -> Volume:
        """The image at ``path`` for display (loaded once per report)."""
        if path not in self._volumes:
            self._volumes[path] = Volume.load(path)
        return self._volumes[path]

    def mask_volume(self, kind: str, like: Volume | None = None) -> Volume | None:
        """The head or brain mask as a 0/1 volume, on ``like``'s grid when given (nearest)."""
        path = self.mask(kind)
        if path is None:
            return None
        mask = self.volume(path)
        return mask if like is None else mask.on_grid_of(like, order=0)

    def sidecar(self, image: Path) -> dict:
        path = image.parent / (image.name.partition(".")[0] + ".json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def source(self, image: Path) -> Path | None:
        """The first ``Sources`` entry of the image's sidecar that resolves to an existing file."""
        for uri in self.sidecar(image).get("Sources", []):
            path = resolve_bids_uri(uri, self.output_dir, self.raw_root)
            if path is not None and path.exists():
                return path
        return None

    @cached_property
    def raw_root(self) -> Path | None:
        return raw_dataset(self.output_dir)

    @property
    def run_id(self) -> str | None:
        return self.outcome["run_id"] if self.outcome else None

    @cached_property
    def config_toml(self) -> str | None:
        if not self.run_id:
            return None
        path = self.output_dir / f"sub-{self.subject}" / "log" / self.run_id / "config.toml"
        return path.read_text() if path.is_file() else None

    @cached_property
    def methods(self) -> str | None:
        """The methods boilerplate (Markdown) of the run that made this session's derivatives."""
        if not self.run_id:
            return None
        path = self.output_dir / f"sub-{self.subject}" / "log" / self.run_id / "CITATION.md"
        return path.read_text() if path.is_file() else None

    @property
    def work_dir(self) -> Path | None:
        if not self.config_toml:
            return None
        work_dir = tomllib.loads(self.config_toml).get("execution", {}).get("work_dir")
        return Path(work_dir) if work_dir else None


def raw_dataset(output_dir: Path) -> Path | None:
    """The raw dataset of a derivatives dataset: ``DatasetLinks.raw`` (a file URI), if it exists."""
    try:
        description = json.loads((output_dir / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return None
    uri = description.get("DatasetLinks", {}).get("raw", "")
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    path = Path(unquote(parsed.path))
    return path if path.is_dir() else None


def resolve_bids_uri(uri: str, output_dir: Path, raw_root: Path | None) -> Path | None:
    """``bids:raw:<path>`` → the raw dataset's file; ``bids::<path>`` → this dataset's file."""
    scheme, _, rest = uri.partition(":")
    dataset, _, relative = rest.partition(":")
    if scheme != "bids" or not relative:
        return None
    if dataset == "":
        return output_dir / relative
    return raw_root / relative if dataset == "raw" and raw_root is not None else None


def subject_sessions(
    output_dir: Path, subject: str, run_id: str | None = None
) -> list[SessionFiles]:
    """Every session of ``subject`` with derivatives or a run record, with its latest outcome
    (or its outcome in run ``run_id``)."""
    outcomes = {
        (o["session_id"] or "").removeprefix("ses-") or None: o
        for o in _outcomes(output_dir, run_id)
        if o["participant_id"] == f"sub-{subject}"
    }
    folder = output_dir / f"sub-{subject}"
    on_disk = {p.name.removeprefix("ses-") for p in folder.glob("ses-*") if (p / "anat").is_dir()}
    if (folder / "anat").is_dir():
        on_disk.add(None)
    sessions = sorted(set(outcomes) | on_disk, key=lambda s: s or "")
    return [SessionFiles(output_dir, subject, s, outcomes.get(s)) for s in sessions]


def _outcomes(output_dir: Path, run_id: str | None) -> list[dict]:
    if run_id is None:
        return latest_outcomes(output_dir)
    record = json.loads((output_dir / "logs" / f"{run_id}.json").read_text())
    return [{**unit, "run_id": run_id} for unit in record.get("units", [])]
