"""MR denoising interface: trained model, per-image noise2self or antspyx non-local means."""

from __future__ import annotations

import time

from nipype.interfaces.base import File, isdefined, traits

from bids_synth.interfaces.base import (
    MetadataOutputSpec,
    TorchInputSpec,
    TorchInterface,
    bundle_digest_trait,
    device_fields,
    read_bundle,
    save_nifti,
    set_itk_threads,
    single_threaded_image,
)

METHODS = ("model", "self", "nlm")


class _DenoiseInputSpec(TorchInputSpec):
    in_file = File(exists=True, mandatory=True, desc="MR image to denoise")
    head_mask = File(exists=True, mandatory=True, desc="head mask on the image's grid")
    method = traits.Enum(*METHODS, mandatory=True, desc="model, self or nlm")
    bundle = traits.Str(requires=["bundle_digest"], desc="model bundle folder (method model)")
    bundle_digest = bundle_digest_trait()
    self_steps = traits.Int(300, usedefault=True, desc="noise2self training steps (method self)")
    adapt_steps = traits.Int(
        desc="SURE steps fine-tuning the model on the image (method model; 0: none; "
        "default: the bundle's)"
    )


class _DenoiseOutputSpec(MetadataOutputSpec):
    out_file = File(exists=True, desc="denoised image on the input grid")


class Denoise(TorchInterface):
    """Denoise one MR image inside its head mask; record the noise σ before and after."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        set_itk_threads(self.inputs.num_threads)
        import nibabel as nib
        import numpy as np

        from bids_synth.synthesis import denoising

        self._start_torch()
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
            metadata.update(device_fields(info))
            metadata["Parameters"] = {
                key: info[key] for key in (*denoising.SELF_DEFAULTS, "final_loss")
            }
        else:
            denoised, info = self._model(data, mask, image.affine)
            metadata.update(device_fields(info))
            if "adaptation" in info:
                metadata["Adaptation"] = info["adaptation"]
        metadata.update(
            NoiseEstimator=denoising.NOISE_ESTIMATOR,
            NoiseSigmaBefore=round(denoising.noise_sigma(data, mask), 6),
            NoiseSigmaAfter=round(denoising.noise_sigma(denoised, mask), 6),
            RuntimeSeconds=round(time.perf_counter() - started, 2),
        )
        self._results["out_file"] = save_nifti(
            denoised.astype(np.float32), image.affine, runtime, "denoised.nii.gz", image.header
        )
        self._record(runtime, metadata)
        return runtime

    def _nlm(self, runtime):
        """Non-local means in a fresh process with one ITK thread (bitwise reproducible)."""
        return single_threaded_image(
            "bids_synth.synthesis.denoising",
            {"in_file": self.inputs.in_file, "mask_file": self.inputs.head_mask},
            runtime,
            "nlm.nii",
        )

    def _model(self, data, mask, affine):
        from bids_synth.synthesis.denoising import model_denoise

        bundle = read_bundle(self.inputs)
        steps = self.inputs.adapt_steps if isdefined(self.inputs.adapt_steps) else None
        return model_denoise(
            data, mask, bundle, affine, device=self.inputs.device, adapt_steps=steps
        )
