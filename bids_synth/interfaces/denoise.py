"""MR denoising interface: trained model, per-image noise2self or antspyx non-local means."""

from __future__ import annotations

import json
import os
import time

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

METHODS = ("model", "self", "nlm")


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="MR image to denoise")
    head_mask = File(exists=True, mandatory=True, desc="head mask on the image's grid")
    method = traits.Enum(*METHODS, mandatory=True, desc="model, self or nlm")
    bundle = traits.Str(desc="model bundle folder (method model)")
    self_steps = traits.Int(300, usedefault=True, desc="noise2self training steps (method self)")
    seed = traits.Int(0, usedefault=True, desc="random seed (torch, patch sampling)")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc="runs on a GPU (scheduler)")
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads (torch, ITK)")


class _DenoiseOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="denoised image on the input grid")
    out_metadata = File(exists=True, desc="sidecar fields known after the run (JSON)")
    metadata = traits.Dict(desc="the same fields as a dictionary")


class Denoise(SimpleInterface):
    """Denoise one MR image inside its head mask; record the noise σ before and after."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        if self.inputs.num_threads > 0:
            os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.inputs.num_threads)
        import nibabel as nib
        import numpy as np
        import torch

        from bids_synth.synthesis import denoising

        torch.manual_seed(self.inputs.seed)
        torch.set_num_threads(max(self.inputs.num_threads, 1))
        started = time.perf_counter()
        image = nib.load(self.inputs.in_file)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        mask = np.asanyarray(nib.load(self.inputs.head_mask).dataobj) > 0.5
        metadata = {"Method": self.inputs.method, "Device": "cpu"}
        if self.inputs.method == "nlm":
            denoised = self._nlm(runtime)
            metadata["Parameters"] = {"noise_model": "Rician", "mask": "head"}
        elif self.inputs.method == "self":
            denoised, info = denoising.self_supervised_denoise(
                data,
                mask,
                seed=self.inputs.seed,
                device=self.inputs.device,
                steps=self.inputs.self_steps,
            )
            metadata.update(_device_fields(info))
            metadata["Parameters"] = {
                key: info[key] for key in (*denoising.SELF_DEFAULTS, "final_loss")
            }
        else:
            denoised, info = self._model(data, mask, image.affine)
            metadata.update(_device_fields(info))
        metadata.update(
            NoiseEstimator=denoising.NOISE_ESTIMATOR,
            NoiseSigmaBefore=round(denoising.noise_sigma(data, mask), 6),
            NoiseSigmaAfter=round(denoising.noise_sigma(denoised, mask), 6),
            RuntimeSeconds=round(time.perf_counter() - started, 2),
        )
        out = nib.Nifti1Image(denoised.astype(np.float32), image.affine, image.header)
        out.set_data_dtype(np.float32)
        self._results["out_file"] = os.path.join(runtime.cwd, "denoised.nii.gz")
        nib.save(out, self._results["out_file"])
        self._results["out_metadata"] = os.path.join(runtime.cwd, "metadata.json")
        with open(self._results["out_metadata"], "w") as handle:
            json.dump(metadata, handle, indent=2)
        self._results["metadata"] = metadata
        return runtime

    def _nlm(self, runtime):
        """Non-local means in a fresh process with one ITK thread (bitwise reproducible)."""
        import nibabel as nib
        import numpy as np

        from bids_synth.interfaces.ants import _run_single_threaded

        out_file = os.path.join(runtime.cwd, "nlm.nii")
        _run_single_threaded(
            "bids_synth.synthesis.denoising",
            {
                "in_file": self.inputs.in_file,
                "mask_file": self.inputs.head_mask,
                "out_file": out_file,
            },
        )
        return np.asanyarray(nib.load(out_file).dataobj, dtype=np.float32)

    def _model(self, data, mask, affine):
        from bids_synth.models import Bundle
        from bids_synth.synthesis.denoising import model_denoise

        bundle = Bundle.read(self.inputs.bundle)
        return model_denoise(data, mask, bundle, affine, device=self.inputs.device)


def _device_fields(info: dict) -> dict:
    """The device really used and any out-of-memory fallback, as sidecar fields."""
    fields = {"Device": info["device"]}
    if info.get("fallbacks"):
        fields["Warnings"] = "; ".join(info["fallbacks"])
    return fields
