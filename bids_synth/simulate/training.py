"""Batched, in-memory training pairs drawn on the fly from the head model.

Each subject draw (new anatomy, new scanner style, new noise level) yields ``patches_per_draw``
random patches centred on head voxels; draws happen on ``device`` (file label sources are
loaded once and deformed there with ``grid_sample``). Normalisation: :mod:`.normalisation`.

Harmonization pairs (``target_site=K``) are traveling subjects, as in DeepHarmony: one anatomy
acquired with a source style (a random style of its own, or a fixed site of ``source_sites``) is the
input, and the same anatomy at site ``K`` is the target.
"""

from __future__ import annotations

import numpy as np
import torch

from bids_synth.simulate.anatomy import default_shape, draw_anatomy
from bids_synth.simulate.label_sources import LABEL_SOURCES
from bids_synth.simulate.mri import CONTRASTS_MR
from bids_synth.simulate.normalisation import CT_SCALE_HU, mr_scale
from bids_synth.simulate.scanner import CONTRASTS, ScannerStyle
from bids_synth.simulate.seeding import numpy_rng
from bids_synth.simulate.subject import SubjectDraw, acquire, simulate_subject

CLEAN = "clean"
RANDOM_STYLE = None  # an entry of ``source_sites``: a random scanner style drawn for the subject


def harmonization_scale(target_site: int, contrast: str) -> float:
    """Scanner units of site ``target_site``'s reference tissue in ``contrast`` (its gain):
    harmonization targets are divided by it, so the brightest of GM/WM/CSF is about 1."""
    return float(ScannerStyle.for_site(target_site).mr[contrast].gain)


class TrainingPairs:
    """Infinite iterable of batches ``{"source", "target", "mask"}``.

    - ``source``: ``(B, len(source), *patch)`` float32, the acquired (``degrade_source``) or clean
      source contrasts (MR: each divided by its own scale; CT: HU / 1000);
    - ``target``: ``(B, 1, *patch)`` float32: a clean contrast (CT: HU / 1000; MR: divided by its
      own scale), or ``"clean"``: the noise-free version of the source (same bias, PSF and scale
      as the input: a denoising target). With ``"clean"`` the sources are alternatives: draw ``i``
      acquires ``source[i % len(source)]`` alone (one channel), so one denoiser learns them all;
    - ``mask``: ``(B, 1, *patch)`` bool head mask.

    - harmonization (``target_site=K``): ``target`` is an MR contrast of the same anatomy at site
      ``K``, noise-, bias- and PSF-free (the clean image on the simulation grid: the network learns
      site K's contrast, not its noise), divided by the fixed :func:`harmonization_scale` (so the
      prediction times that scale is in site K's scanner units); the sources are acquired with a
      style picked per draw from ``source_sites`` (``None``: a random style of the draw's own,
      an integer: that fixed site).

    ``noise`` is the range of the MR noise σ (fraction of the reference tissue signal), drawn
    uniformly per subject. The ``i``-th draw uses ``label_sources[i % len(label_sources)]``.
    ``normalise=False`` keeps physical units (MR scanner units, CT in HU) for callers that
    normalise themselves.
    """

    def __init__(
        self,
        source=("T1w",),
        target: str = "CT",
        *,
        label_sources=("phantom",),
        patch=(64, 64, 64),
        batch_size: int = 2,
        seed: int = 0,
        device: str | torch.device = "cpu",
        degrade_source: bool = True,
        noise=(0.0, 0.05),
        spacing=1.0,
        shape=None,
        patches_per_draw: int = 4,
        normalise: bool = True,
        target_site: int | None = None,
        source_sites=(RANDOM_STYLE,),
    ):
        self.source = (source,) if isinstance(source, str) else tuple(source)
        if not self.source or any(c not in CONTRASTS for c in self.source):
            raise ValueError(f"source contrasts must be among {CONTRASTS}, got {self.source}")
        if target not in (*CONTRASTS, CLEAN):
            raise ValueError(f"target must be one of {(*CONTRASTS, CLEAN)}, got {target!r}")
        if "CT" in self.source and target == CLEAN:
            raise ValueError('target "clean" (denoising) is for MR sources')
        if target_site is not None and (
            target not in CONTRASTS_MR or not set(self.source) <= set(CONTRASTS_MR)
        ):
            raise ValueError(
                f"harmonization (target_site) maps MR to MR, got {self.source} → {target}"
            )
        self.target_site = None if target_site is None else int(target_site)
        self.source_sites = tuple(None if s is None else int(s) for s in source_sites)
        if not self.source_sites:
            raise ValueError("source_sites needs at least one entry (None: a random style)")
        unknown = set(label_sources) - set(LABEL_SOURCES)
        if unknown or not label_sources:
            raise ValueError(f"label sources must be among {LABEL_SOURCES}, got {label_sources}")
        grid = shape or default_shape(spacing)
        if any(int(p) > int(g) for p, g in zip(patch, grid)):
            raise ValueError(f"patch {tuple(patch)} larger than the simulation grid {tuple(grid)}")
        self.target = target
        self.label_sources = tuple(label_sources)
        self.patch = tuple(int(p) for p in patch)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.degrade_source = degrade_source
        self.noise = (float(noise[0]), float(noise[1]))
        self.spacing = spacing
        self.shape = shape
        self.patches_per_draw = int(patches_per_draw)
        self.normalise = normalise

    def __iter__(self):
        pending = []
        draw_index = 0
        while True:
            while len(pending) < self.batch_size:
                pending.extend(self._patches(draw_index))
                draw_index += 1
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            yield {key: torch.stack([item[key] for item in batch]) for key in batch[0]}

    def sources(self, index: int) -> tuple[str, ...]:
        """The source contrasts (channels) of the ``index``-th draw."""
        if self.target == CLEAN:
            return (self.source[index % len(self.source)],)
        return self.source

    def draw(self, index: int) -> SubjectDraw:
        """The ``index``-th subject draw of this generator (the source acquisition)."""
        return self._draw(index)[0]

    def volumes(self, index: int) -> dict[str, torch.Tensor]:
        """The whole normalised volumes ``{"source", "target", "mask"}`` of the ``index``-th draw."""
        return self._volumes(*self._draw(index), self.sources(index))

    def _draw(self, index: int) -> tuple[SubjectDraw, torch.Tensor | None]:
        """The draw and, for harmonization, the clean target-site image of the same anatomy."""
        rng = numpy_rng(self.seed, "training-draw", index)
        seed, noise = int(rng.integers(2**31)), float(rng.uniform(*self.noise))
        label_source = self.label_sources[index % len(self.label_sources)]
        if self.target_site is None:
            contrasts = tuple(
                dict.fromkeys(
                    self.sources(index) + (() if self.target == CLEAN else (self.target,))
                )
            )
            return simulate_subject(
                seed,
                label_source=label_source,
                shape=self.shape,
                spacing=self.spacing,
                contrasts=contrasts,
                noise=noise,
                device=self.device,
            ), None
        site = self.source_sites[int(rng.integers(len(self.source_sites)))]
        style = ScannerStyle.draw(seed) if site is None else ScannerStyle.for_site(site)
        anatomy = draw_anatomy(
            seed,
            label_source=label_source,
            shape=self.shape,
            spacing=self.spacing,
            device=self.device,
        )
        draw = acquire(anatomy, style, contrasts=self.source, site=site, noise=noise)
        target = acquire(
            anatomy,
            ScannerStyle.for_site(self.target_site),
            contrasts=(self.target,),
            site=self.target_site,
            noise=0.0,
        )
        return draw, target.clean[self.target]

    def _patches(self, index: int) -> list[dict[str, torch.Tensor]]:
        draw, target = self._draw(index)
        volumes = self._volumes(draw, target, self.sources(index))
        rng = numpy_rng(self.seed, "training-patches", index)
        head = draw.head_mask.nonzero()
        shape = np.asarray(draw.head_mask.shape)
        patches = []
        for _ in range(self.patches_per_draw):
            centre = head[int(rng.integers(len(head)))].cpu().numpy()
            start = np.clip(centre - np.asarray(self.patch) // 2, 0, shape - self.patch)
            window = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
            patches.append({key: value[(slice(None), *window)] for key, value in volumes.items()})
        return patches

    def _volumes(
        self, draw: SubjectDraw, harmonized: torch.Tensor | None, contrasts: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        mask = draw.head_mask
        images = draw.images if self.degrade_source else draw.clean
        sources, scales = [], []
        for contrast in contrasts:
            image = images[contrast]
            sources.append(self._normalised(image, contrast, mask))
            scales.append(self._scale(image, contrast, mask))
        if harmonized is not None:
            scale = harmonization_scale(self.target_site, self.target) if self.normalise else 1.0
            target = harmonized / scale
        elif self.target == CLEAN:
            target = draw.on_grid(*draw.noise_free[contrasts[0]]) / scales[0]
        else:
            target = self._normalised(draw.clean[self.target], self.target, mask)
        return {
            "source": torch.stack(sources).float(),
            "target": target[None].float(),
            "mask": mask[None],
        }

    def _scale(
        self, image: torch.Tensor, contrast: str, mask: torch.Tensor
    ) -> torch.Tensor | float:
        if not self.normalise:
            return 1.0
        return CT_SCALE_HU if contrast == "CT" else mr_scale(image, mask)

    def _normalised(self, image: torch.Tensor, contrast: str, mask: torch.Tensor) -> torch.Tensor:
        return image / self._scale(image, contrast, mask)
