"""A moving window over a recipe's training heads.

SynthSeg deforms its label maps anew for every sample. A head of the head model takes ~10 s of a
CPU thread to simulate and ~65 MB of memory at 1 mm, so a CPU run can neither draw one per batch
nor hold hundreds: it trains on a window of its heads that moves on by a few heads each epoch,
simulating (or loading from the cache) the ones that enter and dropping the ones that leave.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

HeadSpec = tuple[str, int]  # (label source, seed)


def window_order(specs: Sequence[HeadSpec]) -> list[HeadSpec]:
    """``specs`` by seed, then source: consecutive heads take turns between the sources."""
    return sorted(specs, key=lambda spec: (spec[1], spec[0]))


def window_at(specs: Sequence[HeadSpec], size: int, step: int, moves: int) -> list[HeadSpec]:
    """The ``size`` heads of ``specs`` (in :func:`window_order`) in a window that started at the
    first and has moved ``moves`` times by ``step`` heads, wrapping around at the end."""
    if size < 1 or step < 0:
        raise ValueError(f"a window of {size} heads moving by {step}: size ≥ 1 and step ≥ 0")
    ordered = window_order(specs)
    first = moves * step
    return [ordered[(first + index) % len(ordered)] for index in range(min(size, len(ordered)))]


def heads_seen(specs: Sequence[HeadSpec], size: int, step: int, epochs: int) -> int:
    """How many different heads the window has held by its ``epochs``-th epoch (its first
    window before any)."""
    return min(len(specs), min(size, len(specs)) + step * max(epochs - 1, 0))


class HeadWindow:
    """``epoch → heads``: the window of 0-based ``epoch`` (:func:`window_at`, moved once per epoch
    since ``start_epoch``), its heads made by ``load`` (a list of specs → heads, in order) when
    they enter and dropped when they leave."""

    def __init__(
        self,
        specs: Sequence[HeadSpec],
        size: int,
        step: int,
        load: Callable[[list[HeadSpec]], list],
        *,
        start_epoch: int = 0,
    ):
        self.specs, self.size, self.step, self.start_epoch = tuple(specs), size, step, start_epoch
        self._load = load
        self._held: dict[HeadSpec, object] = {}

    def specs_at(self, epoch: int) -> list[HeadSpec]:
        return window_at(self.specs, self.size, self.step, max(epoch - self.start_epoch, 0))

    def __call__(self, epoch: int) -> list:
        wanted = self.specs_at(epoch)
        self._held = {spec: head for spec, head in self._held.items() if spec in wanted}
        entering = [spec for spec in wanted if spec not in self._held]
        self._held.update(zip(entering, self._load(entering), strict=True))
        return [self._held[spec] for spec in wanted]
