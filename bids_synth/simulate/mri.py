"""MR signal equations and tissue relaxation properties.

Signals are magnitudes in arbitrary units proportional to the equilibrium magnetisation (PD = 1 for
pure water). Times in ms, flip angles in degrees.

- spin echo: ``S = PD·(1 − e^(−TR/T1))·e^(−TE/T2)``
- spoiled gradient echo (FLASH): ``S = PD·sin α·(1 − E1)/(1 − cos α·E1)·e^(−TE/T2*)``,
  ``E1 = e^(−TR/T1)``
- inversion recovery (FLAIR): ``S = PD·|1 − 2e^(−TI/T1) + e^(−TR/T1)|·e^(−TE/T2)``
- MPRAGE-like (inversion-prepared gradient echo, readout saturation neglected):
  ``S = PD·|1 − 2e^(−TI/T1) + e^(−TR/T1)|·sin α·e^(−TE/T2*)``
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bids_synth.modalities import SESSION_MR_SUFFIXES
from bids_synth.simulate.tissues import Tissue

# Tissue (T1 ms, T2 ms, T2* ms, PD). 1.5 T brain values from BrainWeb; 3 T T1 from the literature
# (GM ≈ 1300–1600, WM ≈ 800–1100, CSF ≈ 4000 ms). Bone: almost no visible signal. Fat and marrow
# have an *effective* PD below water's (spectral dephasing of the fat peaks), which brings scalp
# fat to the 1.1–1.7× WM seen in T1w images (checked against Colin27). GM's T2 and WM's PD
# (water content ≈ 0.71 against GM's ≈ 0.83) are set so that the heads' grey/white contrast in the
# T2-weighted images matches real ones: GM/WM 1.07–1.12 in PD (SPM's avg152PD: 1.16), 1.10–1.18
# in FLAIR (grey matter above white matter), 1.32–1.39 in T2w (avg152T2, an average: 1.28).
# With BrainWeb's 1.5 T T2 and PD (GM 83 ms, 0.86; WM 70 ms, 0.77) the PD was flat (0.98–1.05)
# and the FLAIR had grey matter *below* white matter (0.91–0.97).
_PROPERTIES = {
    1.5: {
        Tissue.SKIN: (800, 45, 30, 0.80),
        Tissue.FAT: (350, 70, 58, 0.70),
        Tissue.MUSCLE: (900, 47, 30, 1.00),
        Tissue.CORTICAL_BONE: (1000, 1.0, 0.5, 0.05),
        Tissue.MARROW: (380, 65, 40, 0.60),
        Tissue.CSF: (2569, 329, 58, 1.00),
        Tissue.VENTRICLE: (2569, 329, 58, 1.00),
        Tissue.GM: (833, 90, 69, 0.86),
        Tissue.WM: (500, 72, 61, 0.72),
        Tissue.DEEP_GM: (740, 75, 55, 0.82),
        Tissue.LESION: (900, 150, 90, 0.85),
    },
    3.0: {
        Tissue.SKIN: (1100, 40, 25, 0.80),
        Tissue.FAT: (380, 70, 35, 0.70),
        Tissue.MUSCLE: (1400, 40, 25, 1.00),
        Tissue.CORTICAL_BONE: (1200, 1.0, 0.4, 0.05),
        Tissue.MARROW: (400, 60, 30, 0.60),
        Tissue.CSF: (4000, 1000, 200, 1.00),
        Tissue.VENTRICLE: (4000, 1000, 200, 1.00),
        Tissue.GM: (1450, 95, 45, 0.86),
        Tissue.WM: (950, 72, 40, 0.72),
        Tissue.DEEP_GM: (1200, 65, 35, 0.82),
        Tissue.LESION: (1600, 160, 70, 0.85),
    },
}
FIELD_STRENGTHS = tuple(_PROPERTIES)
#: the MR contrasts of a session, FLAIR last: the order of a scanner style's random draws, which
#: every simulated dataset depends on
CONTRASTS_MR = tuple(sorted(SESSION_MR_SUFFIXES, key=lambda suffix: suffix == "FLAIR"))


def tissue_properties(field_strength: float, jitter: np.ndarray | None = None) -> np.ndarray:
    """Array ``(N_TISSUES, 4)`` of (T1, T2, T2*, PD); rows without signal (air) are zero.

    ``jitter`` (same shape) multiplies the table: a subject's biological variation.
    """
    table = np.zeros((len(Tissue), 4))
    for tissue, values in _PROPERTIES[field_strength].items():
        table[tissue] = values
    return table if jitter is None else table * jitter


def draw_property_jitter(
    rng: np.random.Generator, *, spread: float = 0.05, fluid_spread: float = 0.015
) -> np.ndarray:
    """Per-subject multiplicative jitter of every tissue property, log-normal with ``spread``
    (``fluid_spread`` for CSF, which is nearly pure water everywhere)."""
    spreads = np.full((len(Tissue), 1), spread)
    spreads[[Tissue.CSF, Tissue.VENTRICLE]] = fluid_spread
    return np.exp(rng.normal(0, 1, (len(Tissue), 4)) * spreads)


@dataclass(frozen=True)
class Sequence:
    """Pulse-sequence parameters of one contrast (ms, degrees)."""

    kind: str  # "SE", "FLASH", "IR" (FLAIR) or "MPRAGE"
    tr: float
    te: float
    ti: float | None = None
    flip_deg: float = 90.0

    def signal(self, properties: np.ndarray) -> np.ndarray:
        """Noise-free signal of each tissue row of ``properties`` (T1, T2, T2*, PD)."""
        t1, t2, t2s = (np.maximum(properties[:, i], 1e-6) for i in range(3))
        pd = properties[:, 3]
        e1 = np.exp(-self.tr / t1)
        alpha = math.radians(self.flip_deg)
        if self.kind == "SE":
            return pd * (1 - e1) * np.exp(-self.te / t2)
        if self.kind == "FLASH":
            return (
                pd
                * math.sin(alpha)
                * (1 - e1)
                / (1 - math.cos(alpha) * e1)
                * np.exp(-self.te / t2s)
            )
        inversion = np.abs(1 - 2 * np.exp(-self.ti / t1) + e1)
        if self.kind == "IR":
            return pd * inversion * np.exp(-self.te / t2)
        if self.kind == "MPRAGE":
            return pd * inversion * math.sin(alpha) * np.exp(-self.te / t2s)
        raise ValueError(f"unknown sequence kind {self.kind!r}")

    def to_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def csf_null_inversion_time(tr: float, t1_csf: float) -> float:
    """TI nulling CSF in inversion recovery: ``TI = T1·ln(2/(1 + e^(−TR/T1)))``."""
    return t1_csf * math.log(2 / (1 + math.exp(-tr / t1_csf)))


def draw_sequence(contrast: str, field_strength: float, rng: np.random.Generator) -> Sequence:
    """Typical clinical parameters for ``contrast`` at ``field_strength`` with random variation."""
    high_field = field_strength >= 3
    if contrast == "T1w":
        if rng.random() < 0.5:
            tr = rng.uniform(1900, 2500) if high_field else rng.uniform(1800, 2200)
            ti = rng.uniform(850, 1100) if high_field else rng.uniform(700, 1000)
            return Sequence("MPRAGE", tr, rng.uniform(2.5, 4.0), ti, rng.uniform(8, 10))
        return Sequence("FLASH", rng.uniform(15, 25), rng.uniform(3, 6), None, rng.uniform(20, 35))
    if contrast == "T2w":
        return Sequence("SE", rng.uniform(3000, 6000), rng.uniform(80, 120))
    if contrast == "PD":
        return Sequence("SE", rng.uniform(2500, 5000), rng.uniform(10, 25))
    if contrast == "FLAIR":
        tr = rng.uniform(8000, 10000)
        t1_csf = _PROPERTIES[field_strength][Tissue.CSF][0]
        ti = csf_null_inversion_time(tr, t1_csf) * rng.uniform(0.98, 1.02)
        return Sequence("IR", tr, rng.uniform(90, 140), ti)
    raise ValueError(f"unknown MR contrast {contrast!r}; expected one of {CONTRASTS_MR}")


def reference_signal(signals: np.ndarray) -> float:
    """The intensity noise levels are relative to: the brightest of GM, WM and CSF (as BrainWeb)."""
    return float(max(signals[Tissue.GM], signals[Tissue.WM], signals[Tissue.CSF]))
