"""Nipype workflow factories (``init_<noun>_wf``) of bids-synth."""

from __future__ import annotations

from pathlib import Path

from bids_synth import __version__

#: the top-level workflow's name (its folder in the work folder)
WORKFLOW_NAME = "bids_synth_wf"


def workflow_base_dir(work_dir: str | Path) -> Path:
    """Where this version of bids-synth keeps its nipype cache in ``work_dir``: another version
    computes afresh (its code may differ; nipype hashes inputs, not code)."""
    return Path(work_dir) / f"bids-synth-{__version__}"


def unit_work_folder(work_dir: str | Path, subject: str, session: str | None) -> Path:
    """The nipype folder of one participant/session's branch."""
    branch = f"ses_{session}_wf" if session else "anat_wf"
    return workflow_base_dir(work_dir) / WORKFLOW_NAME / f"sub_{subject}_wf" / branch
