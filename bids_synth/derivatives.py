"""The derivatives dataset: its top-level files, sidecars, and the staging/commit of outputs."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_synth import __version__
from bids_synth.bids import bids_uri, build_derivative_path, source_entities
from bids_synth.fileio import (
    atomic_copy,
    atomic_save_nifti,
    atomic_write_json,
    atomic_write_text,
    copy_beside,
    descriptions_tsv,
    file_sha256,
    publish,
    remove_stale_temporaries,
)
from bids_synth.modalities import MR_SUFFIXES

CODE_URL = "https://github.com/bids-synth/bids-synth"
BIDS_VERSION = "1.10.0"

#: every ``desc-`` value bids-synth can write, with its meaning (descriptions.tsv)
DESCRIPTIONS = {
    "preproc": "N4 bias-field corrected; other modalities rigidly (or affinely) aligned to the T1w",
    "head": "head mask: everything inside the skin",
    "brain": "brain mask: brain tissue, ventricles and sulcal CSF",
}

#: files the BIDS schema cannot name yet (CT is a proposal, BEP024) and bids-synth's own logs;
#: folders without a trailing slash, which the BIDS validator would not match
BIDSIGNORE = (
    "*_CT.*",
    "*_mumap.*",
    "*_xfm.*",
    "sub-*/log",
    "logs",
    "group",
    "evaluation",
    "*.html",
)

LOCK_NAME = ".bids-synth.lock"

README = f"""\
A BIDS derivatives dataset written by bids-synth ({CODE_URL}):
preprocessed and synthesized anatomical images of the dataset in dataset_description.json
(SourceDatasets).

- Methods, to cite: logs/CITATION.md with its references in logs/CITATION.bib.
- Provenance of each image (sources, method, parameters, model bundle): its JSON sidecar.
- Outcome of each run: logs/<run_id>.json; reports: sub-<label>.html, group/report.html.
"""


def sidecar(
    *,
    sources: list[str],
    digests: dict[str, str],
    raw_root: str,
    entities: dict,
    reference: str,
    extra: dict | None = None,
) -> dict:
    """Sidecar content: ``Sources`` as BIDS URIs with their sha256 (``SourcesSha256``, from
    ``digests``: path -> sha256), the software, the fields BIDS requires for ``entities`` and
    any extra fields.

    ``reference`` is the raw T1w whose grid ``space-T1w`` names (its ``SpatialReference``); no
    output of bids-synth is skull-stripped (masks are written beside the images instead).
    """
    sources = list(dict.fromkeys(sources))  # one entry per file, first-use order
    required = {}
    if entities.get("suffix") in MR_SUFFIXES:  # BIDS: MR sidecars say whether skull-stripped
        required["SkullStripped"] = False
    if entities.get("space") == "T1w":
        required["SpatialReference"] = bids_uri(reference, raw_root)
    return {
        "Sources": [bids_uri(path, raw_root) for path in sources],
        "SourcesSha256": {bids_uri(path, raw_root): digests[path] for path in sources},
        "SoftwareName": "bids-synth",
        "SoftwareVersion": __version__,
        **required,
        **(extra or {}),
    }


def stage_image(in_file: str, entities: dict, folder: str, dtype: str = "") -> tuple[str, str]:
    """Write ``in_file`` under its derivative name into ``folder``; return (staged, relative)."""
    if in_file.endswith((".mat", ".h5", ".txt")):
        relative = build_derivative_path({**entities, "extension": Path(in_file).suffix})
        staged = atomic_copy(in_file, Path(folder) / Path(relative).name)
        return str(staged), relative
    relative = build_derivative_path({**entities, "extension": ".nii.gz"})
    image = nib.load(in_file)
    data = np.asanyarray(image.dataobj)
    if dtype:
        data = data.astype(dtype)
    header = image.header.copy()
    header.set_data_dtype(data.dtype)
    out = nib.Nifti1Image(data, image.affine, header)
    out.set_qform(image.affine, code=1)
    out.set_sform(image.affine, code=1)
    staged = atomic_save_nifti(out, Path(folder) / Path(relative).name)
    return str(staged), relative


def stage_json(meta: dict, entities: dict, folder: str) -> tuple[str, str]:
    relative = build_derivative_path({**entities, "extension": ".json"})
    staged = atomic_write_json(Path(folder) / Path(relative).name, meta)
    return str(staged), relative


def commit(
    pairs: list[tuple[str, str]],
    output_dir: str,
    record: str,
    *,
    raw_root: str,
    inputs: dict[str, str],
) -> list[str]:
    """Publish staged files as ``output_dir/relative``, all or none, remove the derivatives they
    make stale, then write ``record`` (``outputs``, ``inputs``, ``removed``); return ``outputs``.

    Every file is first copied beside its destination (where a full disk fails, and the copies
    are removed again), then all are renamed into place; temporary files of an earlier commit
    that was killed are removed first. ``inputs`` maps the BIDS URI of each input of the
    participant/session to its sha256: earlier derivatives in the same folders that are not
    rewritten now and were made from another version of an input (:func:`stale_derivatives`)
    are removed once the new files are in place, before the record is written (a commit killed
    in between leaves them to the next one).
    """
    targets = [(staged, Path(output_dir) / relative) for staged, relative in pairs]
    relatives = sorted(relative for _, relative in pairs)
    stale = stale_derivatives(output_dir, relatives, raw_root=raw_root, inputs=inputs)
    copies = []
    try:
        for staged, target in targets:
            remove_stale_temporaries(target)
            copies.append((copy_beside(staged, target), target))
    except BaseException:
        for tmp, _ in copies:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, target in copies:
        publish(tmp, target)
    removed = []
    for path in stale:  # the sidecar last: it is what marks the files as stale
        for file in [*sorted(set(_files_of(path)) - {path}), path]:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
            removed.append(file.relative_to(output_dir).as_posix())
    atomic_write_json(
        record,
        {"status": "success", "outputs": relatives, "inputs": inputs, "removed": removed},
    )
    return relatives


def stale_derivatives(
    output_dir: str, keep: list[str], *, raw_root: str, inputs: dict[str, str]
) -> list[Path]:
    """Sidecars in the folders of ``keep`` (paths relative to ``output_dir``), not in ``keep``,
    of derivatives made from another version of an input than ``inputs`` (URI -> sha256).

    A source counts as changed when its content differs, when another run of it is now the input
    (e.g. a new ``run-1`` T1w), or when it is gone from the raw dataset. An image differing from
    the inputs in other entities (acq, ce, rec, ...) is another selection: the derivatives named
    after it are kept while it is unchanged. Sidecars without ``SourcesSha256`` (other software,
    older versions) are never stale.
    """
    selections = {_selection(uri) for uri in inputs}
    others: dict[str, str | None] = {}  # sha256 of sources that are not inputs now

    def changed(uri: str, sha256: str) -> bool:
        if uri in inputs:
            return inputs[uri] != sha256
        if _selection(uri) in selections:
            return True  # another run of that input is the input now
        if uri not in others:
            path = Path(raw_root) / uri.split(":", 2)[-1]
            others[uri] = file_sha256(path) if path.is_file() else None
        return others[uri] != sha256

    stale = []
    for folder in sorted({Path(output_dir, relative).parent for relative in keep}):
        for path in sorted(folder.glob("*.json")):
            if path.relative_to(output_dir).as_posix() in keep:
                continue
            try:
                content = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # not a sidecar of bids-synth
            made_from = content.get("SourcesSha256") if isinstance(content, dict) else None
            if isinstance(made_from, dict) and any(
                changed(uri, sha256) for uri, sha256 in made_from.items()
            ):
                stale.append(path)
    return stale


def _selection(uri: str) -> tuple:
    """What a raw file URI was chosen as: its suffix and source entities, the run aside (of
    several runs, one is chosen: :func:`bids_synth.bids.choose_runs`)."""
    name = uri.rsplit("/", 1)[-1]
    entities = source_entities(name)
    entities.pop("run", None)
    return name.split(".", 1)[0].rsplit("_", 1)[-1], tuple(sorted(entities.items()))


def _files_of(sidecar_path: Path) -> list[Path]:
    """The sidecar and the files it describes (same name, other extension)."""
    stem = sidecar_path.name.removesuffix(".json")
    return list(sidecar_path.parent.glob(f"{glob.escape(stem)}.*"))


@contextlib.contextmanager
def dataset_lock(output_dir: str | Path):
    """Exclusive lock on the derivatives dataset, for files that several runs update."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_dataset_files(
    output_dir: str | Path, *, raw_root: str | Path, descriptions: dict
) -> None:
    """Write or update dataset_description.json, README, descriptions.tsv and .bidsignore
    (under a lock)."""
    output_dir = Path(output_dir)
    with dataset_lock(output_dir):
        for name in ("dataset_description.json", "README", "descriptions.tsv", ".bidsignore"):
            remove_stale_temporaries(output_dir / name)  # from a writer killed mid-write
        atomic_write_json(output_dir / "dataset_description.json", dataset_description(raw_root))
        atomic_write_text(output_dir / "README", README)
        known = _read_descriptions(output_dir / "descriptions.tsv")
        known.update(descriptions)
        atomic_write_text(output_dir / "descriptions.tsv", descriptions_tsv(known))
        ignored = _read_lines(output_dir / ".bidsignore")
        ignored += [line for line in BIDSIGNORE if line not in ignored]
        atomic_write_text(output_dir / ".bidsignore", "\n".join(ignored) + "\n")


def dataset_description(raw_root: str | Path) -> dict:
    generated_by = {"Name": "bids-synth", "Version": __version__, "CodeURL": CODE_URL}
    container = _container()
    if container:
        generated_by["Container"] = container
    raw_uri = Path(raw_root).resolve().as_uri()
    return {
        "Name": "bids-synth derivatives",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [{"URL": raw_uri}],
        "DatasetLinks": {"raw": raw_uri},
    }


def _container() -> dict | None:
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return {"Type": "apptainer", "Tag": os.environ.get("BIDS_SYNTH_IMAGE_TAG", __version__)}
    if os.environ.get("BIDS_SYNTH_CONTAINER"):
        return {
            "Type": os.environ["BIDS_SYNTH_CONTAINER"],
            "Tag": os.environ.get("BIDS_SYNTH_IMAGE_TAG", __version__),
        }
    return None


def _read_descriptions(path: Path) -> dict[str, str]:
    """``desc-`` label -> description; bare labels (older runs) are read too."""
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {
            row["desc_id"].removeprefix("desc-"): row["description"]
            for row in csv.DictReader(handle, delimiter="\t")
        }


def _read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
