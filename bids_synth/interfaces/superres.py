"""Super-resolution interface: thick-slice MR to isotropic voxels, SMORE-like or B-spline."""

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

from bids_synth.synthesis.superresolution import SMORE_DEFAULTS

METHODS = ("self", "bspline")


class _SuperResInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="anisotropic MR image as acquired")
    method = traits.Enum(*METHODS, mandatory=True, desc="self (SMORE-like) or bspline")
    slice_thickness = traits.Float(desc="slice thickness in mm (default: the slice spacing)")
    steps = traits.Int(
        SMORE_DEFAULTS["steps"], usedefault=True, desc="training steps (method self)"
    )
    seed = traits.Int(0, usedefault=True, desc="random seed (torch, patch sampling)")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc="runs on a GPU (scheduler)")
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads (torch)")


class _SuperResOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="isotropic image over the input's field of view")
    out_metadata = File(exists=True, desc="sidecar fields known after the run (JSON)")
    metadata = traits.Dict(desc="the same fields as a dictionary")


class SuperResolution(SimpleInterface):
    """Resample one anisotropic MR image to isotropic voxels at its in-plane resolution."""

    input_spec = _SuperResInputSpec
    output_spec = _SuperResOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np
        import torch

        from bids_synth.synthesis import superresolution as sr

        torch.manual_seed(self.inputs.seed)
        torch.set_num_threads(max(self.inputs.num_threads, 1))
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
                seed=self.inputs.seed,
                device=self.inputs.device,
                steps=self.inputs.steps,
            )
            thickness = info["slice_thickness_mm"]
            metadata["Device"] = info["device"]
            metadata["SliceProfile"] = info["slice_profile"]
            metadata["SliceProfileSource"] = (
                "SliceThickness from the sidecar; shape estimated from the image"
                if self.inputs.slice_thickness
                else "estimated from the image"
            )
            metadata["Parameters"] = {
                key: info[key]
                for key in (*sr.SMORE_DEFAULTS, "factor", "steps_run", "best_step", "final_loss")
            }
        metadata.update(
            ResolutionBefore=[round(float(z), 4) for z in zooms],
            ResolutionAfter=[round(float(z), 4) for z in sr.voxel_sizes(affine)],
            SliceAxis=thick,
            SliceThickness=round(float(thickness or zooms[thick]), 4),
            SliceGap=round(float(zooms[thick] - (thickness or zooms[thick])), 4),
            RuntimeSeconds=round(time.perf_counter() - started, 2),
        )
        out_image = nib.Nifti1Image(out.astype(np.float32), affine)
        out_image.set_qform(affine, code=1)
        out_image.set_sform(affine, code=1)
        self._results["out_file"] = os.path.join(runtime.cwd, "superres.nii.gz")
        nib.save(out_image, self._results["out_file"])
        self._results["out_metadata"] = os.path.join(runtime.cwd, "metadata.json")
        with open(self._results["out_metadata"], "w") as handle:
            json.dump(metadata, handle, indent=2)
        self._results["metadata"] = metadata
        return runtime
