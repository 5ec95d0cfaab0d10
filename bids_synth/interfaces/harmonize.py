"""Intensity harmonization: one image within the brain mask (Nyul, WhiteStripe, z-score), or a
learned bundle mapping a session's images to its target site."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _HarmonizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image on the T1w grid")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the same grid")
    method = traits.Enum("nyul", "whitestripe", "zscore", mandatory=True, desc="standardisation")
    reference = File(exists=True, desc="Nyul reference JSON (method nyul)")
    suffix = traits.Str(mandatory=True, desc="contrast (WhiteStripe: T1w takes the last mode)")


class _HarmonizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="harmonized image (float32)")


class HarmonizeIntensity(SimpleInterface):
    """Map the image's intensities onto the standard scale fitted inside the brain mask."""

    input_spec = _HarmonizeInputSpec
    output_spec = _HarmonizeOutputSpec

    def _run_interface(self, runtime):
        import os

        import nibabel as nib
        import numpy as np

        from bids_synth.synthesis import harmonization
        from bids_synth.synthesis.harmonization_reference import read_reference

        image = nib.load(self.inputs.in_file)
        data = image.get_fdata(dtype=np.float64)
        mask = np.asanyarray(nib.load(self.inputs.mask_file).dataobj) > 0
        if self.inputs.method == "nyul":
            reference, _ = read_reference(self.inputs.reference)
            out = harmonization.apply_nyul(data, mask, reference)
        elif self.inputs.method == "whitestripe":
            out, _ = harmonization.apply_whitestripe(
                data, mask, last_mode=self.inputs.suffix == "T1w"
            )
        else:
            out = harmonization.zscore(data, mask)
        harmonized = nib.Nifti1Image(out.astype(np.float32), image.affine, image.header)
        harmonized.set_data_dtype(np.float32)
        path = os.path.join(runtime.cwd, "harmonized.nii.gz")
        nib.save(harmonized, path)
        self._results["out_file"] = path
        return runtime


class _LearnedHarmonizeInputSpec(BaseInterfaceInputSpec):
    sources = InputMultiObject(
        File(exists=True), mandatory=True, desc="images on the T1w grid, in the bundle's order"
    )
    head_mask = File(exists=True, mandatory=True, desc="head mask on the same grid (outside: 0)")
    bundle = traits.Str(mandatory=True, desc="harmonization model bundle folder")
    seed = traits.Int(0, usedefault=True, desc="torch seed")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc="runs on a GPU (scheduler)")
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads")


class _LearnedHarmonizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="harmonized image in the target site's scanner units")
    out_metadata = File(exists=True, desc="sidecar fields known after the run (JSON)")
    metadata = traits.Dict(desc="the same fields as a dictionary")


class LearnedHarmonize(SimpleInterface):
    """Map the session's images to the bundle's target site (float32, ≥ 0, 0 outside the head)."""

    input_spec = _LearnedHarmonizeInputSpec
    output_spec = _LearnedHarmonizeOutputSpec

    def _run_interface(self, runtime):
        import json
        import os
        import time

        import nibabel as nib
        import numpy as np
        import torch

        from bids_synth.interfaces.sct import device_fields
        from bids_synth.models import Bundle
        from bids_synth.synthesis.harmonization_learned import harmonize_session

        started = time.perf_counter()
        torch.manual_seed(self.inputs.seed)
        torch.set_num_threads(max(self.inputs.num_threads, 1))
        reference = nib.load(self.inputs.sources[0])
        channels = [
            np.asanyarray(nib.load(p).dataobj, dtype=np.float32) for p in self.inputs.sources
        ]
        bundle = Bundle.read(self.inputs.bundle)
        head = np.asanyarray(nib.load(self.inputs.head_mask).dataobj) > 0.5
        predicted, info = harmonize_session(
            bundle, channels, reference.affine, head, device=self.inputs.device
        )
        metadata = {
            **device_fields(info),
            "RuntimeSeconds": round(time.perf_counter() - started, 2),
        }
        image = nib.Nifti1Image(predicted, reference.affine)
        image.set_qform(reference.affine, code=1)
        image.set_sform(reference.affine, code=1)
        self._results["out_file"] = os.path.join(runtime.cwd, "harmonized.nii.gz")
        nib.save(image, self._results["out_file"])
        self._results["out_metadata"] = os.path.join(runtime.cwd, "metadata.json")
        with open(self._results["out_metadata"], "w") as handle:
            json.dump(metadata, handle, indent=2)
        self._results["metadata"] = metadata
        return runtime
