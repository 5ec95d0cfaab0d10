"""Sliding-window inference over whole volumes with Gaussian blending.

The volume and the blended output stay on the CPU; batches of windows go to the device, run under
``torch.inference_mode`` (and autocast when asked) on a fused copy of the network
(:mod:`bids_synth.nn.fusion`) in channels-last memory layout, and come back as float32. The
window layout and the Gaussian weights are those of MONAI's
``sliding_window_inference(mode="gaussian")``, so both give the same output for the same network.
Only volumes smaller than a window are padded.
On a device out-of-memory error the patch batch is halved, and at one patch the run moves to CPU.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bids_synth.nn.devices import amp_dtype, amp_name, autocast, is_out_of_memory, resolve_device
from bids_synth.nn.fusion import optimize_for_inference
from bids_synth.nn.intensity import normalize_channels, output_map

LOG = logging.getLogger("bids_synth.nn.inference")


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of windows of ``patch`` voxels covering ``size`` with the given ``overlap``."""
    if patch >= size:
        return [0]
    step = max(int(patch * (1 - overlap)), 1)
    count = math.ceil((size - patch) / step) + 1
    return [min(i * step, size - patch) for i in range(count)]


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Separable Gaussian weights (σ = ``sigma_scale`` × patch size) peaking at 1, floored at 1e-3."""
    weights = torch.ones(())
    for size in patch:
        x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        weights = weights.unsqueeze(-1) * torch.exp(x**2 / (-2 * (size * sigma_scale) ** 2))
    return weights.clamp_(min=max(weights.min().item(), 1e-3))


def next_fallback(device: torch.device, batch_size: int) -> tuple[torch.device, int]:
    """After an out-of-memory error: halve the batch, then move to CPU; CPU at batch 1 gives up."""
    if batch_size > 1:
        return device, batch_size // 2
    if device.type != "cpu":
        return torch.device("cpu"), 1
    raise MemoryError("out of memory on CPU with a single patch; use a smaller --patch")


class _WindowRunner:
    """Runs batches of windows through the model and handles out-of-memory fallbacks."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device,
        amp: str,
        batch_size: int,
        channels_last: bool,
    ):
        self.model, self.device, self.amp, self.batch_size = model, device, amp, batch_size
        self.channels_last = channels_last and all(p.dim() != 4 for p in model.parameters())
        self.fallbacks: list[str] = []
        self._place()

    def _place(self) -> None:
        amp = (
            self.amp if self.device.type == "cuda" or self.amp == "bf16" else "off"
        )  # CPU: bf16 only if asked
        self.dtype = amp_dtype(self.device, amp)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """Model output for ``patches`` (float32, on the CPU), split as the current batch size allows."""
        while True:
            try:
                return torch.cat([self._run(chunk) for chunk in patches.split(self.batch_size)])
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                device, batch = next_fallback(self.device, self.batch_size)
                note = f"out of memory on {self.device} with {self.batch_size} patches: retrying on {device} with {batch}"
                LOG.warning(note)
                self.fallbacks.append(note)
                moved = device != self.device
                self.device, self.batch_size = device, batch
                if moved:
                    self._place()

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            chunk = chunk.pin_memory()
        x = chunk.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with autocast(self.device, self.dtype):
            y = self.model(x)
        return y.float().cpu()


def predict_volume(
    model: nn.Module,
    volume: np.ndarray,
    *,
    patch: Sequence[int] = (96, 96, 96),
    overlap: float = 0.5,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    amp: str = "auto",
    tta_flip: bool = False,
    input_norm: dict | None = None,
    output_norm: dict | None = None,
    foreground: np.ndarray | None = None,
    channels_last: bool = True,
) -> tuple[np.ndarray, dict]:
    """Predict a whole volume with overlapping windows blended by Gaussian weights.

    ``volume`` is ``(X, Y, Z)`` or ``(C, X, Y, Z)`` on the network's input grid. With
    ``input_norm`` each channel is normalised as the bundle declares and the output is mapped back
    to physical units with ``output_norm`` (see :mod:`bids_synth.nn.intensity`); ``foreground``
    (e.g. the head mask) is where the normalisation statistics are taken. ``tta_flip``
    averages the prediction with those of the volume flipped along each axis (4 passes). ``model``
    itself is left untouched: an optimised eval-mode copy runs on the device.

    Returns the prediction, ``(X, Y, Z)`` for a 3D input and a one-channel model, else
    ``(C_out, X, Y, Z)``, and an info dict: device really used, amp, final batch size, windows,
    passes, fallbacks (out-of-memory notes) and seconds.
    """
    started = time.perf_counter()
    squeeze = volume.ndim == 3
    array = (
        np.asarray(volume, dtype=np.float32)[None]
        if squeeze
        else np.asarray(volume, dtype=np.float32)
    )
    if input_norm is not None:
        array, maps = normalize_channels(array, input_norm, foreground)
    requested = resolve_device(device) if isinstance(device, str) else device
    runner = _WindowRunner(
        optimize_for_inference(model),
        device=requested,
        amp=amp,
        batch_size=batch_size,
        channels_last=channels_last,
    )
    flips = [()] + ([(axis,) for axis in (1, 2, 3)] if tta_flip else [])
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(array))
        out = sum(_blend(runner, x.flip(f), tuple(patch), overlap).flip(f) for f in flips) / len(
            flips
        )
    result = out.numpy()
    if input_norm is not None:
        result = output_map(output_norm or {"method": "input"}, maps[0]).invert(result)
    if squeeze and result.shape[0] == 1:
        result = result[0]
    info = {
        "requested_device": str(requested),
        "device": str(runner.device),
        "amp": amp_name(runner.dtype),
        "batch_size": runner.batch_size,
        "windows": _window_count(array.shape[1:], patch, overlap),
        "passes": len(flips),
        "fallbacks": runner.fallbacks,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return result, info


def _window_count(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    return math.prod(len(window_starts(s, p, overlap)) for s, p in zip(shape, patch))


def _blend(
    runner: _WindowRunner, x: torch.Tensor, patch: tuple[int, ...], overlap: float
) -> torch.Tensor:
    """Gaussian-blended sliding-window prediction of a ``(C, *spatial)`` CPU tensor."""
    shape = x.shape[1:]
    pad = [max(p - s, 0) for s, p in zip(shape, patch)]
    if any(pad):  # only volumes smaller than the patch are padded, with their background value
        x = F.pad(x[None], [v for p in reversed(pad) for v in (0, p)], value=float(x.min()))[0]
    padded = x.shape[1:]
    importance = gaussian_importance(patch)
    corners = list(
        itertools.product(*(window_starts(s, p, overlap) for s, p in zip(padded, patch)))
    )
    weight_sum = torch.zeros(padded)
    output = None
    group_size = runner.batch_size  # the runner splits a group further after an out-of-memory error
    for first in range(0, len(corners), group_size):
        group = corners[first : first + group_size]
        slices = [tuple(slice(c, c + p) for c, p in zip(corner, patch)) for corner in group]
        predictions = runner(torch.stack([x[(slice(None), *s)] for s in slices]))
        if output is None:
            output = torch.zeros((predictions.shape[1], *padded))
        for s, prediction in zip(slices, predictions):
            output[(slice(None), *s)] += prediction * importance
            weight_sum[s] += importance
    output /= weight_sum
    return output[(slice(None), *(slice(0, s) for s in shape))]
