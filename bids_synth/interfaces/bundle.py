"""A model bundle maps MR images on the T1w grid to an MR image (contrast translation, learned
harmonization)."""

from __future__ import annotations

import json
import os
import time

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _BundleMRInputSpec(BaseInterfaceInputSpec):
    sources = InputMultiObject(
        File(exists=True), mandatory=True, desc="images on the T1w grid, in the bundle's order"
    )
    head_mask = File(exists=True, mandatory=True, desc="head mask of the T1w (outside: 0)")
    bundle = traits.Str(mandatory=True, desc="model bundle folder")
    seed = traits.Int(0, usedefault=True, desc="torch seed")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc="runs on a GPU (scheduler)")
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads")


class _BundleMROutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="predicted image on the T1w grid")
    out_metadata = File(exists=True, desc="sidecar fields known after the run (JSON)")
    metadata = traits.Dict(desc="the same fields as a dictionary")


class BundleMRPrediction(SimpleInterface):
    """Run an MR-output bundle on a session's images (float32, ≥ 0, 0 outside the head)."""

    input_spec = _BundleMRInputSpec
    output_spec = _BundleMROutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np
        import torch

        from bids_synth.interfaces.sct import device_fields
        from bids_synth.models import Bundle
        from bids_synth.models.prediction import predict_mr_in_head

        started = time.perf_counter()
        torch.manual_seed(self.inputs.seed)
        torch.set_num_threads(max(self.inputs.num_threads, 1))
        reference = nib.load(self.inputs.sources[0])
        channels = [
            np.asanyarray(nib.load(p).dataobj, dtype=np.float32) for p in self.inputs.sources
        ]
        bundle = Bundle.read(self.inputs.bundle)
        head = np.asanyarray(nib.load(self.inputs.head_mask).dataobj) > 0.5
        predicted, info = predict_mr_in_head(
            bundle, channels, reference.affine, head, device=self.inputs.device
        )
        metadata = device_fields(info)
        metadata["RuntimeSeconds"] = round(time.perf_counter() - started, 2)
        image = nib.Nifti1Image(predicted, reference.affine)
        image.set_qform(reference.affine, code=1)
        image.set_sform(reference.affine, code=1)
        self._results["out_file"] = os.path.join(runtime.cwd, "predicted.nii.gz")
        nib.save(image, self._results["out_file"])
        self._results["out_metadata"] = os.path.join(runtime.cwd, "metadata.json")
        with open(self._results["out_metadata"], "w") as handle:
            json.dump(metadata, handle, indent=2)
        self._results["metadata"] = metadata
        return runtime
