"""What the interfaces share: the torch inputs and sidecar outputs, NIfTI and JSON writing, ITK
threads and single-threaded subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class TorchInputSpec(BaseInterfaceInputSpec):
    seed = traits.Int(0, usedefault=True, desc="random seed (torch, patch sampling, registration)")
    use_gpu = traits.Bool(
        False, usedefault=True, desc="runs on a GPU (scheduler; a GPU result is not a CPU one's)"
    )
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads (torch, ITK)")


class MetadataOutputSpec(TraitedSpec):
    out_metadata = File(exists=True, desc="sidecar fields known after the run (JSON)")
    metadata = traits.Dict(desc="the same fields as a dictionary")


class TorchInterface(SimpleInterface):
    """An interface that may run torch (inputs :class:`TorchInputSpec`) and ends by recording
    its sidecar fields (outputs :class:`MetadataOutputSpec`)."""

    def _start_torch(self) -> None:
        """Seed torch and limit its CPU threads to ``num_threads``."""
        import torch

        torch.manual_seed(self.inputs.seed)
        torch.set_num_threads(max(self.inputs.num_threads, 1))

    def _record(self, runtime, metadata: dict) -> None:
        """``metadata`` as the ``metadata`` output and as ``metadata.json`` in the node folder."""
        self._results["out_metadata"] = os.path.join(runtime.cwd, "metadata.json")
        with open(self._results["out_metadata"], "w") as handle:
            json.dump(metadata, handle, indent=2)
        self._results["metadata"] = metadata


def save_nifti(data, affine, runtime, name: str, header=None) -> str:
    """Write ``data`` as ``name`` in the node folder: with the input's ``header`` (stored as
    ``data``'s type), else with ``affine`` as qform and sform (code 1). Returns the path."""
    import nibabel as nib

    image = nib.Nifti1Image(data, affine, header)
    if header is None:
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
    else:
        image.set_data_dtype(data.dtype)
    path = os.path.join(runtime.cwd, name)
    nib.save(image, path)
    return path


def bundle_digest_trait():
    """The digest of the bundle when the workflow was built (:func:`read_bundle` checks it)."""
    return traits.Str(desc="digest of the bundle's files: a replaced bundle runs again")


def read_bundle(inputs):
    """The bundle of ``inputs.bundle``, still the one whose digest the workflow was built with."""
    from bids_synth.errors import ModelBundleError
    from bids_synth.models import Bundle

    bundle = Bundle.read(inputs.bundle)
    if bundle.digest != inputs.bundle_digest:
        raise ModelBundleError(
            f"model bundle {bundle.ref} changed on disk while the run was being built; run again"
        )
    return bundle


def device_fields(info: dict) -> dict:
    """Sidecar fields from a prediction's info: the device really used, its precision (autocast)
    and any fallback."""
    fields = {"Device": info["device"]}
    if info.get("amp"):
        fields["Precision"] = info["amp"]
    if info.get("fallbacks"):
        fields["Warnings"] = "; ".join(info["fallbacks"])
    return fields


def set_itk_threads(n: int) -> None:
    """ITK reads its thread count from the environment when a filter is created."""
    if n > 0:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)


def single_threaded_image(module: str, kwargs: dict, runtime, name: str):
    """The float32 image that ``module`` writes as ``name`` in the node folder when run by
    :func:`run_single_threaded` with ``kwargs`` and ``out_file``."""
    import nibabel as nib
    import numpy as np

    out_file = os.path.join(runtime.cwd, name)
    run_single_threaded(module, {**kwargs, "out_file": out_file})
    return np.asanyarray(nib.load(out_file).dataobj, dtype=np.float32)


def run_single_threaded(module: str, kwargs: dict) -> None:
    """``python -m module '<kwargs as JSON>'`` with one ITK thread; RuntimeError on failure."""
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(kwargs)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        lines = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise RuntimeError(f"{module} failed: {reason}")
