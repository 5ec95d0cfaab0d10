"""Preprocessing interfaces over antspyx: head/brain masks, N4 and registration to the T1w."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_synth.config import COREG_TRANSFORMS
from bids_synth.interfaces.base import (
    TorchInputSpec,
    TorchInterface,
    bundle_digest_trait,
    read_bundle,
    run_single_threaded,
    set_itk_threads,
)
from bids_synth.modalities import AIR_HU


class _HeadMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="MR or CT image")
    modality = traits.Enum("MR", "CT", usedefault=True, desc="how to threshold the head")


class _MaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="binary mask (uint8)")


class HeadMask(SimpleInterface):
    """Head mask: threshold (the clip level for MR, −500 HU for CT), closing, hole filling, largest
    component."""

    input_spec = _HeadMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        import ants

        from bids_synth.preproc.masks import head_mask

        image = ants.image_read(self.inputs.in_file)
        mask = head_mask(image, modality=self.inputs.modality)
        self._results["out_mask"] = _write(mask.astype("uint8"), runtime, "head_mask.nii")
        return runtime


class _BrainMaskInputSpec(TorchInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    head_mask = File(exists=True, mandatory=True, desc="head mask of the T1w")
    method = traits.Enum("morphology", "model", usedefault=True, desc="how the brain is found")
    bundle = traits.Str(requires=["bundle_digest"], desc="brainmask bundle folder (method model)")
    bundle_digest = bundle_digest_trait()


class BrainMask(TorchInterface):
    """Brain mask of a T1w: from tissue classes and morphology (:func:`brain_mask`), or from a
    ``brainmask`` bundle (:func:`learned_brain_mask`)."""

    input_spec = _BrainMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        import ants
        import nibabel as nib

        from bids_synth.preproc.masks import brain_mask, learned_brain_mask

        image = ants.image_read(self.inputs.in_file)
        head = ants.image_read(self.inputs.head_mask)
        if self.inputs.method == "model":
            self._start_torch()
            affine = nib.load(self.inputs.in_file).affine
            found, _ = learned_brain_mask(
                image.numpy(),
                affine,
                head.numpy() > 0,
                read_bundle(self.inputs),
                device=self.inputs.device,
            )
            mask = image.new_image_like(found.astype("float32"))
        else:
            mask = brain_mask(image, head)
        self._results["out_mask"] = _write(mask.astype("uint8"), runtime, "brain_mask.nii")
        return runtime


class _N4InputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="MR image")
    mask_file = File(exists=True, mandatory=True, desc="head mask where the bias field is fitted")
    shrink_factor = traits.Int(4, usedefault=True, desc="fit on an image shrunk by this factor")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="ITK threads")


class _N4OutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image")


class N4BiasCorrection(SimpleInterface):
    """N4 bias-field correction inside the head mask (antspyx ``n4_bias_field_correction``)."""

    input_spec = _N4InputSpec
    output_spec = _N4OutputSpec

    def _run_interface(self, runtime):
        set_itk_threads(self.inputs.num_threads)
        import ants

        image = ants.image_read(self.inputs.in_file)
        mask = ants.image_read(self.inputs.mask_file)
        bias = ants.n4_bias_field_correction(
            image, mask=mask, shrink_factor=self.inputs.shrink_factor, return_bias_field=True
        )
        self._results["out_file"] = _write(image / bias, runtime, "n4.nii")
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    fixed = File(exists=True, mandatory=True, desc="reference (bias-corrected T1w)")
    moving = File(exists=True, mandatory=True, desc="image to align to the reference")
    fixed_mask = File(exists=True, desc="head mask of the reference: the metric region")
    transform = traits.Enum(*COREG_TRANSFORMS, usedefault=True, desc="rigid, or rigid then affine")
    modality = traits.Enum("MR", "CT", usedefault=True, desc="sets the background value")
    random_seed = traits.Int(0, usedefault=True, desc="seed of the metric's sampling")


class _RegisterOutputSpec(TraitedSpec):
    out_matrix = File(exists=True, desc="ITK affine transform (moving → fixed), .mat")
    out_file = File(exists=True, desc="moving image resampled on the fixed grid")


class RegisterToReference(SimpleInterface):
    """Rigid (then affine) registration with Mattes mutual information, and resampling.

    Runs in a fresh process with one ITK thread: multi-threaded ANTs metrics are not bitwise
    reproducible, and ITK fixes its thread count once per process (see
    :mod:`bids_synth.preproc.registration`).
    """

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        matrix = os.path.join(runtime.cwd, "moving_to_fixed.mat")
        out_file = os.path.join(runtime.cwd, "registered.nii")
        run_single_threaded(
            "bids_synth.preproc.registration",
            {
                "fixed": self.inputs.fixed,
                "moving": self.inputs.moving,
                "fixed_mask": self.inputs.fixed_mask or None,
                "transform": self.inputs.transform,
                "background": AIR_HU if self.inputs.modality == "CT" else 0.0,
                "seed": self.inputs.random_seed,
                "workdir": runtime.cwd,
                "out_matrix": matrix,
                "out_file": out_file,
            },
        )
        self._results["out_matrix"] = matrix
        self._results["out_file"] = out_file
        return runtime


def _write(image, runtime, name: str) -> str:
    """Write into the node folder; uncompressed, as gzip costs more than the disk it saves here."""
    path = os.path.join(runtime.cwd, name)
    image.to_filename(path)
    return path
