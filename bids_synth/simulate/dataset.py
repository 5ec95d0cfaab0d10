"""A simulated BIDS dataset and its ground truth, written from the generative head model.

Layout of ``out_dir`` (a raw BIDS dataset; CT is listed in ``.bidsignore`` until BEP024 lands):

- ``participants.tsv`` (``site``, ``traveling``); traveling subjects have one session per site
  (``ses-site<k>``) and a ``sub-<label>_sessions.tsv``; the others are scanned once, at site
  ``1 + (i mod K)``, without a session level;
- ``sub-*/[ses-*/]anat/*_{T1w,T2w,PD,FLAIR,CT}.nii.gz`` + JSON sidecars with the simulated
  scanner and sequence parameters. Every image other than the T1w is given a small random rigid
  head movement relative to the T1w (the pipeline must register it); the truth is in the ground
  truth. ``thick_slices={"T2w": 3}`` acquires the T2w as 2D axial slices three times thicker
  than ``resolution`` (sidecar ``SliceThickness`` and ``SpacingBetweenSlices``), at every site
  or only at the sites in ``thick_slice_sites`` (a site's own protocol);
- ``derivatives/ground-truth/``: per session, the clean high-resolution images
  (``desc-clean``, sidecars with every degradation parameter and the rigid movement), the bias
  fields (``desc-biasfield``), the μ-map at 511 keV (``desc-clean_mumap``), the tissue labels
  (``dseg`` + root ``dseg.tsv``; its sidecar holds all parameters of the draw) and the head mask.

Raw images are int16 (MR in scanner units, the reference tissue near 1000; CT in HU), ground
truth float32. Sites are the fixed styles
:meth:`ScannerStyle.for_site(k) <bids_synth.simulate.scanner.ScannerStyle.for_site>`.
Deterministic: the same arguments give bitwise-identical files on a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_synth import __version__
from bids_synth.errors import OutputError, UsageError
from bids_synth.modalities import CT_HU_RANGE
from bids_synth.progress import progress

LOG = logging.getLogger("bids_synth.simulate")

DEFAULT_MODALITIES = ("T1w", "T2w", "CT")
MIN_RESOLUTION_MM = 0.5
MAX_ROTATION_DEG = 4.0
MAX_TRANSLATION_MM = 4.0
_SCANNING_SEQUENCE = {"SE": "SE", "FLASH": "GR", "IR": "IR", "MPRAGE": "GR\\IR"}
_DESCRIPTIONS = {
    "clean": "noise-free, bias-free image on the simulation grid (ground truth)",
    "biasfield": "multiplicative receive bias field applied to the acquired image",
    "head": "head mask (tissue fraction of outside air below one half)",
}


def write_simulated_dataset(
    out_dir,
    *,
    n_subjects: int = 2,
    sites: int = 2,
    traveling_subjects: int = 1,
    modalities=DEFAULT_MODALITIES,
    resolution=2.0,
    thick_slices=None,
    thick_slice_sites=None,
    noise: float | None = 3.0,
    label_source: str = "phantom",
    seed: int = 0,
    device: str = "cpu",
    overwrite: bool = False,
) -> Path:
    """Simulate and write the dataset (see the module docstring); return its folder.

    ``noise`` is in percent (None: each site's own level); ``resolution`` in mm, one or three
    values; ``thick_slices`` maps a contrast to its slice thickness over ``resolution`` (2D axial
    slices along the third axis), acquired at the sites in ``thick_slice_sites`` (None: all).
    """
    out = Path(out_dir)
    _check_arguments(
        n_subjects=n_subjects,
        sites=sites,
        traveling=traveling_subjects,
        modalities=modalities,
        resolution=resolution,
        noise=noise,
        label_source=label_source,
        thick_slices=thick_slices or {},
        thick_slice_sites=thick_slice_sites,
    )
    resolutions = _thick_slice_resolutions(resolution, thick_slices or {})
    device = _device(device)
    _check_output(out, overwrite)
    _load_label_source(label_source, device)
    plan = _session_plan(n_subjects, sites, traveling_subjects)
    _write_dataset_files(out, plan, modalities, seed)
    with progress(None, total=len(plan), desc="simulate", unit="session") as bar:
        for subject, sessions in _by_subject(plan).items():
            anatomy = _draw_anatomy(subject, seed, label_source, resolution, device)
            for session, site in sessions:
                _write_session(
                    out,
                    anatomy,
                    subject,
                    session,
                    site,
                    modalities=modalities,
                    noise=None if noise is None else noise / 100,
                    resolution=resolution,
                    resolutions=resolutions
                    if thick_slice_sites is None or site in thick_slice_sites
                    else {},
                    seed=seed,
                )
                bar.update()
    LOG.info("wrote %d sessions of %d participants to %s", len(plan), n_subjects, out)
    return out


def _check_arguments(
    *,
    n_subjects,
    sites,
    traveling,
    modalities,
    resolution,
    noise,
    label_source,
    thick_slices,
    thick_slice_sites,
) -> None:
    from bids_synth.simulate import CONTRASTS as contrasts
    from bids_synth.simulate import LABEL_SOURCES as label_sources

    if n_subjects < 1 or sites < 1:
        raise UsageError("--n-subjects and --sites must be at least 1")
    if not 0 <= traveling <= n_subjects:
        raise UsageError(f"--traveling-subjects must be between 0 and {n_subjects}")
    unknown = [m for m in modalities if m not in contrasts]
    if unknown or not modalities:
        raise UsageError(f"unknown modality {unknown}; choose from {', '.join(contrasts)}")
    if min(np.atleast_1d(resolution)) < MIN_RESOLUTION_MM:
        raise UsageError(f"--resolution must be at least {MIN_RESOLUTION_MM} mm")
    if noise is not None and not 0 <= noise < 100:
        raise UsageError("--noise is a percentage between 0 and 100")
    if any(c not in modalities or c == "CT" or not f > 1 for c, f in thick_slices.items()):
        raise UsageError("--thick-slices takes MR modalities being simulated, with factors above 1")
    if thick_slice_sites is not None and not thick_slices:
        raise UsageError("--thick-slice-sites needs --thick-slices")
    if thick_slice_sites is not None and not set(thick_slice_sites) <= set(range(1, sites + 1)):
        raise UsageError(f"--thick-slice-sites must be among the sites 1 to {sites}")
    if label_source not in label_sources:
        raise UsageError(
            f"unknown label source {label_source!r}; choose from {', '.join(label_sources)}"
        )


def _thick_slice_resolutions(resolution, thick_slices: dict[str, float]) -> dict[str, tuple]:
    """Per-contrast voxel sizes: ``resolution`` with the third axis ``factor`` times coarser."""
    from bids_synth.simulate.grids import as_spacing

    voxel = as_spacing(resolution)
    return {c: (*voxel[:2], voxel[2] * factor) for c, factor in thick_slices.items()}


def _device(spec: str):
    from bids_synth.nn.devices import resolve_device

    try:
        return resolve_device(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} is not empty (use --overwrite to write into it)")


def _session_plan(n_subjects: int, sites: int, traveling: int) -> list[tuple[str, str | None, int]]:
    """``(subject, session, site)`` per session: the first ``traveling`` subjects visit all sites."""
    width = max(2, len(str(n_subjects)))
    plan = []
    for i in range(n_subjects):
        subject = f"{i + 1:0{width}d}"
        if i < traveling:
            plan += [(subject, f"site{k}", k) for k in range(1, sites + 1)]
        else:
            plan.append((subject, None, 1 + (i - traveling) % sites))
    return plan


def _by_subject(plan):
    grouped: dict[str, list[tuple[str | None, int]]] = {}
    for subject, session, site in plan:
        grouped.setdefault(subject, []).append((session, site))
    return grouped


def _subject_seed(seed: int, subject: str) -> int:
    return int(np.random.SeedSequence([seed, int(subject)]).generate_state(1)[0])


def _load_label_source(label_source: str, device: str) -> None:
    """Load (and cache) the label source before anything is written: reference maps may be missing."""
    from bids_synth.simulate.label_sources import get_label_source

    try:
        get_label_source(label_source, device)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc


def _draw_anatomy(subject: str, seed: int, label_source: str, resolution, device):
    from bids_synth.simulate import draw_anatomy

    return draw_anatomy(
        _subject_seed(seed, subject),
        label_source=label_source,
        spacing=float(min(np.atleast_1d(resolution))),
        device=device,
    )


def _write_dataset_files(out: Path, plan, modalities, seed: int) -> None:
    from bids_synth.fileio import atomic_write_json, atomic_write_text, descriptions_tsv
    from bids_synth.simulate import TISSUE_DESCRIPTIONS, Tissue

    generated_by = [
        {
            "Name": "bids-synth",
            "Version": __version__,
            "Description": f"bids-synth simulate (generative head model), seed {seed}",
        }
    ]
    atomic_write_json(
        out / "dataset_description.json",
        {
            "Name": f"bids-synth simulated heads (seed {seed})",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids-synth generative head model"],
            "GeneratedBy": generated_by,
        },
    )
    atomic_write_text(
        out / "README",
        (
            "Simulated head images from the bids-synth generative head model: no real participant.\n"
            f"Modalities: {', '.join(modalities)}. Traveling participants have one session per site.\n"
            "Ground truth (clean images, labels, degradation parameters): derivatives/ground-truth.\n"
        ),
    )
    atomic_write_text(out / ".bidsignore", "*_CT.nii.gz\n*_CT.json\n")
    subjects = _by_subject(plan)
    rows = ["participant_id\tsite\ttraveling"]
    for subject, sessions in subjects.items():
        traveling = sessions[0][0] is not None
        rows.append(f"sub-{subject}\tsite{sessions[0][1]}\t{'yes' if traveling else 'no'}")
        if traveling:
            lines = ["session_id\tsite"] + [f"ses-{ses}\tsite{site}" for ses, site in sessions]
            atomic_write_text(
                out / f"sub-{subject}" / f"sub-{subject}_sessions.tsv", "\n".join(lines) + "\n"
            )
    atomic_write_text(out / "participants.tsv", "\n".join(rows) + "\n")
    if any(session is not None for _, session, _ in plan):  # a sidecar needs its sessions files
        atomic_write_json(
            out / "sessions.json", {"site": {"Description": "scanner site of the session"}}
        )
    atomic_write_json(
        out / "participants.json",
        {
            "site": {
                "Description": "scanner site (first site for traveling participants; see the sessions files)"
            },
            "traveling": {
                "Description": "scanned at every site, one session per site",
                "Levels": {"yes": "traveling participant", "no": "one session"},
            },
        },
    )
    truth = out / "derivatives" / "ground-truth"
    atomic_write_json(
        truth / "dataset_description.json",
        {
            "Name": "bids-synth simulation ground truth",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": generated_by,
            "SourceDatasets": [{"URL": "../.."}],
        },
    )
    atomic_write_text(
        truth / "dseg.tsv",
        "index\tname\tdescription\n"
        + "".join(f"{t.value}\t{t.name.lower()}\t{TISSUE_DESCRIPTIONS[t]}\n" for t in Tissue),
    )
    atomic_write_text(truth / "descriptions.tsv", descriptions_tsv(_DESCRIPTIONS))
    atomic_write_text(truth / ".bidsignore", "*_CT.*\n*_mumap.*\n")  # no BIDS suffix yet
    atomic_write_json(truth / "dseg.json", {"description": {"Description": "the tissue class"}})
    atomic_write_text(
        truth / "README",
        (
            "Ground truth of the simulated heads in ../..: clean images, tissue labels (dseg), head\n"
            "masks, bias fields and μ-maps; every parameter of the simulation in the sidecars.\n"
        ),
    )


def _write_session(
    out: Path,
    anatomy,
    subject: str,
    session: str | None,
    site: int,
    *,
    modalities,
    noise,
    resolution,
    resolutions,
    seed: int,
) -> None:
    from bids_synth.fileio import atomic_write_json
    from bids_synth.simulate import ScannerStyle, acquire

    draw = acquire(
        anatomy,
        ScannerStyle.for_site(site),
        contrasts=modalities,
        site=site,
        noise=noise,
        resolution=resolution,
        resolutions=resolutions,
    )
    base = {"subject": subject, "session": session}
    truth = out / "derivatives" / "ground-truth"
    poses = {}
    for contrast in modalities:
        image, affine = draw.acquired[contrast]
        pose = _head_movement(seed, subject, session, contrast) if contrast != "T1w" else np.eye(4)
        poses[contrast] = _pose_json(pose)
        raw = {**base, "suffix": contrast, "extension": ".nii.gz"}
        low, high = CT_HU_RANGE if contrast == "CT" else (0, np.iinfo(np.int16).max)
        data = np.clip(np.rint(image.cpu().numpy()), low, high).astype(np.int16)
        _save(data, pose @ affine, out / _anat_path(raw))
        atomic_write_json(
            out / _anat_path({**raw, "extension": ".json"}),
            _raw_sidecar(draw.params, contrast, site),
        )
        clean = {**base, "desc": "clean", "suffix": contrast, "extension": ".nii.gz"}
        _save(draw.clean[contrast].cpu().numpy(), draw.affine, truth / _anat_path(clean))
        atomic_write_json(
            truth / _anat_path({**clean, "extension": ".json"}),
            {
                **draw.params["contrasts"][contrast],
                "Site": f"site{site}",
                "HeadMovement": poses[contrast],
                "SkullStripped": False,
            },
        )
        if contrast in draw.bias:
            bias = {**clean, "desc": "biasfield"}
            _save(draw.bias[contrast].cpu().numpy(), draw.affine, truth / _anat_path(bias))
            atomic_write_json(
                truth / _anat_path({**bias, "extension": ".json"}), {"SkullStripped": False}
            )
    if draw.mumap is not None:
        _save(
            draw.mumap.cpu().numpy(),
            draw.affine,
            truth
            / _anat_path({**base, "desc": "clean", "suffix": "mumap", "extension": ".nii.gz"}),
        )
    dseg = {**base, "suffix": "dseg", "extension": ".nii.gz"}
    _save(draw.labels.cpu().numpy().astype(np.uint8), draw.affine, truth / _anat_path(dseg))
    atomic_write_json(
        truth / _anat_path({**dseg, "extension": ".json"}), {**draw.params, "HeadMovement": poses}
    )
    mask = {**base, "desc": "head", "suffix": "mask", "extension": ".nii.gz"}
    _save(draw.head_mask.cpu().numpy().astype(np.uint8), draw.affine, truth / _anat_path(mask))


def _anat_path(entities: dict) -> str:
    """``sub-S[/ses-T]/anat/sub-S[_ses-T][_desc-D]_SUFFIX.EXT``: BIDS naming without pybids."""
    session = f"ses-{entities['session']}" if entities.get("session") else None
    desc = f"desc-{entities['desc']}" if entities.get("desc") else None
    subject = f"sub-{entities['subject']}"
    name = "_".join(part for part in (subject, session, desc, entities["suffix"]) if part)
    folder = "/".join(part for part in (subject, session, "anat") if part)
    return f"{folder}/{name}{entities['extension']}"


def _head_movement(seed: int, subject: str, session: str | None, contrast: str) -> np.ndarray:
    """A small random rigid movement (world → world, about the grid centre at the origin)."""
    from bids_synth.simulate.deformation import random_affine
    from bids_synth.simulate.seeding import numpy_rng

    rng = numpy_rng(seed, "head-movement", subject, session, contrast)
    movement = np.eye(4)
    movement[:3, :3] = random_affine(rng, rotation_deg=MAX_ROTATION_DEG, scaling=0.0, shear=0.0)
    movement[:3, 3] = rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3)
    return movement


def _pose_json(movement: np.ndarray) -> dict:
    cosine = np.clip((np.trace(movement[:3, :3]) - 1) / 2, -1, 1)
    return {
        "Description": "rigid head movement relative to the T1w: a point at world position x in "
        "the T1w is at Matrix @ x in this image",
        "Matrix": np.round(movement, 6).tolist(),
        "RotationAngleDegrees": round(float(np.degrees(np.arccos(cosine))), 4),
        "TranslationMM": np.round(movement[:3, 3], 4).tolist(),
    }


def _raw_sidecar(params: dict, contrast: str, site: int) -> dict:
    style = params["style"]
    info = params["contrasts"][contrast]
    acquisition = info["acquisition"]
    sidecar = {
        "Manufacturer": "bids-synth",
        "ManufacturersModelName": f"simulated {style['name']}",
        "InstitutionName": f"site{site}",
    }
    if acquisition["slice_thickness_mm"] is not None:
        sidecar["SliceThickness"] = acquisition["slice_thickness_mm"]
    if acquisition["slice_axis"] is not None:
        sidecar["SpacingBetweenSlices"] = acquisition["voxel_mm"][acquisition["slice_axis"]]
    if contrast == "CT":
        return {
            **sidecar,
            "Modality": "CT",
            "KVP": info["kvp"],
            "ConvolutionKernel": f"gaussian FWHM {info['kernel_fwhm_mm']:.2f} mm",
        }
    sequence = info["sequence"]
    sidecar.update(
        {
            "Modality": "MR",
            "MagneticFieldStrength": info["field_strength_T"],
            "ScanningSequence": _SCANNING_SEQUENCE[sequence["kind"]],
            "PulseSequenceType": sequence["kind"],
            "MRAcquisitionType": "3D" if acquisition["slice_axis"] is None else "2D",
            "RepetitionTime": round(sequence["tr"] / 1000, 6),
            "EchoTime": round(sequence["te"] / 1000, 6),
            "FlipAngle": round(sequence["flip_deg"], 3),
        }
    )
    if "ti" in sequence:
        sidecar["InversionTime"] = round(sequence["ti"] / 1000, 6)
    return sidecar


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    from bids_synth.fileio import atomic_save_nifti

    if data.dtype == np.float64:
        data = data.astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    atomic_save_nifti(img, path)
