"""``bids-synth import-synthrad SRC_DIR BIDS_OUT``: a SynthRAD challenge folder as a BIDS dataset.

SynthRAD gives one folder per patient (found anywhere under SRC_DIR) holding ``ct.nii.gz``, a
``mask.nii.gz`` and the input image: ``mr.nii.gz`` (task 1, MR → CT) or ``cbct.nii.gz`` (task 2,
CBCT → CT). Each patient becomes ``sub-<folder name, alphanumerics only>`` with::

    sub-1BA001/anat/sub-1BA001_T1w.nii.gz         mr.nii.gz (suffix set by --mr-suffix)
    sub-1BA001/anat/sub-1BA001_acq-cbct_CT.nii.gz cbct.nii.gz
    sub-1BA001/anat/sub-1BA001_CT.nii.gz          ct.nii.gz
    derivatives/synthrad-masks/sub-1BA001/anat/sub-1BA001_desc-body_mask.nii.gz

plus ``dataset_description.json``, ``participants.tsv`` (original id and anatomical region, the
parent folder's name) and a ``.bidsignore`` for the CT files the BIDS schema cannot name yet.
``bids-synth train --bids-dir BIDS_OUT --source T1w --target CT`` then trains on it, the body mask
restricting the loss.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import bids_synth
from bids_synth.argtypes import OneLineErrorParser
from bids_synth.bids import build_derivative_path, build_raw_path
from bids_synth.cli import guarded, setup_logging
from bids_synth.errors import InputDatasetError, OutputError
from bids_synth.fileio import (
    atomic_copy,
    atomic_write_json,
    atomic_write_text,
    descriptions_tsv,
    load_image,
)

LOG = logging.getLogger("bids_synth")
GENERATOR = "bids-synth import-synthrad"
MASKS = "derivatives/synthrad-masks"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="bids-synth import-synthrad",
        description=__doc__.split("\n\n")[0],
        epilog="Layout: see `python -m pydoc bids_synth.cli.import_synthrad`.",
    )
    parser.add_argument(
        "src_dir", type=Path, help="SynthRAD folder (patient folders anywhere below)"
    )
    parser.add_argument(
        "bids_out", type=Path, help="BIDS dataset to create (empty or a previous import)"
    )
    parser.add_argument(
        "--mr-suffix", default="T1w", help="BIDS suffix of mr.nii.gz (default: T1w)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _image(folder: Path, stem: str) -> Path | None:
    return next(
        (
            folder / f"{stem}{ext}"
            for ext in (".nii.gz", ".nii")
            if (folder / f"{stem}{ext}").is_file()
        ),
        None,
    )


def find_patients(src: Path) -> list[dict]:
    """Patient folders under ``src``: dicts with label, source id, region and the image paths."""
    if not src.is_dir():
        raise InputDatasetError(f"{src}: not a directory")
    patients, labels = [], {}
    for ct in sorted(p for p in src.rglob("ct.nii*") if p.name in ("ct.nii", "ct.nii.gz")):
        folder = ct.parent
        source, kind = (
            (_image(folder, "mr"), "mr")
            if _image(folder, "mr")
            else (_image(folder, "cbct"), "cbct")
        )
        if source is None:
            LOG.warning("skipping %s: no mr.nii.gz or cbct.nii.gz beside ct", folder)
            continue
        label = re.sub(r"[^A-Za-z0-9]", "", folder.name)
        if not label:
            raise InputDatasetError(f"{folder}: cannot make a subject label from the folder name")
        if label in labels:
            raise InputDatasetError(f"{folder} and {labels[label]} both become sub-{label}")
        labels[label] = folder
        patients.append(
            {
                "label": label,
                "source_id": folder.name,
                "region": folder.parent.name,
                "kind": kind,
                "source": source,
                "ct": ct,
                "mask": _image(folder, "mask"),
            }
        )
    if not patients:
        raise InputDatasetError(
            f"{src}: no SynthRAD patient folder (ct.nii.gz with mr.nii.gz or cbct.nii.gz) found"
        )
    return patients


def _check_output(src: Path, out: Path) -> None:
    src, out = src.resolve(), out.resolve()
    if out == src or src in out.parents:
        raise OutputError(f"{out}: the BIDS output must not be inside the SynthRAD folder")
    description = out / "dataset_description.json"
    ours = description.is_file() and GENERATOR in description.read_text()
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise OutputError(f"{out}: exists and is not empty (nor a previous import-synthrad output)")


def _copy_image(path: Path, destination: Path, *, what: str) -> None:
    load_image(path, what=what)  # refuse unreadable or degenerate images before copying
    atomic_copy(path, destination)


def _extension(path: Path) -> str:
    return ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"


def import_patient(patient: dict, out: Path, *, mr_suffix: str) -> None:
    """Copy one patient's images to their BIDS paths."""
    sub = patient["label"]
    source_entities = (
        {"subject": sub, "suffix": mr_suffix}
        if patient["kind"] == "mr"
        else {"subject": sub, "acquisition": "cbct", "suffix": "CT"}
    )
    for path, entities, what in (
        (patient["source"], source_entities, patient["kind"]),
        (patient["ct"], {"subject": sub, "suffix": "CT"}, "ct"),
    ):
        _copy_image(
            path, out / build_raw_path({**entities, "extension": _extension(path)}), what=what
        )
    if patient["mask"] is not None:
        entities = {
            "subject": sub,
            "desc": "body",
            "suffix": "mask",
            "extension": _extension(patient["mask"]),
        }
        _copy_image(patient["mask"], out / MASKS / build_derivative_path(entities), what="mask")


def _write_metadata(out: Path, patients: list[dict]) -> None:
    generated_by = [{"Name": GENERATOR, "Version": bids_synth.__version__}]
    atomic_write_json(
        out / "dataset_description.json",
        {
            "Name": "SynthRAD (imported)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": generated_by,
        },
    )
    rows = ["participant_id\tsource_id\tregion\tinput"]
    rows += [f"sub-{p['label']}\t{p['source_id']}\t{p['region']}\t{p['kind']}" for p in patients]
    atomic_write_text(out / "participants.tsv", "\n".join(rows) + "\n")
    atomic_write_text(out / ".bidsignore", "*_CT.nii*\n*_CT.json\n")
    if any(p["mask"] is not None for p in patients):
        atomic_write_json(
            out / MASKS / "dataset_description.json",
            {
                "Name": "SynthRAD body masks",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": generated_by,
            },
        )
        atomic_write_text(
            out / MASKS / "descriptions.tsv", descriptions_tsv({"body": "SynthRAD body mask"})
        )


@guarded
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    patients = find_patients(args.src_dir)
    _check_output(args.src_dir, args.bids_out)
    for patient in patients:
        LOG.info("importing %s as sub-%s", patient["source_id"], patient["label"])
        import_patient(patient, args.bids_out, mr_suffix=args.mr_suffix)
    _write_metadata(args.bids_out, patients)
    print(f"imported {len(patients)} SynthRAD patients into {args.bids_out}")
    return 0
