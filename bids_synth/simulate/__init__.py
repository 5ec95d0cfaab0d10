"""The generative head model: label sources, deformation, MR physics, CT, degradations.

Pure torch/numpy (scipy and nibabel only to read reference label files and, in :mod:`.dataset`,
to write a simulated BIDS dataset): no nipype, no pybids.

>>> from bids_synth.simulate import simulate_subject, TrainingPairs
>>> draw = simulate_subject(0, spacing=2.0, contrasts=("T1w", "CT"))
"""

from bids_synth.simulate.anatomy import DEFAULT_FOV_MM, Anatomy, draw_anatomy
from bids_synth.simulate.ct import mu_map
from bids_synth.simulate.label_sources import LABEL_SOURCES
from bids_synth.simulate.normalisation import (
    CT_SCALE_HU,
    MR_PERCENTILE,
    mr_scale,
)
from bids_synth.simulate.scanner import CONTRASTS, ScannerStyle
from bids_synth.simulate.subject import SubjectDraw, acquire, simulate_subject
from bids_synth.simulate.tissues import TISSUE_DESCRIPTIONS, Tissue
from bids_synth.simulate.training import TrainingPairs

__all__ = [
    "CONTRASTS",
    "CT_SCALE_HU",
    "DEFAULT_FOV_MM",
    "LABEL_SOURCES",
    "MR_PERCENTILE",
    "TISSUE_DESCRIPTIONS",
    "Anatomy",
    "ScannerStyle",
    "SubjectDraw",
    "Tissue",
    "TrainingPairs",
    "acquire",
    "draw_anatomy",
    "mr_scale",
    "mu_map",
    "simulate_subject",
]
