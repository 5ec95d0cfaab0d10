"""Atomic writes and checked image reads.

Every file bids-synth writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination folder, flushed to disk and renamed over the target, so a reader
(or a run killed with ``kill -9``) never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_synth.errors import InvalidImageError, OutputError

#: larger intensities overflow the float32 statistics of masking, N4 and registration
#: (tested: 1e12 still processed correctly, 1e15 fails, 1e30 gives infinite outputs)
MAX_ABS_INTENSITY = 1e10


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Yield a file object whose content replaces ``path`` atomically on success."""
    path = Path(path)
    with _temporary_beside(path, mode) as (handle, tmp):
        yield handle
    publish(tmp, path)


@contextlib.contextmanager
def _temporary_beside(path: Path, mode: str):
    """Yield ``(handle, tmp)``: a hidden file beside ``path``, on disk once the block ends.

    The file is removed if the block fails; OS errors become :class:`OutputError`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle, tmp
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
    except OSError as exc:
        _remove_quietly(tmp)
        raise output_error(exc, path) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def copy_beside(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy ``src`` into a hidden temporary file beside ``dst``; :func:`publish` renames it."""
    with open(src, "rb") as source, _temporary_beside(Path(dst), "wb") as (target, tmp):
        shutil.copyfileobj(source, target, 1 << 20)
    return tmp


def publish(tmp: str, dst: str | os.PathLike) -> None:
    """Rename a temporary file of :func:`copy_beside` over ``dst`` (atomic)."""
    try:
        os.replace(tmp, dst)
    except OSError as exc:
        _remove_quietly(tmp)
        raise output_error(exc, Path(dst)) from exc


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove temporary files of ``path`` left behind by a killed writer."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        _remove_quietly(str(stale))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def links_into(root: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Symbolic links below ``root`` (not followed) that resolve to ``target`` or inside it."""
    target = Path(target).resolve()
    found = []
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            if path.is_symlink():
                resolved = path.resolve()
                if resolved == target or target in resolved.parents:
                    found.append(path)
    return sorted(found)


@contextlib.contextmanager
def private_tempdir():
    """Point :mod:`tempfile`'s default folder at a new folder for the block, then remove it with
    whatever was left there: for library calls that leave files in the system temp folder
    (antspyx's Atropos writes its probability images there and never removes them)."""
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="bids-synth-") as folder:
        tempfile.tempdir = folder
        try:
            yield Path(folder)
        finally:
            tempfile.tempdir = saved


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def descriptions_tsv(descriptions: dict[str, str]) -> str:
    """A BIDS ``descriptions.tsv``: ``desc_id`` (``desc-<label>``) and ``description`` columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(["desc_id", "description"])
    writer.writerows((f"desc-{label}", text) for label, text in sorted(descriptions.items()))
    return buffer.getvalue()


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically."""
    publish(copy_beside(src, dst), dst)
    return Path(dst)


def atomic_save_nifti(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Save a NIfTI image atomically (gzip-compressed when ``path`` ends in ``.gz``).

    Spatial units left unset in the header are set to millimetres (nibabel's affines are in mm;
    the BIDS validator warns about images without units).
    """
    if img.header.get_xyzt_units()[0] == "unknown":
        img.header.set_xyzt_units(xyz="mm")
    payload = img.to_bytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=1, mtime=0)  # fast; mtime=0: reproducible
    with atomic_write(path) as handle:
        handle.write(payload)
    return Path(path)


def load_image(path: str | os.PathLike, *, what: str = "image") -> nib.Nifti1Image:
    """Load a 3D NIfTI image and check it is usable; raise :class:`InvalidImageError` if not.

    Checks: readable and complete, 3D (a trailing singleton 4th dimension is squeezed), at least
    2 voxels along each axis, finite voxels, not constant, magnitudes up to
    :data:`MAX_ABS_INTENSITY`, and an invertible affine with sane zooms.
    """
    path = Path(path)
    name = path.name
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        if path.name.endswith(".gz"):
            _check_gzip(path)
    except FileNotFoundError as exc:
        raise InvalidImageError(f"{what} {name}: file not found") from exc
    except Exception as exc:  # nibabel raises many kinds for corrupt/truncated files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidImageError(f"{what} {name}: unreadable NIfTI ({reason})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidImageError(f"{what} {name}: expected a 3D image, got shape {data.shape}")
    if min(data.shape) < 2:
        raise InvalidImageError(f"{what} {name}: degenerate shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InvalidImageError(f"{what} {name}: unsupported voxel type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise InvalidImageError(f"{what} {name}: contains NaN or infinite voxels")
    if data.max() == data.min():
        raise InvalidImageError(f"{what} {name}: all voxels have the same value")
    peak = float(max(abs(float(data.max())), abs(float(data.min()))))
    if peak > MAX_ABS_INTENSITY:
        raise InvalidImageError(
            f"{what} {name}: intensities up to {peak:.3g} exceed {MAX_ABS_INTENSITY:.0e} "
            "(float32 statistics overflow): rescale the image"
        )
    affine = img.affine
    if not np.isfinite(affine).all():
        raise InvalidImageError(f"{what} {name}: non-invertible affine (NaN or infinite values)")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    # singular: a zero-length axis, or axes (nearly) collinear whatever the voxel size
    if zooms.min() == 0 or abs(np.linalg.det(affine[:3, :3])) / np.prod(zooms) < 1e-6:
        raise InvalidImageError(f"{what} {name}: non-invertible affine")
    if zooms.min() < 0.05 or zooms.max() > 20:
        raise InvalidImageError(
            f"{what} {name}: implausible voxel size {np.round(zooms, 3).tolist()} mm"
        )
    _check_sform_qform(img, f"{what} {name}")
    header = img.header.copy()
    header.set_data_shape(data.shape)
    return nib.Nifti1Image(data, affine, header)


#: sform and qform may differ by this much (qform is stored in float32 quaternions)
FORM_TOLERANCE_MM = 0.01


def _check_sform_qform(img: nib.Nifti1Image, what: str) -> None:
    """:class:`InvalidImageError` when both the sform and the qform are set and disagree.

    bids-synth's checks read the sform (as nibabel does) but ANTs reads the qform: derivatives
    would come out rotated or shifted against the raw image.
    """
    header = img.header
    if not hasattr(header, "get_qform") or not header["sform_code"] or not header["qform_code"]:
        return
    sform, qform = header.get_sform(), header.get_qform()
    corners = np.array([[0, 0, 0, 1], [*img.shape[:3], 1]], float).T
    shift = float(np.abs((sform - qform) @ corners).max())
    if shift > FORM_TOLERANCE_MM:
        rotation = np.linalg.solve(qform[:3, :3], sform[:3, :3])
        angle = np.degrees(np.arccos(np.clip((np.trace(_orthonormal(rotation)) - 1) / 2, -1, 1)))
        raise InvalidImageError(
            f"{what}: the sform and qform disagree (up to {shift:.1f} mm apart, {angle:.0f}° "
            "rotated): fix the header so that both give the same position"
        )


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


def _check_gzip(path: Path) -> None:
    """Decompress to the end, which checks the CRC and length (nibabel stops after the voxels)."""
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 22):
            pass


def output_error(exc: OSError, path: Path) -> OutputError:
    """The one-line :class:`OutputError` for an OS error while writing ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {path}: no space left on device (or quota exceeded)")
    if exc.errno == errno.EFBIG:
        return OutputError(f"cannot write {path}: file too large (file size limit, ulimit -f)")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OutputError(f"cannot write {path}: permission denied or read-only file system")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
