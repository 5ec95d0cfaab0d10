"""2.5D learning: slab batches for training and orthogonal-slab inference.

A 2.5D network is a 2D network that reads ``slices`` adjacent slices as channels and predicts the
centre slice. Training batches (:class:`RandomisedSlabs`) take whole slices of contrast-randomised
heads (:mod:`bids_synth.simulate.randomise`) along a random axis, with in-plane random affine
transforms (or, for pairs whose noise must stay white, voxel-exact quarter turns and transposes)
and left/right flips. At inference (:func:`predict_slabs`) the network runs slice by
slice along each of ``axes`` (optionally under several symmetries of the in-plane lattice, undone
and averaged) and the predictions are fused, so every voxel is seen in up to three orientations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bids_synth.modalities import SESSION_MR_SUFFIXES
from bids_synth.nn.devices import autocast

Batch = dict[str, torch.Tensor]
#: A batch re-randomises a band of BAND slices (plus margins for blur and slab context) of one head:
#: a new contrast every step at a quarter of the cost of re-randomising the whole head.
BAND, BAND_MARGIN = 32, 6
_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1
TARGETS = ("ct", "clean", "brain")
#: in-plane augmentations, as model cards word them: a random rotation and scaling resampled
#: bilinearly, or the eight symmetries of the square voxel lattice (exact: i.i.d. noise stays
#: i.i.d.; bilinear resampling after the noise was drawn leaves it at about 0.67 of its amplitude
#: and correlated between neighbours, noise a denoiser would learn to remove instead of a scan's)
AUGMENTATIONS = {
    "affine": "a resampled affine",
    "lattice": "quarter turns and transposes: the pairs' noise stays white",
    "elastic": "a resampled affine with a smooth random displacement: new local shapes per slab",
}
#: the ``elastic`` augmentation's displacement: random vectors on nodes this many voxels apart,
#: interpolated bicubically, each slab's with a standard deviation drawn from U(0, max) voxels
ELASTIC_NODE_SPACING = 32
ELASTIC_SD_MAX = 2.5


def slab_stack(
    volume: torch.Tensor, axis: int, centres: Sequence[int], slices: int
) -> torch.Tensor:
    """``(len(centres), C·slices, H, W)``: for each centre index along ``axis`` of a ``(C, X, Y, Z)``
    volume, the ``slices`` slices around it as channels (edge slices replicated)."""
    moved = volume.movedim(axis + 1, 1)  # (C, N, H, W)
    half = slices // 2
    n = moved.shape[1]
    stacks = []
    for centre in centres:
        index = torch.arange(centre - half, centre + half + 1).clamp(0, n - 1)
        stacks.append(moved[:, index].reshape(-1, *moved.shape[2:]))
    return torch.stack(stacks)


class RandomisedSlabs:
    """Training source of 2.5D batches from contrast-randomised label heads (see module docstring).

    Each batch re-randomises a band of :data:`BAND` slices of one head along a random axis (a new
    contrast, bias, resolution and noise), then takes ``batch_size`` slabs in it, crops or pads
    them to ``size`` × ``size`` around the head, applies one random in-plane ``augmentation``
    (``affine``: rotation ±``rotation_deg``, scaling ±``scaling``; ``elastic``: that affine and a
    smooth random displacement per slab, :data:`ELASTIC_SD_MAX`; ``lattice``: one of the eight
    quarter turns and transposes, see :data:`AUGMENTATIONS`) and flips left/right with
    probability ½.
    ``source`` is ``(B, slices, S, S)`` and ``mask`` the head. ``target`` is the centre slices of
    the head's CT in HU / ``ct_scale`` (``target="ct"``), of the noise-free image
    (``target="clean"``: a denoiser's pairs, :func:`~bids_synth.simulate.randomise.
    randomised_denoising_pair`; heads may then be real :class:`~bids_synth.simulate.randomise.
    CleanImage` too; ``noise_sd`` is then each pair's noise rms, for a noise-relative loss) or
    of the brain (``target="brain"``: 1 in the brain and its CSF, :meth:`~bids_synth.simulate.
    randomise.LabelHead.brain_mask`, else 0: a brain mask's) or of one of the heads' translation
    ``targets`` (an MR suffix), normalised by its own head percentiles. With ``inputs`` (MR
    suffixes, e.g. ``("T1w", "T2w")``) the source has one randomised image per suffix, each
    drawn on its own (a physics draw of that suffix or a Gaussian mixture), ``(B,
    len(inputs)·slices, S, S)`` suffix-major like :func:`slab_stack`; without, one image of any
    contrast. ``heads`` is a sequence, or a callable that gives each
    epoch's (``epoch → heads``, e.g. a :class:`~bids_synth.training.head_window.HeadWindow`).
    Batches of epoch ``e`` depend only on ``(seed, e)`` and that epoch's heads; validation
    batches come from ``validation_heads``.
    """

    def __init__(
        self,
        heads,
        validation_heads,
        *,
        slices: int = 5,
        size: int = 192,
        batch_size: int = 4,
        seed: int = 0,
        randomisation=None,
        ct_scale: float = 1000.0,
        target: str = "ct",
        rotation_deg: float = 12.0,
        scaling: float = 0.12,
        inputs: tuple[str, ...] = (),
        augmentation: str = "affine",
    ):
        from bids_synth.simulate.randomise import Randomisation

        if slices < 1 or slices % 2 == 0:
            raise ValueError(f"a slab is an odd number of slices, got {slices}")
        if target not in TARGETS and target not in SESSION_MR_SUFFIXES:
            raise ValueError(f"slab target {target!r}: one of {TARGETS} or an MR suffix")
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"slab augmentation {augmentation!r}: one of {tuple(AUGMENTATIONS)}")
        self.augmentation = augmentation
        self.heads = heads if callable(heads) else list(heads)
        self.validation_heads = list(validation_heads)
        self.slices, self.size, self.batch_size, self.seed = slices, size, batch_size, seed
        self.randomisation = randomisation or Randomisation()
        self.ct_scale, self.rotation_deg, self.scaling = ct_scale, rotation_deg, scaling
        self.target = target
        if inputs and target == "clean":
            raise ValueError("a denoiser's slabs have one input of any contrast")
        self.inputs = tuple(inputs)
        #: channels of the source before the slab stacking: one per input suffix, else one
        self.channels = max(1, len(self.inputs))
        # the target's value outside the head (padding, affine borders): air or black
        self.background = -1000.0 / ct_scale if target == "ct" else 0.0

    def epoch_batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, _TRAIN_STREAM, epoch])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        heads = self.heads(epoch) if callable(self.heads) else self.heads
        for _ in range(steps):
            yield self._batch(heads, rng, generator)

    def validation_batches(self, count: int) -> list[Batch]:
        rng = np.random.default_rng([self.seed, _VALIDATION_STREAM])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return [
            self._batch(self.validation_heads, rng, generator, augment=False) for _ in range(count)
        ]

    def _batch(
        self, heads, rng: np.random.Generator, generator: torch.Generator, *, augment: bool = True
    ) -> Batch:
        head = heads[int(rng.integers(len(heads)))]
        if self.target == "brain":
            head.brain_mask()  # on the whole head: a band has its head's
        axis = int(rng.integers(3))
        extent = np.nonzero(head.head.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        margin = self.slices // 2 + BAND_MARGIN
        start = int(rng.integers(extent[0], max(extent[-1] - BAND, extent[0]) + 1))
        low, high = max(start - margin, 0), min(start + BAND + margin, head.head.shape[axis])
        volume = self._volume(head.band(axis, low, high), rng, generator)
        if augment and rng.random() < 0.5:
            volume = volume.flip(1)  # left/right (RAS x)
        centres = rng.integers(start - low, start - low + BAND, self.batch_size).clip(
            0, high - low - 1
        )
        source = slab_stack(volume[: self.channels], axis, centres, self.slices)
        others = slab_stack(volume[self.channels :], axis, centres, 1)
        batch = torch.cat([source, others], dim=1)
        batch = self._crop(batch, rng)
        if augment:
            batch = (
                _lattice(batch, rng) if self.augmentation == "lattice" else self._warped(batch, rng)
            )
        target = self._target_channel
        out = {
            "source": batch[:, :target].contiguous(),
            "target": batch[:, target : target + 1].contiguous(),
            "mask": (batch[:, target + 1 :] > 0.5).float(),
        }
        if self.target == "clean":
            out["noise_sd"] = _noise_sd(out, self.slices // 2)
        return out

    @property
    def _target_channel(self) -> int:
        return self.channels * self.slices

    def _volume(self, band, rng: np.random.Generator, generator: torch.Generator) -> torch.Tensor:
        """(sources…, target, mask) of a band of a head, stacked: ``(channels + 2, X, Y, Z)``."""
        from bids_synth.simulate.randomise import (
            percentile_normalised,
            randomised_denoising_pair,
            randomised_mr,
        )

        mask = torch.from_numpy(np.ascontiguousarray(band.head)).float()
        if self.target == "clean":
            noisy, clean = randomised_denoising_pair(band, rng, generator, self.randomisation)
            return torch.stack([noisy, clean, mask])
        drawn = [
            randomised_mr(
                band, rng, generator, replace(self.randomisation, physics_inputs=(suffix,))
            )
            for suffix in self.inputs
        ] or [randomised_mr(band, rng, generator, self.randomisation)]
        if self.target == "ct":
            target = torch.from_numpy(np.ascontiguousarray(band.ct)).float() / self.ct_scale
        elif self.target == "brain":
            target = torch.from_numpy(np.ascontiguousarray(band.brain_mask())).float()
        else:
            target = torch.from_numpy(np.ascontiguousarray(band.targets[self.target])).float()
            if self.randomisation.resolution_in_target:  # the first input's resolution
                target = drawn[0][1].apply(target)
            target = percentile_normalised(target, mask > 0)
        return torch.stack([*(image for image, _ in drawn), target, mask])

    def _crop(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Crop or pad the in-plane axes to ``size`` (random offset where the slice is larger;
        padding: 0 input, air target, no mask)."""
        out = batch
        for dim in (2, 3):
            n = out.shape[dim]
            if n > self.size:
                start = int(rng.integers(n - self.size + 1))
                out = out.narrow(dim, start, self.size)
            elif n < self.size:
                before = (self.size - n) // 2
                pad = [0, 0, 0, 0]
                pad[(3 - dim) * 2] = before
                pad[(3 - dim) * 2 + 1] = self.size - n - before
                padded = F.pad(out, pad)
                padded[:, self._target_channel].masked_fill_(
                    _outside(padded.shape, dim, before, n), self.background
                )
                out = padded
        return out

    def _warped(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``batch`` resampled under one random rotation and scaling, and for ``elastic`` a
        displacement of its own per slab on top."""
        angle = math.radians(float(rng.uniform(-self.rotation_deg, self.rotation_deg)))
        scale = float(rng.uniform(1 - self.scaling, 1 + self.scaling))
        theta = torch.tensor(
            [
                [math.cos(angle) * scale, -math.sin(angle) * scale, 0.0],
                [math.sin(angle) * scale, math.cos(angle) * scale, 0.0],
            ]
        )
        grid = F.affine_grid(
            theta.expand(batch.shape[0], 2, 3), list(batch.shape), align_corners=False
        )
        if self.augmentation == "elastic":
            grid = grid + _displacement(batch.shape, rng)
        air = self.background
        shifted = batch.clone()
        shifted[:, self._target_channel] -= air  # background → 0: zero padding is background
        warped = F.grid_sample(
            shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        warped[:, self._target_channel] += air
        return warped


def _displacement(shape, rng: np.random.Generator) -> torch.Tensor:
    """``(B, H, W, 2)``: a smooth random in-plane displacement per slab of a ``(B, C, H, W)``
    batch, in :func:`torch.nn.functional.grid_sample`'s normalised units (x along W first)."""
    slabs, _, height, width = shape
    nodes = [math.ceil(n / ELASTIC_NODE_SPACING) + 1 for n in (height, width)]
    sd = rng.uniform(0.0, ELASTIC_SD_MAX, (slabs, 1, 1, 1))
    coarse = torch.from_numpy(rng.normal(0.0, 1.0, (slabs, 2, *nodes)) * sd).float()
    voxels = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    to_grid = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)
    return (voxels * to_grid).permute(0, 2, 3, 1)


def _noise_sd(batch: Batch, centre: int) -> torch.Tensor:
    """``(B,)``: the rms of each denoising pair's noise (centre input slice − target) in its mask."""
    noise = (batch["source"][:, centre : centre + 1] - batch["target"]) * batch["mask"]
    voxels = batch["mask"].sum(dim=(1, 2, 3)).clamp_min(1.0)
    return (noise.square().sum(dim=(1, 2, 3)) / voxels).sqrt()


#: the eight symmetries of the square in-plane lattice as (transposed, quarter turns), in the order
#: an ensemble of the first 1, 2, 4 or 8 takes them (:func:`predict_slabs`)
SYMMETRIES = (
    (False, 0),
    (True, 0),
    (False, 2),
    (True, 2),
    (False, 1),
    (True, 1),
    (False, 3),
    (True, 3),
)
ENSEMBLE_SIZES = (1, 2, 4, 8)


def _under(batch: torch.Tensor, symmetry: tuple[bool, int]) -> torch.Tensor:
    """``(B, C, H, W)`` under one lattice ``symmetry``: a transpose or not, then quarter turns."""
    transposed, turns = symmetry
    batch = batch.transpose(2, 3) if transposed else batch
    return batch.rot90(turns, dims=(2, 3)).contiguous()


def _undone(batch: torch.Tensor, symmetry: tuple[bool, int]) -> torch.Tensor:
    """The inverse of :func:`_under`."""
    transposed, turns = symmetry
    batch = batch.rot90(-turns, dims=(2, 3))
    return batch.transpose(2, 3) if transposed else batch


def _lattice(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``batch`` under one random symmetry of its square in-plane lattice: every voxel moves onto
    a voxel, nothing is interpolated."""
    transposed = bool(rng.random() < 0.5)
    return _under(batch, (transposed, int(rng.integers(4))))


def _outside(shape, dim: int, before: int, n: int) -> torch.Tensor:
    index = torch.arange(shape[dim])
    outside = (index < before) | (index >= before + n)
    plane = outside[:, None] if dim == 2 else outside[None, :]
    return plane.expand(shape[2], shape[3])


#: how the predictions along the orientations are fused (:func:`predict_slabs`)
FUSIONS = ("mean", "median")


@torch.inference_mode()
def predict_slabs(
    network: nn.Module,
    volume: torch.Tensor,
    *,
    slices: int,
    axes: Sequence[int] = (0, 1, 2),
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    multiple: int = 16,
    fusion: str = "mean",
    symmetries: int = 1,
    mirror: bool = False,
) -> torch.Tensor:
    """The 2D ``network``'s slice-by-slice predictions of a normalised ``(C, X, Y, Z)`` CPU volume
    along each of ``axes``, fused by their ``fusion`` (``mean`` or ``median``: the median keeps
    an edge where one orientation puts it elsewhere, the mean blurs it); returns
    ``(C_out, X, Y, Z)`` float32 on the CPU. Each orientation's prediction is the mean over the
    first ``symmetries`` (1, 2, 4 or 8) of the in-plane lattice :data:`SYMMETRIES`, each undone
    (a self-ensemble: ``symmetries`` passes), and with ``mirror`` also over the volume mirrored
    left/right (its first voxel axis, RAS x: the flip of training), mirrored back. In-plane sizes
    are padded (edge values) to a multiple of ``multiple`` and cropped back."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {', '.join(FUSIONS)}")
    if symmetries not in ENSEMBLE_SIZES:
        raise ValueError(f"an ensemble of {symmetries} lattice symmetries: one of {ENSEMBLE_SIZES}")
    device = torch.device(device)
    network = network.to(device).eval()
    oriented = dict(
        slices=slices,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        multiple=multiple,
        symmetries=symmetries,
    )
    total, predictions = None, []
    for axis in axes:
        prediction = _oriented_prediction(network, volume, axis, **oriented)
        if mirror:
            mirrored = _oriented_prediction(network, volume.flip(1), axis, **oriented).flip(1)
            prediction = (prediction + mirrored) / 2
        if fusion == "median":
            predictions.append(prediction)
        else:
            total = prediction if total is None else total + prediction
    if fusion == "median":
        return torch.stack(predictions).median(dim=0).values
    return total / len(axes)


def _oriented_prediction(
    network: nn.Module,
    volume: torch.Tensor,
    axis: int,
    *,
    slices: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None,
    multiple: int,
    symmetries: int,
) -> torch.Tensor:
    """``(C_out, X, Y, Z)``: the network slice by slice along ``axis``, averaged over the first
    ``symmetries`` lattice symmetries (see :func:`predict_slabs`)."""
    n = volume.shape[axis + 1]
    plane = [s for a, s in enumerate(volume.shape[1:]) if a != axis]
    padded = [math.ceil(s / multiple) * multiple for s in plane]
    outputs = []
    for first in range(0, n, batch_size):
        centres = range(first, min(first + batch_size, n))
        x = slab_stack(volume, axis, centres, slices)
        x = F.pad(x, (0, padded[1] - plane[1], 0, padded[0] - plane[0]), mode="replicate")
        x = x.to(device)
        y = 0.0
        for symmetry in SYMMETRIES[:symmetries]:
            with autocast(device, dtype):
                y = y + _undone(network(_under(x, symmetry)), symmetry).float()
        outputs.append((y / symmetries).cpu()[:, :, : plane[0], : plane[1]])
    return torch.cat(outputs).movedim(0, axis + 1)  # (C_out, …) with axis restored


def predict_volume_slabs(
    model: nn.Module,
    volume: np.ndarray,
    *,
    slices: int,
    axes: Sequence[int] = (0, 1, 2),
    batch_size: int = 8,
    device: str | torch.device = "auto",
    amp: str = "auto",
    input_norm: dict | None = None,
    output_norm: dict | None = None,
    foreground: np.ndarray | None = None,
    fusion: str = "mean",
    symmetries: int = 1,
    mirror: bool = False,
    adaptation=None,
    noise_sigma: float | None = None,
) -> tuple[np.ndarray, dict]:
    """:func:`predict_slabs` on a ``(C, X, Y, Z)`` array with the bundle's intensity maps, as
    :func:`bids_synth.nn.inference.predict_volume` does for 3D networks; same return values.
    With an ``adaptation`` (:class:`~bids_synth.nn.adaptation.SureAdaptation`) the network is
    first fine-tuned on the one-channel volume itself, whose noise σ is ``noise_sigma`` (input
    units), inside ``foreground``; the info then holds the adaptation's."""
    import time

    from bids_synth.nn.adaptation import sure_adapted
    from bids_synth.nn.devices import amp_dtype, amp_name, resolve_device
    from bids_synth.nn.fusion import optimize_for_inference
    from bids_synth.nn.intensity import normalize_channels, output_map

    started = time.perf_counter()
    array = np.asarray(volume, dtype=np.float32)
    maps = None
    if input_norm is not None:
        array, maps = normalize_channels(array, input_norm, foreground)
    device = resolve_device(device) if isinstance(device, str) else device
    dtype = amp_dtype(device, amp)
    inner = model.net2d if hasattr(model, "net2d") else model
    adapted = {}
    if adaptation is not None:
        scale = maps[0].scale if maps is not None else 1.0
        inside = np.ones(array.shape[1:], bool) if foreground is None else foreground
        inner, adapted = sure_adapted(
            inner,
            torch.from_numpy(np.ascontiguousarray(array)),
            torch.from_numpy(np.ascontiguousarray(inside)),
            noise_sigma / scale,
            slices=slices,
            settings=adaptation,
            multiple=getattr(inner, "multiple", 1),
            device=device,
        )
    result = predict_slabs(
        optimize_for_inference(inner),
        torch.from_numpy(np.ascontiguousarray(array)),
        slices=slices,
        axes=axes,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        multiple=getattr(inner, "multiple", 1),
        fusion=fusion,
        symmetries=symmetries,
        mirror=mirror,
    ).numpy()
    if maps is not None:
        result = output_map(output_norm or {"method": "input"}, maps[0]).invert(result)
    info = {
        "requested_device": str(device),
        "device": str(device),
        "amp": amp_name(dtype),
        "batch_size": batch_size,
        "windows": sum(array.shape[1 + a] for a in axes),
        "passes": len(axes) * symmetries * (2 if mirror else 1),
        "fusion": fusion,
        "symmetries": symmetries,
        "mirror": mirror,
        **({"adaptation": adapted} if adapted else {}),
        "fallbacks": [],
        "seconds": round(time.perf_counter() - started, 3),
    }
    return result, info
