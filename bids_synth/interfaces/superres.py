"""Super-resolution interface: thick-slice MR to isotropic voxels, SMORE-like or B-spline."""

from __future__ import annotations

import time

from nipype.interfaces.base import File, traits

from bids_synth.interfaces.base import (
    MetadataOutputSpec,
    TorchInputSpec,
    TorchInterface,
    save_nifti,
)
from bids_synth.synthesis.superresolution import SLICE_PROFILES, SMORE_DEFAULTS

METHODS = ("self", "bspline")


class _SuperResInputSpec(TorchInputSpec):
    in_file = File(exists=True, mandatory=True, desc="anisotropic MR image as acquired")
    method = traits.Enum(*METHODS, mandatory=True, desc="self (SMORE-like) or bspline")
    slice_thickness = traits.Float(desc="slice thickness in mm (default: the slice spacing)")
    slice_profile = traits.Enum(
        *SLICE_PROFILES, desc="the slice profile's shape (default: unknown, trained for both)"
    )
    steps = traits.Int(
        SMORE_DEFAULTS["steps"], usedefault=True, desc="training steps (method self)"
    )


class _SuperResOutputSpec(MetadataOutputSpec):
    out_file = File(exists=True, desc="isotropic image over the input's field of view")


class SuperResolution(TorchInterface):
    """Resample one anisotropic MR image to isotropic voxels at its in-plane resolution."""

    input_spec = _SuperResInputSpec
    output_spec = _SuperResOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_synth.synthesis import superresolution as sr

        self._start_torch()
        started = time.perf_counter()
        image = nib.load(self.inputs.in_file)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        zooms = sr.voxel_sizes(image.affine)
        thick = int(np.argmax(zooms))
        thickness = self.inputs.slice_thickness or None
        metadata = {"Method": self.inputs.method, "Device": "cpu"}
        if self.inputs.method == "bspline":
            out, affine = sr.bspline_isotropic(data, image.affine, np.delete(zooms, thick).min())
            metadata["Parameters"] = {"interpolation": "cubic B-spline (scipy, mode nearest)"}
        else:
            out, affine, info = sr.smore(
                data,
                image.affine,
                thickness_mm=thickness,
                profile=self.inputs.slice_profile or None,
                seed=self.inputs.seed,
                device=self.inputs.device,
                steps=self.inputs.steps,
            )
            thickness = info["slice_thickness_mm"]
            metadata["Device"] = info["device"]
            metadata["SliceProfile"] = info["slice_profile"]
            metadata["SliceProfileSource"] = (
                "SliceThickness from the sidecar"
                if self.inputs.slice_thickness
                else "thickness estimated from the image"
            ) + (
                "; shape given on the command line"
                if self.inputs.slice_profile
                else "; shape unknown: trained for a box and a Gaussian"
            )
            metadata["Parameters"] = {
                key: info[key] for key in (*sr.SMORE_DEFAULTS, "factor", "best_step", "final_loss")
            }
        metadata.update(
            ResolutionBefore=[round(float(z), 4) for z in zooms],
            ResolutionAfter=[round(float(z), 4) for z in sr.voxel_sizes(affine)],
            SliceAxis=thick,
            SliceThickness=round(float(thickness or zooms[thick]), 4),
            SliceGap=round(float(zooms[thick] - (thickness or zooms[thick])), 4),
            RuntimeSeconds=round(time.perf_counter() - started, 2),
        )
        self._results["out_file"] = save_nifti(
            out.astype(np.float32), affine, runtime, "superres.nii.gz"
        )
        self._record(runtime, metadata)
        return runtime
