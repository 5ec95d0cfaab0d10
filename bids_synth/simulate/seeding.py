"""Named random streams derived from one integer seed.

Every random choice of a draw comes from a stream keyed by ``(seed, *keys)`` through
:class:`numpy.random.SeedSequence`, so adding a stream never changes the others and a traveling
subject keeps its anatomy while each site gets its own noise.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def _entropy(seed: int, keys: tuple) -> list[int]:
    return [int(seed)] + [zlib.crc32(str(key).encode()) for key in keys]


def numpy_rng(seed: int, *keys) -> np.random.Generator:
    """A numpy generator for the stream ``(seed, *keys)``."""
    return np.random.default_rng(np.random.SeedSequence(_entropy(seed, keys)))


def torch_generator(seed: int, *keys, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on ``device`` for the stream ``(seed, *keys)``."""
    state = np.random.SeedSequence(_entropy(seed, keys)).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))
