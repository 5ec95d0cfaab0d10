"""BIDS naming and queries, all through pybids.

Raw and derivative paths come from pybids' own path patterns, extended with the patterns the
BIDS schema cannot express yet: CT images (``_CT``/``_ct`` in ``anat/``, BEP024 is a proposal),
spatial transforms (``_from-X_to-Y_mode-image_xfm``), resolution-tagged anatomicals and μ-maps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bids import BIDSLayout, BIDSLayoutIndexer
from bids.layout import Query, parse_file_entities
from bids.layout.models import Config
from bids.layout.writing import build_path
from bids_validator import BIDSValidator

from bids_synth.errors import (
    InputDatasetError,
    InvalidImageError,
    NothingToProcessError,
    UsageError,
)
from bids_synth.modalities import SESSION_MR_SUFFIXES

LOG = logging.getLogger(__name__)

_SES = "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]"
_EXT = "{extension<.nii|.nii.gz|.json>|.nii.gz}"

RAW_CT_PATTERN = (
    _SES
    + "[_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]_{suffix<CT|ct>}"
    + _EXT
)

#: entities of a raw anatomical image that the names of its derivatives keep, in BIDS order (the
#: schema's non-parametric anat entities; CT, BEP024, takes a subset). ``chunk`` follows
#: ``space`` in that order.
SOURCE_ENTITIES = (
    "task", "acquisition", "ceagent", "reconstruction", "run", "echo", "part", "chunk"
)  # fmt: skip
_SOURCE = (
    "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"
    "[_echo-{echo}][_part-{part<mag|phase|real|imag>}]"
)
DERIVATIVE_PATTERNS = (
    _SES + _SOURCE + "[_space-{space}][_chunk-{chunk}][_res-{res}][_desc-{desc}]"
    "_{suffix<T1w|T2w|FLAIR|PD|PDw|T2starw|CT|mumap>}" + _EXT,
    _SES + _SOURCE + "[_chunk-{chunk}]_from-{from}_to-{to}_mode-{mode<image|points>|image}"
    "_{suffix<xfm>}{extension<.mat|.h5|.txt|.json>|.mat}",
    _SES + _SOURCE + "[_space-{space}][_chunk-{chunk}][_res-{res}][_label-{label}][_desc-{desc}]"
    "_{suffix<mask>}" + _EXT,
    _SES + _SOURCE + "[_space-{space}][_chunk-{chunk}][_res-{res}][_label-{label}][_desc-{desc}]"
    "_{suffix<dseg|probseg>}{extension<.nii|.nii.gz|.json|.tsv>|.nii.gz}",
)


@cache
def _pybids_patterns(config: str) -> tuple[str, ...]:
    return tuple(Config.load(config).default_path_patterns)


def build_raw_path(entities: dict) -> str:
    """Relative path of a raw BIDS file (CT included) from its entities; ``ValueError`` if none fits."""
    return _build(entities, (RAW_CT_PATTERN, *_pybids_patterns("bids")))


def build_derivative_path(entities: dict) -> str:
    """Relative path of a derivative file from its entities; ``ValueError`` if none fits."""
    return _build(entities, (*DERIVATIVE_PATTERNS, *_pybids_patterns("derivatives")))


def source_entities(path: str | Path) -> dict[str, str]:
    """The :data:`SOURCE_ENTITIES` in the name of a raw image (or a derivative), parsed by pybids:
    what the derivatives of that image keep in their names, so that they trace back to it."""
    entities = parse_file_entities(Path(path).name, config=["bids"])
    return {key: str(entities[key]) for key in SOURCE_ENTITIES if key in entities}


def same_t1w_first(candidates: list, derivative) -> list:
    """pybids files (masks, ...) sorted by path, those named after the raw T1w on whose grid the
    pybids file ``derivative`` lies first: its sidecar's ``SpatialReference``, else its first
    ``Sources`` entry (the derivatives of several selections may lie side by side)."""
    metadata = derivative.get_metadata()
    reference = metadata.get("SpatialReference") or next(iter(metadata.get("Sources", [])), "")
    wanted = source_entities(reference) if isinstance(reference, str) and reference else None
    return sorted(candidates, key=lambda f: (source_entities(f.path) != wanted, f.path))


def _build(entities: dict, patterns: tuple[str, ...]) -> str:
    entities = {key: value for key, value in entities.items() if value not in (None, "")}
    path = build_path(entities, list(patterns), strict=True)
    if path is None:
        raise ValueError(f"no BIDS path pattern fits entities {entities}")
    return path


CT_SUFFIXES = ("CT", "ct")
FILTER_KEYS = tuple(suffix.lower() for suffix in (*SESSION_MR_SUFFIXES, "CT"))
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class SessionInputs:
    """The anatomical images of one participant (and session) that bids-synth processes."""

    subject: str
    session: str | None
    t1w: str
    others: dict[str, str] = field(default_factory=dict)  # suffix -> path (T2w, FLAIR, PD, CT)
    ignored_t1w: tuple[str, ...] = ()
    problem: str = ""  # why the inputs cannot be chosen (the unit is then skipped)

    @property
    def entities(self) -> dict[str, str]:
        return {"subject": self.subject, **({"session": self.session} if self.session else {})}

    @property
    def name(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def all_inputs(self) -> dict[str, str]:
        return {"T1w": self.t1w, **self.others}


def load_layout(
    bids_dir: str | Path, *, validate: bool = True, participants: list[str] = ()
) -> BIDSLayout:
    """Index a raw BIDS dataset; :class:`InputDatasetError` when it is not one.

    pybids' own validation is off because it drops CT images (no suffix in the schema yet).
    With ``validate`` the dataset must have a ``dataset_description.json`` and pass the official
    BIDS validator where it is installed (:func:`bids_synth.validation.check_input_dataset`, on
    the ``participants``' files and the dataset's own); without it, file names that pybids'
    validator rejects (CT excepted) are logged.
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise InputDatasetError(f"BIDS directory {root} does not exist or is not a directory")
    description = root / "dataset_description.json"
    if validate and not description.is_file():
        raise InputDatasetError(
            f"{root} is not a BIDS dataset: no dataset_description.json "
            "(use --skip-bids-validation to process it anyway)"
        )
    if description.is_file():
        try:
            dataset_type = json.loads(description.read_text()).get("DatasetType", "raw")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputDatasetError(f"{description} is not valid JSON: {exc}") from exc
        except AttributeError:
            raise InputDatasetError(f"{description} is not a JSON object") from None
        if dataset_type == "derivative":
            raise InputDatasetError(
                f"{root} is a derivatives dataset (DatasetType derivative): give the raw BIDS "
                "dataset it was derived from"
            )
    official = False  # whether the official validator checked the dataset
    if validate:
        from bids_synth.validation import check_input_dataset  # it imports this module

        official = check_input_dataset(root, participants)
    try:
        layout = BIDSLayout(str(root), validate=False, derivatives=False)
    except Exception as exc:  # pybids raises several types for unusable datasets
        broken = _invalid_sidecars(root)
        if not broken:
            raise InputDatasetError(f"cannot index {root} as BIDS: {exc}") from exc
        # bids-synth reads images, not sidecars: one broken sidecar must not stop the cohort
        LOG.warning(
            "invalid JSON sidecar(s), metadata not indexed: %s",
            ", ".join(os.path.relpath(path, root) for path in broken),
        )
        indexer = BIDSLayoutIndexer(validate=False, index_metadata=False)
        layout = BIDSLayout(str(root), validate=False, derivatives=False, indexer=indexer)
    if validate and not official:
        _log_invalid_names(layout)
    return layout


def _invalid_sidecars(root: Path) -> list[Path]:
    """JSON files below ``root`` (dataset_description.json aside) that are not JSON objects."""
    broken = []
    for path in sorted(root.rglob("*.json")):
        if path == root / "dataset_description.json":
            continue
        try:
            if not isinstance(json.loads(path.read_text()), dict):
                broken.append(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            broken.append(path)
    return broken


#: sidecar fields bids-synth reads, each a length in millimetres that must be positive
SIDECAR_LENGTHS_MM = ("SliceThickness",)


def read_sidecar(image: str | Path) -> dict:
    """The JSON sidecar beside a raw image (``{}`` when there is none), checked.

    It must be a JSON object, and the fields of :data:`SIDECAR_LENGTHS_MM` positive numbers;
    :class:`InvalidImageError` naming the file otherwise.
    """
    path = Path(str(image).removesuffix(".gz").removesuffix(".nii") + ".json")
    if not path.is_file():
        return {}
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidImageError(f"sidecar {path.name}: not valid JSON ({exc})") from exc
    if not isinstance(sidecar, dict):
        raise InvalidImageError(f"sidecar {path.name}: not a JSON object")
    for key in SIDECAR_LENGTHS_MM:
        value = sidecar.get(key)
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        if key in sidecar and not (valid and math.isfinite(value)):
            raise InvalidImageError(
                f"sidecar {path.name}: {key} must be a positive number of mm, got {value!r}"
            )
    return sidecar


def _log_invalid_names(layout: BIDSLayout) -> None:
    validator = BIDSValidator()
    for path in layout.get(datatype="anat", return_type="filename"):
        relative = "/" + os.path.relpath(path, layout.root)
        if not validator.is_bids(relative) and not is_ct(path):
            LOG.warning("not a valid BIDS name, ignored by the validator: %s", relative)


def is_ct(path: str) -> bool:
    """A CT image or sidecar, which bids-synth accepts though the BIDS schema cannot name it."""
    return re.search(r"_(CT|ct)\.(nii|nii\.gz|json)$", path) is not None


def normalise_labels(labels: list[str] | None, *, prefix: str) -> list[str]:
    """Strip an optional ``sub-``/``ses-`` prefix; :class:`UsageError` for unsafe labels."""
    cleaned = []
    for label in labels or []:
        value = label[len(prefix) :] if label.startswith(prefix) else label
        if not _LABEL.match(value):
            raise UsageError(f"invalid label {label!r}: only letters and digits are allowed")
        cleaned.append(value)
    return cleaned


def select_subjects(layout: BIDSLayout, labels: list[str]) -> list[str]:
    """Requested subjects (all when none requested); :class:`NothingToProcessError` if unknown."""
    available = sorted(layout.get_subjects())
    if not labels:
        if not available:
            raise NothingToProcessError(f"no participants found in {layout.root}")
        return available
    unknown = sorted(set(labels) - set(available))
    if unknown:
        raise NothingToProcessError(
            "participant label(s) not found in the dataset: "
            + ", ".join(f"sub-{label}" for label in unknown)
        )
    return sorted(set(labels))


def validate_filters(filters: dict) -> dict[str, dict]:
    """Check a ``--bids-filter-file`` mapping: ``{"t1w": {"acquisition": "mprage"}, ...}``."""
    if not isinstance(filters, dict):
        raise InputDatasetError("BIDS filter file must hold a JSON object")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise InputDatasetError(
            f"BIDS filter file: unknown key(s) {', '.join(unknown)} (known: {', '.join(FILTER_KEYS)})"
        )
    for key, value in filters.items():
        if not isinstance(value, dict):
            raise InputDatasetError(f"BIDS filter file: {key!r} must map to an object of entities")
    return filters


def collect_sessions(
    layout: BIDSLayout,
    subject: str,
    *,
    sessions: list[str] | None = None,
    filters: dict[str, dict] | None = None,
) -> list[SessionInputs]:
    """One :class:`SessionInputs` per session of ``subject`` that has a T1w (or one, unsessioned)."""
    filters = filters or {}
    found = sorted(layout.get_sessions(subject=subject))
    if sessions:
        found = [session for session in found if session in sessions]
        if not found:  # none of the requested sessions (or no sessions at all)
            return []
    units = []
    for session in found or [None]:
        query = {"subject": subject, "session": session or Query.NONE, "datatype": "anat"}
        try:
            t1w_runs = choose_runs(_images(layout, query, "T1w", filters.get("t1w")))
            if not t1w_runs:
                continue
            others = {}
            for suffix in (*SESSION_MR_SUFFIXES[1:], "CT"):  # besides the T1w
                suffixes = CT_SUFFIXES if suffix == "CT" else (suffix,)
                images = choose_runs(_images(layout, query, suffixes, filters.get(suffix.lower())))
                if images:
                    others[suffix] = images[0]
        except InputChoiceError as exc:
            units.append(SessionInputs(subject, session, t1w="", problem=str(exc)))
            continue
        units.append(
            SessionInputs(
                subject=subject,
                session=session,
                t1w=t1w_runs[0],
                others=others,
                ignored_t1w=tuple(t1w_runs[1:]),
            )
        )
    return units


#: entities of processed images (desc-, space-): not raw inputs
_DERIVED = re.compile(r"_(desc|space)-[A-Za-z0-9]+_")
_ENTITY = re.compile(r"(?<=_)([a-z]+)-([A-Za-z0-9]+)")


class InputChoiceError(InvalidImageError):
    """Several images could be the input and no rule picks one."""


def choose_runs(files: list[str]) -> list[str]:
    """The candidates for one input, the chosen one first (the rule the README states).

    Files with ``desc-``/``space-`` (processed images) are not raw inputs. The others must differ
    in their run only: they are sorted by run number (run-2 before run-10) and the first is
    used. Candidates differing in other entities (acq, ce, rec, task, chunk, ...) are ambiguous:
    :class:`InputChoiceError`, naming them and suggesting ``--bids-filter-file``; chunks of one
    image are refused as well, since processing one chunk would be half the image.
    """
    raw = [path for path in files if not _DERIVED.search(Path(path).name)]
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for path in raw:
        entities = dict(_ENTITY.findall(Path(path).name))
        run = int(entities.pop("run", 0) or 0)
        key = tuple(sorted((k, v) for k, v in entities.items() if k not in ("sub", "ses")))
        groups.setdefault(key, []).append((run, path))
    if len(groups) > 1:
        names = [Path(min(group)[1]).name for group in groups.values()]
        chunked = all(dict(key).get("chunk") for key in groups)
        raise InputChoiceError(
            f"{len(groups)} candidate images differ in entities other than run "
            f"({', '.join(sorted(names))}): "
            + (
                "chunks of one image are not joined by bids-synth; join them first"
                if chunked
                else "choose one with --bids-filter-file"
            )
        )
    return [path for _, path in sorted(next(iter(groups.values()), []))]


def _images(layout: BIDSLayout, query: dict, suffix, extra: dict | None) -> list[str]:
    """NIfTI files matching a query (sorted paths; :func:`choose_runs` orders the runs)."""
    files = layout.get(
        **query,
        **(extra or {}),
        suffix=list(suffix) if isinstance(suffix, tuple) else suffix,
        extension=[".nii", ".nii.gz"],
        return_type="filename",
    )
    return sorted(files)


def bids_uri(path: str | Path, root: str | Path, *, dataset: str = "raw") -> str:
    """``bids:<dataset>:<relative path>`` URI of a file, as used in ``Sources``."""
    return f"bids:{dataset}:{Path(os.path.relpath(path, root)).as_posix()}"
