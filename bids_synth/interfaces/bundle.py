"""A model bundle maps MR images on the T1w grid to an MR image (contrast translation, learned
harmonization)."""

from __future__ import annotations

import time

from nipype.interfaces.base import File, InputMultiObject, traits

from bids_synth.interfaces.base import (
    MetadataOutputSpec,
    TorchInputSpec,
    TorchInterface,
    bundle_digest_trait,
    device_fields,
    read_bundle,
    save_nifti,
)


class _BundleMRInputSpec(TorchInputSpec):
    sources = InputMultiObject(
        File(exists=True), mandatory=True, desc="images on the T1w grid, in the bundle's order"
    )
    head_mask = File(exists=True, mandatory=True, desc="head mask of the T1w (outside: 0)")
    brain_mask = File(
        exists=True,
        mandatory=True,
        desc="brain mask of the T1w: the bundles learned whole heads, so a skull-stripped input "
        "is refused",
    )
    bundle = traits.Str(mandatory=True, requires=["bundle_digest"], desc="model bundle folder")
    bundle_digest = bundle_digest_trait()


class _BundleMROutputSpec(MetadataOutputSpec):
    out_file = File(exists=True, desc="predicted image on the T1w grid")


class BundleMRPrediction(TorchInterface):
    """Run an MR-output bundle on a session's images (float32, ≥ 0, 0 outside the head)."""

    input_spec = _BundleMRInputSpec
    output_spec = _BundleMROutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_synth.models.prediction import predict_mr_in_head
        from bids_synth.preproc.masks import require_whole_head

        self._start_torch()
        started = time.perf_counter()
        reference = nib.load(self.inputs.sources[0])
        channels = [
            np.asanyarray(nib.load(p).dataobj, dtype=np.float32) for p in self.inputs.sources
        ]
        bundle = read_bundle(self.inputs)
        head = np.asanyarray(nib.load(self.inputs.head_mask).dataobj) > 0.5
        brain = np.asanyarray(nib.load(self.inputs.brain_mask).dataobj) > 0.5
        require_whole_head(head, brain, reference.header.get_zooms()[:3], bundle.ref)
        predicted, info = predict_mr_in_head(
            bundle, channels, reference.affine, head, device=self.inputs.device
        )
        metadata = device_fields(info)
        metadata["RuntimeSeconds"] = round(time.perf_counter() - started, 2)
        self._results["out_file"] = save_nifti(
            predicted, reference.affine, runtime, "predicted.nii.gz"
        )
        self._record(runtime, metadata)
        return runtime
