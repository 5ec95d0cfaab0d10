"""Intensity harmonization of one image within a mask (Nyul, WhiteStripe, z-score); the learned
method runs :class:`bids_synth.interfaces.bundle.BundleMRPrediction`, then Nyul onto the bundle's
reference."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_synth.interfaces.base import save_nifti


class _HarmonizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image on the T1w grid")
    mask_file = File(
        exists=True,
        mandatory=True,
        desc="mask on the same grid where the transform is fitted (brain; head for a learned "
        "bundle's reference)",
    )
    method = traits.Enum("nyul", "whitestripe", "zscore", mandatory=True, desc="standardisation")
    reference = File(exists=True, desc="Nyul reference JSON (method nyul)")
    suffix = traits.Str(mandatory=True, desc="contrast (WhiteStripe: T1w takes the last mode)")


class _HarmonizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="harmonized image (float32)")


class HarmonizeIntensity(SimpleInterface):
    """Map the image's intensities onto the standard scale fitted inside the mask."""

    input_spec = _HarmonizeInputSpec
    output_spec = _HarmonizeOutputSpec

    def _run_interface(self, runtime):
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
        self._results["out_file"] = save_nifti(
            out.astype(np.float32), image.affine, runtime, "harmonized.nii.gz", image.header
        )
        return runtime
