"""Reliability under bad input and faults.

* a bad-input corpus (extending the 16 command-line cases of test_cli.py): each case ends with one
  clear line and its documented exit code, writes no partial derivative, and leaves the other
  participants of the run complete; odd but valid inputs (oblique grids, mismatched fields of
  view, a broken JSON sidecar) are processed;
* faults: kill -9 in the middle of a participant then a rerun, a full disk, read-only folders;
* two participants processed at once into one output folder by separate processes;
* bitwise determinism of two fresh runs; runs in a network namespace without network.
"""

import errno
import gzip
import hashlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from filelock import FileLock
from helpers import affine, contrast, phantom_labels, write_bids
from scipy import ndimage
from scipy.io import loadmat

from bids_synth import derivatives, fileio
from bids_synth.cli import main
from bids_synth.errors import EXIT_CODES, OutputError
from bids_synth.fileio import atomic_write_json
from bids_synth.workflows import unit_work_folder

ROOT = Path(__file__).resolve().parents[1]
BIDS_SYNTH = str(Path(sys.executable).with_name("bids-synth"))
AFFINE = affine()  # 3 mm phantom grid of helpers.write_bids
RUN = ["--nprocs", "2", "--omp-nthreads", "1"]


def cli(*args, prefix=(), timeout=600) -> subprocess.CompletedProcess:
    """bids-synth in its own process (optionally behind ``prefix``, e.g. unshare)."""
    command = [*prefix, BIDS_SYNTH, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR: " in line or "error:" in line]


def digests(out: Path) -> dict[str, str]:
    """sha256 of every derivative file (images, transforms, sidecars), logs aside."""
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.glob("sub-*/**/anat/*"))
    }


def temporaries(out: Path) -> list[Path]:
    return [path for path in out.rglob(".*.tmp")]


# --- the image corpus: one cohort, bad and odd images side by side ---------------------------


def save(path: Path, data, aff=AFFINE, dtype=np.float32) -> None:
    nib.save(nib.Nifti1Image(np.asarray(data, dtype), aff), str(path))


def phantom(kind: str = "T1w") -> np.ndarray:
    return contrast(phantom_labels(), kind) + np.random.default_rng(1).normal(0, 10, (44, 52, 44))


def rotation(degrees: float, axis: int) -> np.ndarray:
    angle = np.deg2rad(degrees)
    i, j = [a for a in range(3) if a != axis]
    out = np.eye(4)
    out[i, i] = out[j, j] = np.cos(angle)
    out[i, j], out[j, i] = -np.sin(angle), np.sin(angle)
    return out


def acquire(kind: str, head_affine: np.ndarray, grid_affine: np.ndarray, shape) -> np.ndarray:
    """The phantom head (voxels of ``head_affine``) as a scanner would image it on another grid."""
    voxels = np.linalg.inv(head_affine) @ grid_affine
    labels = ndimage.affine_transform(
        phantom_labels(), voxels[:3, :3], voxels[:3, 3], output_shape=shape, order=0
    )
    return contrast(labels, kind) + np.random.default_rng(2).normal(0, 10, shape)


def corrupt_gzip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # the deflate stream and its CRC no longer agree
    path.write_bytes(bytes(data))


def truncated_nii(path: Path) -> None:
    plain = path.with_name(path.name.replace(".nii.gz", ".nii"))
    save(plain, phantom())
    plain.write_bytes(plain.read_bytes()[:20000])  # full header, a fraction of the voxels
    path.unlink()


def nan_affine(path: Path) -> None:
    image = nib.Nifti1Image(phantom().astype(np.float32), None)
    bad = AFFINE.copy()
    bad[0, 3] = np.nan
    image.header.set_sform(bad, code=1)
    nib.save(image, str(path))


def collinear_affine(path: Path) -> None:
    bad = AFFINE.copy()
    bad[:3, 1] = bad[:3, 0]  # two voxel axes point the same way
    image = nib.Nifti1Image(phantom().astype(np.float32), None)
    image.header.set_sform(bad, code=1)
    nib.save(image, str(path))


def broken_symlink(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "moved-away.nii.gz")


def big_voxels(path: Path) -> None:
    aff = AFFINE.copy()
    aff[:3, :3] *= 300  # 900 mm voxels
    save(path, phantom(), aff)


#: label -> (suffix of the broken image, how to break it, expected message)
BAD_IMAGES = {
    "gzipcrc": ("T1w", corrupt_gzip, "unreadable NIfTI"),
    "notgzip": ("T1w", lambda p: p.write_text("not an image\n"), "unreadable NIfTI"),
    "empty": ("T1w", lambda p: p.write_bytes(b""), "unreadable NIfTI"),
    "cutnii": ("T1w", truncated_nii, "unreadable NIfTI"),
    "noheader": ("T1w", lambda p: p.write_bytes(gzip.compress(os.urandom(2048))), "unreadable"),
    "flat": ("T1w", lambda p: save(p, phantom()[:, :, 20]), "expected a 3D image"),
    "fived": ("T1w", lambda p: save(p, np.stack([phantom()] * 2, -1)[..., None, :]), "3D"),
    "oneslice": ("T1w", lambda p: save(p, phantom()[:, :, 20:21]), "degenerate shape"),
    "inf": ("T1w", lambda p: save(p, np.where(phantom() > 800, np.inf, phantom())), "NaN or inf"),
    "zeros": ("T1w", lambda p: save(p, np.zeros((44, 52, 44))), "all voxels have the same"),
    "huge": ("T1w", lambda p: save(p, phantom() * 1e27), "exceed 1e+10"),
    "bigvoxel": ("T1w", big_voxels, "implausible voxel size"),
    "nanaffine": ("T1w", nan_affine, "non-invertible affine"),
    "collinear": ("T1w", collinear_affine, "non-invertible affine"),
    "dangling": ("T1w", broken_symlink, "file not found"),
    "complex": ("T1w", lambda p: save(p, phantom(), dtype=np.complex64), "unsupported voxel"),
    "badtwo": ("T2w", lambda p: save(p, np.full((44, 52, 44), np.nan)), "T2w image"),
}


@pytest.fixture(scope="module")
def image_corpus(tmp_path_factory):
    """One participant run over a cohort of broken, odd and plain participants.

    Run once per session, also when pytest-xdist spreads these tests over several workers.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers share their base folder's parent
        shared = tmp_path_factory.getbasetemp().parent
        with FileLock(str(shared / "reliability-corpus.lock")):
            return run_corpus(shared / "reliability-corpus")
    return run_corpus(tmp_path_factory.mktemp("reliability-corpus"))


def run_corpus(root: Path):
    """Write the corpus into ``root`` and run the participant level on it (or read that run)."""
    result = root / "result.json"
    if not result.exists():
        bids = write_corpus(root / "bids")
        done = cli(bids, root / "out", "participant", "-w", root / "work", *RUN)
        atomic_write_json(result, {"returncode": done.returncode, "stderr": done.stderr})
    done = json.loads(result.read_text())
    return root / "bids", root / "out", SimpleNamespace(**done)


def write_corpus(root: Path) -> Path:
    layout = {f"sub-{label}": [suffix] for label, (suffix, _, _) in BAD_IMAGES.items()}
    layout["sub-badtwo"] = ["T1w", "T2w"]
    layout.update({
        "sub-plain": ["T1w", "T2w"],
        "sub-oblique": ["T1w", "T2w"],
        "sub-fov": ["T1w", "T2w"],
        "sub-visits/ses-a": ["T1w"],
        "sub-visits/ses-b": ["T1w"],
    })  # fmt: skip
    bids = write_bids(root, layout)

    def anat(label: str, suffix: str) -> Path:
        return bids / f"sub-{label}" / "anat" / f"sub-{label}_{suffix}.nii.gz"

    for label, (suffix, breaker, _) in BAD_IMAGES.items():
        breaker(anat(label, suffix))

    # oblique: the head tilted in the scanner (T1w), the T2w acquired on another oblique grid
    head = rotation(25, 0) @ AFFINE
    save(anat("oblique", "T1w"), phantom(), head)
    t2w_grid = rotation(-15, 2) @ rotation(10, 1) @ AFFINE
    save(anat("oblique", "T2w"), acquire("T2w", head, t2w_grid, (44, 52, 44)), t2w_grid)
    # mismatched field of view: a T2w slab of thick slices covering the upper 60% of the head
    slab = AFFINE @ np.diag([1.0, 1.0, 1.5, 1.0])
    slab[2, 3] = AFFINE[2, 3] + 0.4 * 43 * 3.0
    save(anat("fov", "T2w"), acquire("T2w", AFFINE, slab, (44, 52, 18)), slab)
    # an unparsable sidecar (warned about, the image is processed) and a broken session
    anat("plain", "T2w").with_suffix("").with_suffix(".json").write_text('{"EchoTime": 0.1,')
    visits_b = bids / "sub-visits" / "ses-b" / "anat" / "sub-visits_ses-b_T1w.nii.gz"
    visits_b.write_bytes(visits_b.read_bytes()[:500])

    return bids


def test_corpus_run_processes_the_valid_participants(image_corpus):
    bids, out, done = image_corpus
    assert done.returncode == 5, done.stderr  # invalid input images, the others done
    for unit in ("sub-plain", "sub-oblique", "sub-fov", "sub-visits/ses-a"):
        prefix = unit.replace("/", "_")
        names = {path.name for path in (out / unit / "anat").iterdir()}
        assert f"{prefix}_desc-preproc_T1w.nii.gz" in names, unit
        assert f"{prefix}_desc-brain_mask.nii.gz" in names, unit
    assert "invalid JSON sidecar" in done.stderr and "sub-plain_T2w.json" in done.stderr
    assert not temporaries(out)


@pytest.mark.parametrize("label", ["plain", "oblique", "fov"])
def test_registration_of_oblique_and_partial_images(image_corpus, label):
    """Both images show the same head, so the T2w → T1w transform is the identity in the world,
    whatever their voxel grids: it moves no point of the head by more than half a voxel."""
    _, out, _ = image_corpus
    anat = out / f"sub-{label}" / "anat"
    itk = loadmat(anat / f"sub-{label}_from-T2w_to-T1w_mode-image_xfm.mat")
    parameters = next(value for key, value in itk.items() if key.startswith("AffineTransform"))
    matrix, translation = parameters.ravel()[:9].reshape(3, 3), parameters.ravel()[9:]
    head_radius = 0.92 * 52 / 2 * 3.0  # mm, the phantom's longest semi-axis
    worst = np.linalg.norm(matrix - np.eye(3), 2) * head_radius + np.linalg.norm(translation)
    assert worst < 1.5, f"{label}: up to {worst:.2f} mm off"
    registered = nib.load(anat / f"sub-{label}_space-T1w_desc-preproc_T2w.nii.gz")
    t1w = nib.load(anat / f"sub-{label}_desc-preproc_T1w.nii.gz")
    assert registered.shape == t1w.shape and np.allclose(registered.affine, t1w.affine)


@pytest.mark.parametrize("label", sorted(BAD_IMAGES))
def test_corpus_bad_image_is_one_line_and_leaves_nothing(image_corpus, label):
    bids, out, done = image_corpus
    expected = BAD_IMAGES[label][2]
    lines = [line for line in error_lines(done.stderr) if f"sub-{label}" in line]
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (out / f"sub-{label}").exists()  # nothing written for it, not even a log
    record = json.loads(next((out / "logs").glob("*.json")).read_text())
    (unit,) = [u for u in record["units"] if u["participant_id"] == f"sub-{label}"]
    assert unit["status"] == "invalid-input" and expected in unit["message"]


def test_corpus_broken_session_leaves_the_other_session_complete(image_corpus):
    _, out, done = image_corpus
    lines = [line for line in error_lines(done.stderr) if "sub-visits_ses-b" in line]
    assert len(lines) == 1 and "unreadable NIfTI" in lines[0]
    assert not (out / "sub-visits" / "ses-b").exists()
    assert (out / "sub-visits" / "ses-a" / "anat").is_dir()


@pytest.mark.parametrize(
    ("scale", "accepted"), [(1e9, True), (1e-20, True), (1e11, False), (-1e11, False)]
)
def test_intensity_range_limit(tmp_path, scale, accepted):
    """1e12 was processed correctly and 1e15 broke the pipeline: the limit is 1e10, with margin."""
    path = tmp_path / "image.nii.gz"
    save(path, phantom() / 1000 * scale)
    if accepted:
        fileio.load_image(path)
    else:
        with pytest.raises(fileio.InvalidImageError, match="rescale the image"):
            fileio.load_image(path)


# --- the command-line corpus: whole runs refused before any processing -----------------------


def run_in_process(capsys, *args) -> tuple[int, list[str]]:
    code = main([str(arg) for arg in args])
    return code, error_lines(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("session-traversal", 2, "invalid label '../a'"),
        ("config-traversal", 2, "invalid label"),
        ("unknown-session", 4, "session label(s) not found in the dataset: ses-zz"),
        ("bad-config-toml", 2, "not valid TOML"),
        ("unknown-plugin", 2, "nipype has no plugin 'Fancy'"),
        ("bad-plugin-yaml", 2, "not valid YAML"),
        ("bids-is-a-file", 3, "does not exist or is not a directory"),
        ("bad-description", 3, "not valid JSON"),
        ("output-is-a-file", 6, "is not a folder"),
        ("work-under-a-file", 6, "is not a folder"),
    ],
)
def test_bad_command_line_or_dataset_is_one_line(tmp_path, capsys, case, code, message):
    bids = write_bids(tmp_path / "bids", {"sub-01/ses-a": ["T1w"]})
    out, work, extra = tmp_path / "out", tmp_path / "work", []
    if case == "session-traversal":
        extra = ["--session-label", "../a"]
    elif case == "config-traversal":
        config = tmp_path / "run.toml"
        config.write_text('[execution]\nparticipant_label = ["../../etc"]\n')
        extra = ["--config-file", config]
    elif case == "unknown-session":
        extra = ["--session-label", "a", "zz"]
    elif case == "bad-config-toml":
        config = tmp_path / "run.toml"
        config.write_text("[nipype\nnprocs = 2\n")
        extra = ["--config-file", config]
    elif case in ("unknown-plugin", "bad-plugin-yaml"):
        plugin = tmp_path / "plugin.yml"
        plugin.write_text("plugin: Fancy\n" if case == "unknown-plugin" else "plugin: [MultiProc\n")
        extra = ["--use-plugin", plugin]
    elif case == "bids-is-a-file":
        bids = tmp_path / "bids.tar"
        bids.write_bytes(b"")
    elif case == "bad-description":
        (bids / "dataset_description.json").write_text('{"Name": ')
    elif case == "output-is-a-file":
        out.write_text("")
    elif case == "work-under-a-file":
        (tmp_path / "file").write_text("")
        work = tmp_path / "file" / "work"
    result, errors = run_in_process(capsys, bids, out, "participant", "-w", work, *extra)
    assert result == code
    assert len(errors) == 1 and message in errors[0], errors
    assert not list(out.glob("sub-*")) if out.is_dir() else True


def test_exit_codes_are_documented_in_the_readme():
    table = re.findall(r"^\| (\d+) \| (.+) \|$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert sorted(int(code) for code, _ in table) == sorted(EXIT_CODES)


# --- read-only and full disks: real mounts in a private mount namespace ----------------------


def _mount_prefix() -> list[str] | None:
    """``unshare`` options for a private mount namespace where tmpfs can be mounted, or None."""
    options = ["-m"] if os.geteuid() == 0 else ["-rm"]  # unprivileged: in a user namespace
    probe = ["unshare", *options, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        ok = False
    return ["unshare", *options] if ok else None


MOUNT = _mount_prefix()
needs_mounts = pytest.mark.skipif(MOUNT is None, reason="cannot mount tmpfs in a mount namespace")


def with_tmpfs(folder: Path, options: str) -> list[str]:
    """A command prefix: mount a tmpfs with ``options`` on ``folder``, run the command, then print
    the files left on the tmpfs (it disappears with the namespace) and exit with its status."""
    folder.mkdir(parents=True, exist_ok=True)
    script = (
        f'mount -t tmpfs -o {options} tmpfs "{folder}" || exit 99; "$@"; code=$?; '
        f'find "{folder}" -type f; exit $code'
    )
    return [*MOUNT, "sh", "-c", script, "sh"]


def files_left(done: subprocess.CompletedProcess, folder: Path) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith(str(folder))]


@needs_mounts
@pytest.mark.parametrize("which", ["output", "work"])
def test_read_only_folder_is_one_line_exit_6(tmp_path, which):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    mount = tmp_path / "ro"
    out = mount / "out" if which == "output" else tmp_path / "out"
    work = mount if which == "work" else tmp_path / "work"
    done = cli(bids, out, "participant", "-w", work, prefix=with_tmpfs(mount, "ro,size=1m"))
    assert done.returncode == 6, done.stderr
    (line,) = error_lines(done.stderr)
    assert f"the {which} folder" in line and "not writable" in line
    assert not files_left(done, mount)
    assert not (tmp_path / "out").exists()


@needs_mounts
def test_disk_full_is_exit_6_without_partial_derivatives(tmp_path):
    """The output disk fills up while the derivatives are published: none of them appear."""
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w"]})
    out = tmp_path / "small"
    # room for the dataset files and logs, not for the derivatives (about 1.5 MB)
    done = cli(bids, out, "participant", "-w", tmp_path / "work", *RUN,
               prefix=with_tmpfs(out, "size=256k"))  # fmt: skip
    assert done.returncode == 6, done.stderr
    (line,) = error_lines(done.stderr)
    assert "sub-01" in line and "no space left on device" in line
    left = files_left(done, out)
    assert any(path.endswith("/dataset_description.json") for path in left)  # it was mounted
    assert not [path for path in left if "/anat/" in path or path.endswith(".tmp")], left


def test_commit_is_all_or_nothing_when_the_disk_fills_up(tmp_path, monkeypatch):
    """ENOSPC on the third file: no derivative published, no temporary file left behind."""
    staged = []
    for index in range(5):
        path = tmp_path / "staged" / f"file{index}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(1000))
        staged.append((str(path), f"sub-01/anat/sub-01_file{index}.nii.gz"))
    out = tmp_path / "out"
    real_copy = fileio.shutil.copyfileobj
    calls = []

    def fill_up(source, target, length=0):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(source, target, length)

    monkeypatch.setattr(fileio.shutil, "copyfileobj", fill_up)
    record = out / "sub-01" / "log" / "run" / "status.json"
    with pytest.raises(OutputError, match="no space left on device"):
        derivatives.commit(staged, str(out), str(record), raw_root="", inputs={})
    assert not any((out / "sub-01" / "anat").iterdir())  # all or nothing
    assert not record.exists()

    monkeypatch.undo()  # space again; a temporary file of a killed commit is cleaned up
    stale = out / "sub-01" / "anat" / ".sub-01_file0.nii.gz.x1y2z3.tmp"
    stale.write_bytes(b"partial")
    published = derivatives.commit(staged, str(out), str(record), raw_root="", inputs={})
    assert published == sorted(r for _, r in staged)
    assert len(list((out / "sub-01" / "anat").iterdir())) == 5 and not temporaries(out)


# --- model bundles and devices --------------------------------------------------------------


def sct_bundle(folder: Path) -> Path:
    """A tiny untrained T1w → CT bundle on the phantom's 3 mm grid (windows of 32 voxels)."""
    import torch

    from bids_synth.models.bundle import save_bundle
    from bids_synth.nn.factory import build_network

    kwargs = {"channels": [4, 8], "norm": "instance", "in_channels": 1, "out_channels": 1}
    torch.manual_seed(0)
    meta = {
        "id": "sct-reliability",
        "version": "0.0.1",
        "task": "sct",
        "architecture": {"name": "unet", "kwargs": kwargs},
        "input": {
            "suffixes": ["T1w"],
            "channels": 1,
            "spacing_mm": [3, 3, 3],
            "normalization": {"method": "percentile", "low": 0.5, "high": 99.5},
        },
        "output": {
            "suffix": "CT",
            "units": "HU",
            "normalization": {"method": "scale", "offset": 0.0, "scale": 1000.0},
        },
        "inference": {"patch": [32, 32, 32], "overlap": 0.25},
    }
    save_bundle(folder, build_network("unet", **kwargs), meta=meta)
    return folder


def test_tampered_model_weights_stop_the_run_before_processing(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w"]})
    bundle = sct_bundle(tmp_path / "bundle")
    weights = bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    done = cli(bids, out, "participant", "-w", tmp_path / "work", "--tasks", "sct",
               "--sct-method", "model", "--sct-model", bundle, "--device", "cpu", *RUN)  # fmt: skip
    assert done.returncode == 7, done.stderr
    (line,) = error_lines(done.stderr)
    assert "sha256 mismatch" in line and "sct-reliability@0.0.1" in line
    assert not out.exists() or not list(out.iterdir())  # refused before anything was written


@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_missing_gpu_is_refused_at_start(tmp_path, capsys, device):
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 3:
        pytest.skip("this machine has the GPUs asked for")
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    code, errors = run_in_process(
        capsys, bids, tmp_path / "out", "participant", "-w", tmp_path / "work",
        "--tasks", "sct", "--device", device,
    )  # fmt: skip
    assert code == 2
    assert len(errors) == 1 and f"device {device} requested but" in errors[0], errors


def test_gpu_out_of_memory_falls_back_and_the_participant_completes(tmp_path, monkeypatch, caplog):
    """A simulated CUDA GPU that runs out of memory for every batch: the inference halves the
    batch, then moves to the CPU; the synthetic CT is written; the log and the sidecar say so."""
    import torch

    from bids_synth.nn import inference

    if torch.cuda.is_available():
        pytest.skip("a real GPU is present: not simulating one")
    place, run = inference._WindowRunner._place, inference._WindowRunner._run

    def fake_place(self):
        if self.device.type == "cuda":  # pretend the model moved to the GPU
            self.dtype = None
            return
        place(self)

    def out_of_memory_on_gpu(self, chunk):
        if self.device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return run(self, chunk)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(inference._WindowRunner, "_place", fake_place)
    monkeypatch.setattr(inference._WindowRunner, "_run", out_of_memory_on_gpu)
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    bundle = sct_bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    code = main([
        str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--tasks", "sct",
        "--sct-method", "model", "--sct-model", str(bundle), "--device", "cuda",
        "--use-plugin", str(ROOT / "workflows" / "plugins" / "linear.yml"),  # nodes in-process
    ])  # fmt: skip
    assert code == 0
    fallbacks = [r.message for r in caplog.records if "out of memory on cuda" in r.message]
    assert len(fallbacks) == 2 and fallbacks[-1].endswith("retrying on cpu with 1")
    ct = out / "sub-01" / "anat" / "sub-01_space-T1w_desc-synthetic_CT.nii.gz"
    assert nib.load(ct).shape == (44, 52, 44)
    sidecar = json.loads(ct.with_name(ct.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Device"] == "cpu" and sidecar["Warnings"].count("out of memory") == 2


# --- kill -9, concurrency, determinism, no network -------------------------------------------


def test_kill_9_mid_participant_then_rerun_gives_identical_outputs(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w"]})
    reference = tmp_path / "reference"
    assert cli(bids, reference, "participant", "-w", tmp_path / "work-ref", *RUN).returncode == 0

    out, work = tmp_path / "out", tmp_path / "work"
    n4_started = unit_work_folder(work, "01", None) / "anat_preproc_wf/n4/_report/report.rst"
    process = subprocess.Popen(
        [BIDS_SYNTH, bids, out, "participant", "-w", work, *RUN],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not n4_started.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the N4 node never started"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the CLI, nipype's workers, ANTs subprocesses
        process.wait()
    assert process.returncode == -signal.SIGKILL
    _wait_for_group_to_die(process.pid)
    assert not any(out.glob("sub-01/anat/*")), "derivatives were published before the kill"

    head_mask = unit_work_folder(work, "01", None) / "anat_preproc_wf/head_mask"
    cached = {path: path.stat().st_mtime_ns for path in head_mask.glob("result_*.pklz")}
    rerun = cli(bids, out, "participant", "-w", work, *RUN)
    assert rerun.returncode == 0, rerun.stderr
    assert digests(out) == digests(reference) and digests(out)
    assert not temporaries(out)
    assert cached and all(path.stat().st_mtime_ns == t for path, t in cached.items())  # reused


def _wait_for_group_to_die(pgid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still alive after SIGKILL")


def test_two_participants_at_once_into_one_output_folder(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w"]})
    out = tmp_path / "out"
    processes = [
        subprocess.Popen(
            [
                BIDS_SYNTH,
                bids,
                out,
                "participant",
                "--participant-label",
                label,
                "-w",
                tmp_path / f"work-{label}",
                *RUN,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for label in ("01", "02")
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    assert cli(bids, out, "group").returncode == 0

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert (out / "descriptions.tsv").read_text() == fileio.descriptions_tsv(
        derivatives.DESCRIPTIONS
    )
    ignored = (out / ".bidsignore").read_text().splitlines()
    assert sorted(ignored) == sorted(set(derivatives.BIDSIGNORE))
    records = [json.loads(path.read_text()) for path in sorted((out / "logs").glob("*.json"))]
    assert sorted(unit["participant_id"] for r in records for unit in r["units"]) == [
        "sub-01",
        "sub-02",
    ]
    assert all(unit["status"] == "success" for r in records for unit in r["units"])
    rows = (out / "group" / "cohort.tsv").read_text().splitlines()
    assert len(rows) == 3 and all("\tsuccess\t" in row for row in rows[1:])
    assert not temporaries(out)


def _update_dataset_files(args) -> None:
    out, raw, index = args
    for round_ in range(15):
        derivatives.write_dataset_files(
            out, raw_root=raw, descriptions={f"p{index}r{round_}": f"process {index}"}
        )


def test_dataset_files_survive_many_concurrent_writers(tmp_path):
    """Eight processes updating the shared files at once: no update lost, no file torn."""
    out, raw = tmp_path / "out", tmp_path / "raw"
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.map(_update_dataset_files, [(out, raw, index) for index in range(8)])
    rows = (out / "descriptions.tsv").read_text().splitlines()
    assert rows[0] == "desc_id\tdescription" and len(rows) == 1 + 8 * 15
    assert json.loads((out / "dataset_description.json").read_text())["Name"]
    assert sorted((out / ".bidsignore").read_text().split()) == sorted(derivatives.BIDSIGNORE)
    assert not temporaries(out)


def test_two_fresh_runs_are_bitwise_identical(tmp_path):
    """Same inputs and seed, fresh work folders: identical images, transforms and sidecars."""
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w", "CT"]})
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"out-{name}"
        done = cli(bids, out, "participant", "-w", tmp_path / f"work-{name}",
                   "--random-seed", "7", "--nprocs", "2")  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs.append(digests(out))
    assert len(runs[0]) == 14 and runs[0] == runs[1]


def _no_network_prefix() -> list[str] | None:
    options = ["-n"] if os.geteuid() == 0 else ["-rn"]
    try:
        ok = subprocess.run(["unshare", *options, "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        ok = False
    return ["unshare", *options] if ok else None


NO_NETWORK = _no_network_prefix()
needs_netns = pytest.mark.skipif(NO_NETWORK is None, reason="unshare -n is not permitted here")


@needs_netns
def test_participant_level_runs_without_network(tmp_path):
    reach = [sys.executable, "-c", "import socket; socket.create_connection(('1.1.1.1', 53), 3)"]
    probe = subprocess.run([*NO_NETWORK, *reach], capture_output=True, text=True)
    assert probe.returncode != 0 and "unreachable" in probe.stderr  # really no network
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    done = cli(bids, tmp_path / "out", "participant", "-w", tmp_path / "work", *RUN,
               prefix=NO_NETWORK)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert cli(bids, tmp_path / "out", "group", prefix=NO_NETWORK).returncode == 0


@pytest.mark.slow
@needs_netns
def test_demo_runs_without_network(tmp_path):
    done = cli("demo", tmp_path / "demo", "--nprocs", "2", prefix=NO_NETWORK, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "demo" / "derivatives" / "group" / "cohort.tsv").is_file()
