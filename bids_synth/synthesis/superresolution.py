"""Through-plane super-resolution of anisotropic MR on numpy volumes: B-spline and SMORE-like.

Both work in the acquisition's own voxel grid (any slice axis) and return the image on an
isotropic grid at the finest spacing that covers the same field of view (:func:`isotropic_grid`).
``smore`` learns, from the image's own high-resolution in-plane data degraded to the through-plane
resolution (slice profile, spacing, gap), to undo that degradation with a 2D network, applies it
to the B-spline-upsampled volume in the two planes that cut through the slices and averages them.

The slice profile is a box or a Gaussian (FWHM = thickness). Its thickness comes from the
sidecar when known, otherwise from the image (ESPRESO-like, without a network): the profile whose
degradation of the in-plane data gives the power spectrum closest to the one observed across the
slices (:func:`estimate_slice_profile`). The shape is not taken from that fit: on the
development images (real templates, simulated 1 mm heads) it picked the wrong one in 22 of 56
cases (the anatomy is not isotropic), and training for the wrong shape costs up to 1.2 dB. When
the shape is not given, ``self`` trains for both (each training pair degraded with one drawn at
random): 0.19 dB below the better shape on average there, 0.78 dB at worst (BENCHMARKS.md).
Training: residual learning over the B-spline input, L1, 48² patches drawn from slices in
proportion to their residual content, random flips, several sampling phases per slice, bf16
autocast (1.5× faster on the CPU than fp32), Adam with warm-up and cosine decay over a fixed step
budget, the weights kept chosen on a validation split of the image's own slices (every 8th
in-plane slice); inference averages both planes and two flips of each.
"""

from __future__ import annotations

import logging
import time

import numpy as np

LOG = logging.getLogger("bids_synth")

ANISOTROPY_THRESHOLD = 1.5  #: thickest / thinnest spacing above which an image is super-resolved

SLICE_PROFILES = ("box", "gaussian")
UNKNOWN_PROFILE = "box or gaussian"  #: what ``self`` trains for when the shape is not given
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
VALIDATION_EVERY = 8  #: every 8th in-plane slice is held out to choose the weights kept

#: SMORE-like settings: a 2D U-Net trained on 2D patches of the image's own slices for ``steps``
#: steps whatever the image's size (a small image needs as many as a large one), the learning rate
#: decaying to zero over them; the weights with the lowest validation loss (checked every
#: ``check_every`` steps) are kept
SMORE_DEFAULTS = {
    "architecture": "unet",
    "channels": [16, 32, 64],
    "patch": [48, 48],
    "batch_size": 8,
    "steps": 3000,
    "lr": 2e-3,
    "amp": "bf16",
    "phases": 2,
    "flips": True,
    "check_every": 100,
}


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along each array axis."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def anisotropy(zooms) -> float:
    """Thickest over thinnest voxel size."""
    zooms = np.asarray(zooms, float)
    return float(zooms.max() / zooms.min())


def isotropic_grid(shape, affine, spacing: float | None = None):
    """Shape and affine of the isotropic grid (``spacing``, default the finest) over the same FOV.

    Along each axis the new voxels tile the old field of view: new voxel ``j`` has its centre at
    old voxel coordinate ``(j + 0.5)·k − 0.5`` with ``k = spacing / old spacing``. Returns
    ``(shape, affine, k, offset)``: the voxel map new → old is ``diag(k)``, ``offset``.
    """
    zooms = voxel_sizes(affine)
    spacing = float(spacing or zooms.min())
    k = spacing / zooms
    new_shape = tuple(max(1, int(round(n / ki))) for n, ki in zip(shape, k))
    offset = 0.5 * k - 0.5
    voxel_map = np.eye(4)
    voxel_map[:3, :3] = np.diag(k)
    voxel_map[:3, 3] = offset
    return new_shape, np.asarray(affine, float) @ voxel_map, k, offset


def bspline_isotropic(data: np.ndarray, affine: np.ndarray, spacing: float | None = None):
    """Cubic B-spline resampling of ``data`` to the isotropic grid; returns (data, affine)."""
    from scipy.ndimage import affine_transform

    shape, new_affine, k, offset = isotropic_grid(data.shape, affine, spacing)
    out = affine_transform(
        np.asarray(data, np.float32),
        np.diag(k),
        offset=offset,
        output_shape=shape,
        order=3,
        mode="nearest",
    )
    return out.astype(np.float32), new_affine


def slice_kernel(thickness: float, profile: str = "box") -> np.ndarray:
    """The slice profile sampled on pixels, sum 1: a box ``thickness`` pixels wide (fractional
    edges) or a Gaussian of FWHM ``thickness`` pixels."""
    if profile not in SLICE_PROFILES:
        raise ValueError(f"unknown slice profile {profile!r}; expected one of {SLICE_PROFILES}")
    if profile == "box":
        radius = thickness / 2
        taps = np.arange(-int(np.ceil(radius)), int(np.ceil(radius)) + 1, dtype=float)
        kernel = np.clip(radius + 0.5 - np.abs(taps), 0.0, 1.0)
    else:
        sigma = max(thickness / FWHM_PER_SIGMA, 1e-3)
        taps = np.arange(-int(np.ceil(3 * sigma)), int(np.ceil(3 * sigma)) + 1, dtype=float)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


def degrade_axis0(
    image: np.ndarray, factor: float, thickness: float, phase: float = 0.0, profile: str = "box"
) -> np.ndarray:
    """``image`` (2D, pixel units) acquired along axis 0 with slices of ``thickness`` pixels every
    ``factor`` pixels (a gap when thickness < factor), then cubic B-spline interpolated back.

    The slice profile is :func:`slice_kernel`; samples sit at ``phase + i·factor``. This is what
    the B-spline upsampling of a thick-slice acquisition looks like along its slice axis, made
    from data that has the full in-plane resolution.
    """
    from scipy.ndimage import convolve1d, map_coordinates

    kernel = slice_kernel(thickness, profile)
    blurred = convolve1d(image.astype(np.float64), kernel, axis=0, mode="nearest")
    n = image.shape[0]
    positions = np.arange(phase, n - 0.5, factor)
    columns = np.arange(image.shape[1], dtype=float)
    coarse = map_coordinates(
        blurred, np.meshgrid(positions, columns, indexing="ij"), order=1, mode="nearest"
    )
    back = (np.arange(n) - phase) / factor
    return map_coordinates(
        coarse, np.meshgrid(back, columns, indexing="ij"), order=3, mode="nearest"
    ).astype(np.float32)


def _spectrum(lines: np.ndarray) -> np.ndarray:
    """Mean log power spectrum of the rows of ``lines`` (Hann window, mean removed)."""
    window = np.hanning(lines.shape[1])
    centred = (lines - lines.mean(axis=1, keepdims=True)) * window
    return np.log(np.mean(np.abs(np.fft.rfft(centred, axis=1)[:, 1:]) ** 2, axis=0) + 1e-12)


def _lines(volume: np.ndarray, axis: int, length: int, step: float, limit: int = 4000, rng=None):
    """Rows of ``length`` samples ``step`` pixels apart along ``axis``, through the head only."""
    from scipy.ndimage import map_coordinates

    moved = np.moveaxis(volume, axis, -1).reshape(-1, volume.shape[axis])
    bright = moved.mean(axis=1) > 0.2 * max(float(moved.mean(axis=1).max()), 1e-6)
    rows = moved[bright]
    span = (length - 1) * step
    if len(rows) == 0 or span > rows.shape[1] - 1:
        return np.empty((0, length))
    rng = rng or np.random.default_rng(0)
    rows = rows[rng.choice(len(rows), min(limit, len(rows)), replace=False)]
    start = np.floor((rows.shape[1] - 1 - span) / 2)  # on a sample: no interpolation blur
    positions = start + step * np.arange(length)
    grid = np.meshgrid(np.arange(len(rows), dtype=float), positions, indexing="ij")
    return map_coordinates(rows, grid, order=1)


def estimate_slice_profile(data: np.ndarray, thick: int, factor: float,
                           thickness: float | None = None) -> tuple[str, float]:  # fmt: skip
    """The slice profile (shape, thickness in in-plane pixels) that best explains ``data``.

    ESPRESO-like, without a network: the power spectrum across the slices (``thick`` axis,
    samples ``factor`` in-plane pixels apart) is compared with the spectra of the in-plane data
    blurred by each candidate profile and sampled the same way; the closest candidate wins.
    With ``thickness`` given (from the sidecar) only the shape is chosen.
    """
    from scipy.ndimage import convolve1d

    data = np.asarray(data, np.float32)
    in_plane = [a for a in range(3) if a != thick]
    shortest = min(data.shape[a] for a in in_plane)
    length = int(min(data.shape[thick], (shortest - 1) // factor + 1, 64))
    observed = _spectrum(_lines(data, thick, length, 1.0))
    widths = [thickness] if thickness else list(np.linspace(0.5, 1.5, 11) * factor)
    best, best_error = ("box", widths[0]), np.inf
    for profile in SLICE_PROFILES:
        for width in widths:
            kernel = slice_kernel(width, profile)
            spectra = []
            for axis in in_plane:
                blurred = convolve1d(data, kernel, axis=axis, mode="nearest")
                lines = _lines(blurred, axis, length, factor, limit=2000)
                if len(lines):
                    spectra.append(_spectrum(lines))
            if not spectra or not len(observed):
                return "box", float(thickness or factor)
            candidate = np.mean(spectra, axis=0)
            error = float(np.mean((candidate - candidate.mean() - observed + observed.mean()) ** 2))
            if error < best_error:
                best, best_error = (profile, float(width)), error
    return best


def _training_pairs(data: np.ndarray, thick: int, factor: float, thickness: float,
                    profiles: tuple[str, ...], rng, phases: int = 2):  # fmt: skip
    """(degraded, residual target) 2D pairs from every in-plane slice, degraded along each in-plane
    axis in turn (put first), each at ``phases`` random sampling phases with one of ``profiles``
    drawn at random; the slice index of each pair comes third."""
    inputs, targets, slices = [], [], []
    for index in range(data.shape[thick]):
        plane = np.take(data, index, axis=thick)
        for image in (plane, plane.T):
            if min(image.shape) < 8 or not np.any(image):
                continue
            for _ in range(phases):
                phase = float(rng.uniform(0, factor))
                profile = profiles[int(rng.integers(len(profiles)))]
                degraded = degrade_axis0(image, factor, thickness, phase, profile)
                inputs.append(degraded)
                targets.append(image - degraded)
                slices.append(index)
    return inputs, targets, np.asarray(slices)


def _patch_batch(inputs, targets, patch, batch_size, rng, weights=None):
    """Random patches (slices drawn with probability ``weights``), randomly flipped."""
    import torch

    sources, residuals = [], []
    for _ in range(batch_size):
        i = int(rng.choice(len(inputs), p=weights))
        image, target = inputs[i], targets[i]
        pad = [(0, max(p - s, 0)) for s, p in zip(image.shape, patch)]
        image, target = np.pad(image, pad, mode="edge"), np.pad(target, pad)
        x, y = (int(rng.integers(s - p + 1)) for s, p in zip(image.shape, patch))
        source = image[x : x + patch[0], y : y + patch[1]]
        residual = target[x : x + patch[0], y : y + patch[1]]
        for axis in (0, 1):  # the degradation is symmetric along and across the slice axis
            if rng.random() < 0.5:
                source, residual = np.flip(source, axis), np.flip(residual, axis)
        sources.append(source)
        residuals.append(residual)
    source = torch.from_numpy(np.stack(sources)[:, None].astype(np.float32))
    target = torch.from_numpy(np.stack(residuals)[:, None].astype(np.float32))
    return {"source": source, "target": target, "mask": torch.ones_like(source)}


def _learning_rate(step: int, steps: int, lr: float, warmup: int = 50) -> float:
    """Linear warm-up then cosine decay to 1 % of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * progress)))


def smore(
    data: np.ndarray,
    affine: np.ndarray,
    *,
    thickness_mm: float | None = None,
    profile: str | None = None,
    seed: int = 0,
    device: str = "auto",
    **settings,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """SMORE-like self-supervised super-resolution to the isotropic in-plane grid.

    ``thickness_mm`` is the slice thickness (thickness < spacing: a gap; None: estimated from the
    image, :func:`estimate_slice_profile`) and ``profile`` the slice profile's shape (box or
    gaussian; None: unknown, and each training pair is degraded with one of the two drawn at
    random, since the image does not tell them apart reliably, see the module's docstring).
    A 2D U-Net learns the residual that restores in-plane slices
    degraded along one axis to the through-plane sampling; it is applied to the B-spline upsampled
    volume in both planes containing the slice axis (with flips) and the estimates are averaged.
    ``settings`` override :data:`SMORE_DEFAULTS`. Returns (data, affine, info).
    """
    import torch

    from bids_synth.nn.devices import resolve_device
    from bids_synth.nn.trainers import build_trainer

    options = {**SMORE_DEFAULTS, **settings}
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    zooms = voxel_sizes(affine)
    thick = int(np.argmax(zooms))
    spacing = float(np.delete(zooms, thick).min())
    factor = zooms[thick] / spacing
    scale = float(max(np.percentile(data, 99.5), 1e-6))
    normalised = np.asarray(data, np.float32) / scale
    if thickness_mm is None:
        thickness = estimate_slice_profile(normalised, thick, factor)[1]
    else:
        thickness = thickness_mm / spacing
    profiles = (profile,) if profile else SLICE_PROFILES  # an unknown shape: trained for both
    inputs, targets, slices = _training_pairs(
        normalised, thick, factor, thickness, profiles, rng, phases=options["phases"]
    )
    held_out = slices % VALIDATION_EVERY == VALIDATION_EVERY // 2
    if held_out.all() or not held_out.any():  # too few slices to split: validate on all
        held_out = np.ones_like(held_out)
    train = np.flatnonzero(~held_out) if not held_out.all() else np.arange(len(slices))
    content = np.array([np.abs(targets[i]).mean() + 1e-3 for i in train])  # favour detail
    validation = _patch_batch(
        [inputs[i] for i in np.flatnonzero(held_out)],
        [targets[i] for i in np.flatnonzero(held_out)],
        options["patch"], 4 * options["batch_size"], np.random.default_rng(seed + 1),
    )  # fmt: skip
    trainer = build_trainer(
        "regression",
        architecture=options["architecture"],
        network_kwargs={"channels": list(options["channels"]), "norm": "none", "dims": 2},
        device=resolve_device(device),
        amp=options["amp"],
        lr=options["lr"],
        seed=seed,
        ssim_weight=0.0,
    )
    schedule = _fit(trainer, [inputs[i] for i in train], [targets[i] for i in train],
                    content / content.sum(), validation, options, rng)  # fmt: skip
    upsampled, new_affine = bspline_isotropic(normalised, affine, spacing)
    restored = _apply_through_plane(
        trainer.generator, upsampled, thick, trainer.device, flips=options["flips"]
    )
    info = {
        **options,
        **schedule,
        "thick_axis": thick,
        "factor": round(float(factor), 4),
        "slice_profile": profile or UNKNOWN_PROFILE,
        "slice_thickness_mm": round(float(thickness * spacing), 4),
        "gap_mm": round(float(zooms[thick] - thickness * spacing), 4),
        "device": str(trainer.device),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return (restored * scale).astype(np.float32), new_affine, info


def _fit(trainer, inputs, targets, weights, validation, options, rng) -> dict:
    """Train for ``steps`` steps and keep the weights with the lowest validation L1.

    Returns the step of the kept weights and the final training and best validation losses.
    """
    import copy

    import torch

    network, optimizer = trainer.generator, trainer.optimizers["generator"]
    source, target = (validation[k].to(trainer.device) for k in ("source", "target"))
    best, best_state, best_step, losses = np.inf, None, 0, []
    for step in range(1, options["steps"] + 1):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step - 1, options["steps"], options["lr"])
        batch = _patch_batch(inputs, targets, options["patch"], options["batch_size"], rng,
                             weights)  # fmt: skip
        losses.append(trainer.train_step(batch)["loss"])
        if step % options["check_every"] and step != options["steps"]:
            continue
        network.eval()
        with torch.inference_mode():
            loss = float((network(source).float() - target).abs().mean())
        network.train()
        LOG.debug("superres: step %d, training loss %.5f, validation loss %.5f", step,
                  float(np.mean(losses[-20:])), loss)  # fmt: skip
        if loss < best:
            best, best_state, best_step = loss, copy.deepcopy(network.state_dict()), step
    if best_state is not None:
        network.load_state_dict(best_state)
    return {
        "best_step": best_step,
        "final_loss": float(np.mean(losses[-20:])),
        "validation_loss": float(best),
    }


def _apply_through_plane(network, volume: np.ndarray, thick: int, device, batch: int = 8,
                         flips: bool = True):  # fmt: skip
    """``volume`` plus the network's residual, averaged over the two planes containing ``thick``
    and, with ``flips``, over the four flips of each plane."""
    import torch

    multiple = network.multiple
    network.eval()
    estimates = []
    variants = [(), (1, 2)] if flips else [()]
    for other in (a for a in range(3) if a != thick):
        fixed = 3 - thick - other
        stack = np.moveaxis(volume, (fixed, thick, other), (0, 1, 2))  # slices, thick, other
        pad = [(0, 0)] + [(0, -s % multiple) for s in stack.shape[1:]]
        for axes in variants:
            padded = np.pad(np.flip(stack, axes) if axes else stack, pad, mode="edge")
            out = np.empty_like(padded)
            with torch.inference_mode():
                for start in range(0, len(padded), batch):
                    x = torch.from_numpy(np.ascontiguousarray(padded[start : start + batch, None]))
                    out[start : start + batch] = network(x.to(device)).float().cpu().numpy()[:, 0]
            residual = out[:, : stack.shape[1], : stack.shape[2]]
            residual = np.flip(residual, axes) if axes else residual
            estimates.append(np.moveaxis(stack + residual, (0, 1, 2), (fixed, thick, other)))
    return np.mean(estimates, axis=0)
