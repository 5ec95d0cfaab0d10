"""CT in Hounsfield units and the 511 keV attenuation map derived from it.

HU mix linearly with the tissue fractions (attenuation is additive), so partial-volume voxels get
the fraction-weighted HU. Bone HU vary smoothly inside a subject (mineralisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bids_synth.modalities import CT_HU_RANGE
from bids_synth.simulate.tissues import Tissue

# Per tissue: (mean HU, between-subject sd of the mean, within-subject smooth-variation sd).
# Brain, CSF and fat from the literature; bone and soft tissue adjusted so that HU histograms of
# bone and extra-cranial soft tissue match the real head CT of the reference data (see
# benchmarks/bench_simulate.py).
HU_DISTRIBUTIONS = {
    Tissue.BACKGROUND: (-1000.0, 0.0, 0.0),
    Tissue.SKIN: (35.0, 8.0, 5.0),
    Tissue.FAT: (-90.0, 10.0, 8.0),
    Tissue.MUSCLE: (45.0, 6.0, 5.0),
    Tissue.CORTICAL_BONE: (1600.0, 150.0, 200.0),
    Tissue.MARROW: (650.0, 80.0, 100.0),
    Tissue.SINUS: (-980.0, 10.0, 10.0),
    Tissue.CSF: (8.0, 3.0, 2.0),
    Tissue.VENTRICLE: (8.0, 3.0, 2.0),
    Tissue.GM: (40.0, 2.5, 1.5),
    Tissue.WM: (27.0, 2.5, 1.5),
    Tissue.DEEP_GM: (37.0, 2.5, 1.5),
    Tissue.LESION: (22.0, 3.0, 2.0),
}


def draw_tissue_hu(rng: np.random.Generator) -> np.ndarray:
    """One subject's mean HU per tissue, ``(N_TISSUES,)``."""
    means = np.array([HU_DISTRIBUTIONS[t][0] for t in Tissue])
    spreads = np.array([HU_DISTRIBUTIONS[t][1] for t in Tissue])
    return means + rng.normal(0, 1, len(Tissue)) * spreads


def within_tissue_sd() -> np.ndarray:
    """Standard deviation of the smooth within-subject HU variation per tissue, ``(N_TISSUES,)``."""
    return np.array([HU_DISTRIBUTIONS[t][2] for t in Tissue])


def clean_ct(fractions: torch.Tensor, tissue_hu: np.ndarray, texture: torch.Tensor) -> torch.Tensor:
    """``HU(x) = Σ_t f_t(x)·(HU_t + sd_t·n(x))`` with ``n`` a unit-variance smooth field."""
    hu = torch.as_tensor(tissue_hu, dtype=torch.float32, device=fractions.device)
    sd = torch.as_tensor(within_tissue_sd(), dtype=torch.float32, device=fractions.device)
    mean = torch.einsum("t...,t->...", fractions, hu)
    variation = torch.einsum("t...,t->...", fractions, sd) * texture
    return (mean + variation).clamp(*CT_HU_RANGE)


@dataclass(frozen=True)
class CarneyCoefficients:
    """Bilinear CT→μ(511 keV) conversion of Carney et al. 2006 (Med. Phys. 33:976), per kVp.

    ``μ = 9.6e-5·(HU + 1000)`` cm⁻¹ up to ``breakpoint`` HU, then ``a·(HU + 1000) + b``.
    """

    a: float
    b: float
    breakpoint: float


CARNEY_2006 = {
    80: CarneyCoefficients(3.64e-5, 6.26e-2, 50),
    100: CarneyCoefficients(4.43e-5, 5.44e-2, 52),
    110: CarneyCoefficients(4.92e-5, 4.88e-2, 43),
    120: CarneyCoefficients(5.10e-5, 4.71e-2, 47),
    130: CarneyCoefficients(5.51e-5, 4.24e-2, 37),
    140: CarneyCoefficients(5.64e-5, 4.08e-2, 30),
}
WATER_MU_511 = 0.096  # cm⁻¹


def mu_map(hu: torch.Tensor, *, kvp: int = 120) -> torch.Tensor:
    """Linear attenuation coefficient at 511 keV (cm⁻¹) from CT HU acquired at ``kvp``."""
    if kvp not in CARNEY_2006:
        raise ValueError(f"no Carney coefficients for {kvp} kVp; known: {sorted(CARNEY_2006)}")
    c = CARNEY_2006[kvp]
    shifted = (hu + 1000).clamp(min=0)
    soft = WATER_MU_511 / 1000 * shifted
    bone = c.a * shifted + c.b
    return torch.where(hu <= c.breakpoint, soft, bone)
