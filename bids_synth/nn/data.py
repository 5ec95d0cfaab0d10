"""Training data sources: random patches from volumes, self-supervised pairs, the head model.

A source yields batches ``{"source": (B, C, *patch), "target": (B, 1, *patch), "mask": (B, 1,
*patch)}`` of float32 CPU tensors. Batches of epoch ``e`` depend only on ``(seed, e)``, so a run
resumed from an epoch checkpoint sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch

Batch = dict[str, torch.Tensor]
PairFn = Callable[
    [torch.Tensor, np.random.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]

_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1


def _rng(seed: int, stream: int, epoch: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, epoch])


class VolumePatches:
    """Random patches from in-memory volumes, paired (same location) or unpaired (independent).

    ``sources`` are ``(C, *spatial)`` arrays already normalised; ``targets`` are ``(1, *spatial)``
    arrays on the same grids (or None for self-supervised training, where ``pair_fn`` turns a source
    batch into ``(input, target, mask)``, e.g. :class:`BlindSpot`); ``masks`` restrict the loss and
    centre the patches on the foreground. Volumes smaller than the patch are padded.
    """

    def __init__(
        self,
        sources: Sequence[np.ndarray],
        targets: Sequence[np.ndarray] | None = None,
        masks: Sequence[np.ndarray] | None = None,
        *,
        patch: Sequence[int],
        batch_size: int,
        seed: int,
        paired: bool = True,
        pair_fn: PairFn | None = None,
    ):
        if targets is None and pair_fn is None:
            raise ValueError("volumes without targets need a pair_fn (self-supervised pairs)")
        if not sources:
            raise ValueError("no training volumes")
        self.patch = tuple(int(p) for p in patch)
        self.sources = [self._fit(v) for v in sources]
        self.targets = None if targets is None else [self._fit(v) for v in targets]
        masks = (
            masks
            if masks is not None
            else [np.ones((1, *v.shape[1:]), np.float32) for v in sources]
        )
        self.masks = [self._fit(m.astype(np.float32)) for m in masks]
        self._centres = [np.argwhere(m[0, ::2, ::2, ::2] > 0) * 2 for m in self.masks]
        self.batch_size, self.seed, self.paired, self.pair_fn = batch_size, seed, paired, pair_fn

    def _fit(self, volume: np.ndarray) -> np.ndarray:
        pad = [(0, 0)] + [(0, max(p - s, 0)) for s, p in zip(volume.shape[1:], self.patch)]
        return (
            np.pad(volume, pad, mode="edge").astype(np.float32, copy=False)
            if any(p[1] for p in pad)
            else volume
        )

    def epoch_batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        rng = _rng(self.seed, _TRAIN_STREAM, epoch)
        for _ in range(steps):
            yield self._batch(rng)

    def validation_batches(self, count: int) -> list[Batch]:
        rng = _rng(self.seed, _VALIDATION_STREAM)
        return [self._batch(rng) for _ in range(count)]

    def _batch(self, rng: np.random.Generator) -> Batch:
        items = [self._item(rng) for _ in range(self.batch_size)]
        batch = {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in items[0]}
        if self.pair_fn is not None:
            batch["source"], batch["target"], batch["mask"] = self.pair_fn(batch["source"], rng)
        return batch

    def _item(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        index = int(rng.integers(len(self.sources)))
        window = self._window(index, rng)
        item = {"source": self.sources[index][window], "mask": self.masks[index][window]}
        if self.targets is not None:
            target_index = index if self.paired else int(rng.integers(len(self.targets)))
            target_window = window if self.paired else self._window(target_index, rng)
            item["target"] = self.targets[target_index][target_window]
        return item

    def _window(self, index: int, rng: np.random.Generator) -> tuple[slice, ...]:
        shape = self.sources[index].shape[1:]
        centres = self._centres[index]
        centre = centres[rng.integers(len(centres))] if len(centres) else [s // 2 for s in shape]
        corner = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, self.patch, shape)]
        return (slice(None), *(slice(c, c + p) for c, p in zip(corner, self.patch)))


class BlindSpot:
    """Noise2Self pairs: a random ``fraction`` of voxels is replaced by a random neighbour's value.

    The network sees the masked input and is scored only on the replaced voxels against their
    original values; since noise is independent between voxels, it learns the clean signal.
    """

    def __init__(self, fraction: float = 0.01):
        self.fraction = fraction

    def __call__(self, source: torch.Tensor, rng: np.random.Generator):
        chosen = torch.from_numpy(rng.random(source[:, :1].shape) < self.fraction)
        dims = source.dim() - 2
        shifts = rng.integers(-1, 2, size=dims)
        shifts[rng.integers(dims)] = rng.choice([-1, 1])  # never the voxel itself
        neighbour = torch.roll(
            source, shifts=tuple(int(s) for s in shifts), dims=tuple(range(2, 2 + dims))
        )
        masked = torch.where(chosen, neighbour, source)
        return masked, source.clone(), chosen.float()


class SimulatedPairs:
    """Pairs drawn on the fly from the generative head model (:class:`bids_synth.simulate.TrainingPairs`).

    Batches come normalised by the head model (MR ÷ its 99.5th head percentile, CT in HU/1000:
    ``bids_synth.simulate.normalisation``), which the bundle declares as its normalisation. Each
    epoch (and the validation set) gets its own generator seeded from ``(seed, epoch)``.
    """

    def __init__(
        self,
        *,
        source: Sequence[str],
        target: str,
        patch: Sequence[int],
        batch_size: int,
        seed: int,
        device: str = "cpu",
        **options,
    ):
        self.kwargs = dict(
            source=tuple(source),
            target=target,
            patch=tuple(patch),
            batch_size=batch_size,
            device=device,
            **options,
        )
        self.seed = seed

    def _generator(self, stream: int, epoch: int = 0):
        from bids_synth.simulate import TrainingPairs  # heavy: imported only when simulating

        seed = int(np.random.SeedSequence([self.seed, stream, epoch]).generate_state(1)[0])
        return TrainingPairs(seed=seed, **self.kwargs)

    def epoch_batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        for batch in islice(iter(self._generator(_TRAIN_STREAM, epoch)), steps):
            yield {key: value.detach().float().cpu() for key, value in batch.items()}

    def validation_batches(self, count: int) -> list[Batch]:
        batches = islice(iter(self._generator(_VALIDATION_STREAM)), count)
        return [
            {key: value.detach().float().cpu() for key, value in batch.items()} for batch in batches
        ]


class SimulatedPool:
    """Patches from a fixed pool of head-model subjects, drawn once (the cheap way to train on a CPU).

    ``subjects`` training heads and ``validation_subjects`` held-out heads (a separate seed stream)
    are simulated on first use, then batches are random patches of them (:class:`VolumePatches`),
    so drawing costs ``subjects + validation_subjects`` simulations instead of one per few batches.
    Deterministic in ``seed``: a resumed run rebuilds the same pool.
    """

    def __init__(
        self,
        *,
        source: Sequence[str],
        target: str,
        subjects: int,
        validation_subjects: int = 2,
        patch: Sequence[int],
        batch_size: int,
        seed: int,
        device: str = "cpu",
        **options,
    ):
        if subjects < 1 or validation_subjects < 1:
            raise ValueError(
                "a simulated pool needs at least one training and one held-out subject"
            )
        self.kwargs = dict(
            source=tuple(source),
            target=target,
            patch=tuple(patch),
            batch_size=batch_size,
            device=device,
            **options,
        )
        self.counts = {_TRAIN_STREAM: subjects, _VALIDATION_STREAM: validation_subjects}
        self.seed = seed
        self._pools: dict[int, VolumePatches] = {}

    def _pool(self, stream: int) -> VolumePatches:
        if stream not in self._pools:
            from bids_synth.simulate import TrainingPairs  # heavy: imported only when simulating

            seed = int(np.random.SeedSequence([self.seed, stream]).generate_state(1)[0])
            pairs = TrainingPairs(seed=seed, **self.kwargs)
            draws = [pairs.volumes(i) for i in range(self.counts[stream])]
            arrays = {
                key: [d[key].detach().float().cpu().numpy() for d in draws] for key in draws[0]
            }
            self._pools[stream] = VolumePatches(
                arrays["source"],
                arrays["target"],
                arrays["mask"],
                patch=self.kwargs["patch"],
                batch_size=self.kwargs["batch_size"],
                seed=self.seed,
            )
        return self._pools[stream]

    def epoch_batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        return self._pool(_TRAIN_STREAM).epoch_batches(epoch, steps)

    def validation_batches(self, count: int) -> list[Batch]:
        return self._pool(_VALIDATION_STREAM).validation_batches(count)


class HeldOut:
    """Training batches from one source, validation batches from another (e.g. held-out subjects)."""

    def __init__(self, train, validation):
        self.train, self.validation = train, validation

    def epoch_batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        return self.train.epoch_batches(epoch, steps)

    def validation_batches(self, count: int) -> list[Batch]:
        return self.validation.validation_batches(count)
