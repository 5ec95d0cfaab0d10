"""Registration quality of a session's aligned images, for the subject report and the cohort table."""

from __future__ import annotations

from pathlib import Path

from bids_synth.metrics.registration import registration_quality
from bids_synth.reports.session import SessionFiles

COLUMN_PREFIX = "registration_nmi_"


def registered_images(files: SessionFiles) -> dict[str, Path]:
    """``{suffix: space-T1w_desc-preproc_<suffix> image}`` for every modality aligned to the T1w."""
    return {
        f.suffix: f.path for f in files.select(space="T1w", desc="preproc") if f.suffix != "T1w"
    }


def registration_scores(files: SessionFiles) -> dict[str, float]:
    """``{suffix: NMI}`` of each aligned image with the T1w, in the head mask (whole image without)."""
    if files.t1w is None:
        return {}
    t1w = files.volume(files.t1w)
    head = files.mask_volume("head", like=t1w)
    return {
        suffix: registration_quality(
            t1w.data, files.volume(path).on_grid_of(t1w).data, None if head is None else head.data
        )
        for suffix, path in registered_images(files).items()
    }


def registration_metrics(
    output_dir: str | Path, participant_id: str, session_id: str | None = None
) -> dict[str, float]:
    """Cohort-table columns ``registration_nmi_<suffix>`` of one participant/session.

    ``participant_id`` is ``sub-<label>``; ``session_id`` ``ses-<label>``, None or ``"n/a"``.
    """
    session = None if session_id in (None, "n/a") else session_id.removeprefix("ses-")
    files = SessionFiles(Path(output_dir), participant_id.removeprefix("sub-"), session)
    scores = registration_scores(files)
    return {COLUMN_PREFIX + suffix: round(value, 4) for suffix, value in scores.items()}
