"""Synthetic CT interfaces: head-model atlas pairs and MR → CT by model, bulk classes or atlas."""

from __future__ import annotations

import time

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

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

METHODS = ("model", "bulk", "atlas")


class _AtlasInputSpec(BaseInterfaceInputSpec):
    seeds = traits.List(traits.Int, mandatory=True, desc="head-model seeds, one atlas pair each")
    spacing = traits.Float(2.0, usedefault=True, desc="atlas voxel size (mm)")


class _AtlasOutputSpec(TraitedSpec):
    atlas_t1w = OutputMultiObject(File(exists=True), desc="atlas T1w images")
    atlas_ct = OutputMultiObject(File(exists=True), desc="atlas CT images (HU)")


class HeadModelAtlas(SimpleInterface):
    """MR/CT atlas pairs drawn from the generative head model (cached in the node's folder)."""

    input_spec = _AtlasInputSpec
    output_spec = _AtlasOutputSpec

    def _run_interface(self, runtime):
        from bids_synth.synthesis.sct_atlas import write_head_model_atlas

        pairs = [
            write_head_model_atlas(seed, self.inputs.spacing, runtime.cwd)
            for seed in self.inputs.seeds
        ]
        self._results["atlas_t1w"] = [t1w for t1w, _ in pairs]
        self._results["atlas_ct"] = [ct for _, ct in pairs]
        return runtime


class _SyntheticCTInputSpec(TorchInputSpec):
    t1w = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    t2w = File(exists=True, desc="T2w on the T1w grid (second channel of a two-channel bundle)")
    head_mask = File(exists=True, mandatory=True, desc="head mask of the T1w")
    brain_mask = File(exists=True, mandatory=True, desc="brain mask of the T1w")
    method = traits.Enum(*METHODS, mandatory=True, desc="model, bulk or atlas")
    bundle = traits.Str(requires=["bundle_digest"], desc="model bundle folder (method model)")
    bundle_digest = bundle_digest_trait()
    atlas_t1w = InputMultiObject(File(exists=True), desc="atlas T1w images (method atlas)")
    atlas_ct = InputMultiObject(File(exists=True), desc="atlas CT images, HU (method atlas)")
    bone_shell_mm = traits.Float(
        15.0, usedefault=True, desc="bulk: dark voxels this near the brain are bone"
    )
    kvp = traits.Int(120, usedefault=True, desc="tube voltage assumed by the μ-map conversion")


class _SyntheticCTOutputSpec(MetadataOutputSpec):
    out_ct = File(exists=True, desc="synthetic CT in HU on the T1w grid")
    out_mask = File(exists=True, desc="head mask used (outside: air)")
    out_mumap = File(exists=True, desc="511 keV attenuation map (cm⁻¹)")


class SyntheticCT(TorchInterface):
    """MR → synthetic CT (HU), its head mask and μ-map, with QC values for the sidecar."""

    input_spec = _SyntheticCTInputSpec
    output_spec = _SyntheticCTOutputSpec

    def _run_interface(self, runtime):
        set_itk_threads(self.inputs.num_threads)
        import ants
        import nibabel as nib
        import numpy as np

        from bids_synth.preproc.masks import require_whole_head
        from bids_synth.synthesis import sct_methods

        started = time.perf_counter()
        reference = nib.load(self.inputs.t1w)
        head_data = np.asanyarray(nib.load(self.inputs.head_mask).dataobj) > 0.5
        brain_data = (np.asanyarray(nib.load(self.inputs.brain_mask).dataobj) > 0.5) & head_data
        require_whole_head(head_data, brain_data, reference.header.get_zooms()[:3], "synthetic CT")
        t1w = ants.image_read(self.inputs.t1w)
        head = ants.image_read(self.inputs.head_mask)
        brain = ants.image_read(self.inputs.brain_mask)
        metadata = {"Device": "cpu"}
        if self.inputs.method == "bulk":
            hu = sct_methods.bulk_ct(
                t1w, head, brain, bone_shell_mm=self.inputs.bone_shell_mm
            ).numpy()
        elif self.inputs.method == "atlas":
            hu = self._propagate_atlases(runtime)
        else:
            hu, metadata = self._predict()
        hu = sct_methods.clip_hu(np.where(head_data, hu, sct_methods.BULK_HU["air"]))
        mumap = sct_methods.attenuation_map(hu, kvp=self.inputs.kvp)
        qc = sct_methods.ct_qc(hu, head_data, brain_data)
        warnings = [*_as_list(metadata.get("Warnings")), *qc.pop("Warnings", [])]
        metadata.update(qc)
        if warnings:
            metadata["Warnings"] = "; ".join(warnings)
        metadata["RuntimeSeconds"] = round(time.perf_counter() - started, 2)
        affine = reference.affine
        self._results["out_ct"] = save_nifti(
            np.rint(hu).astype(np.int16), affine, runtime, "sct.nii.gz"
        )
        self._results["out_mask"] = save_nifti(
            head_data.astype(np.uint8), affine, runtime, "mask.nii.gz"
        )
        self._results["out_mumap"] = save_nifti(mumap, affine, runtime, "mumap.nii.gz")
        self._record(runtime, metadata)
        return runtime

    def _propagate_atlases(self, runtime):
        """Atlas HU on the T1w grid, registered in a fresh single-threaded process."""
        return single_threaded_image(
            "bids_synth.synthesis.sct_atlas",
            {
                "t1w": self.inputs.t1w,
                "head_mask": self.inputs.head_mask,
                "atlases": [list(p) for p in zip(self.inputs.atlas_t1w, self.inputs.atlas_ct)],
                "seed": self.inputs.seed,
            },
            runtime,
            "atlas_hu.nii.gz",
        )

    def _predict(self):
        """HU predicted by the bundle, and the device really used."""
        import nibabel as nib
        import numpy as np

        from bids_synth.models.prediction import predict_on_grid

        self._start_torch()
        bundle = read_bundle(self.inputs)
        image = nib.load(self.inputs.t1w)
        channels = [np.asanyarray(image.dataobj, dtype=np.float32)]
        if len(bundle.meta["input"].get("suffixes", ["T1w"])) > 1:
            channels.append(np.asanyarray(nib.load(self.inputs.t2w).dataobj, dtype=np.float32))
        head = np.asanyarray(nib.load(self.inputs.head_mask).dataobj) > 0.5
        hu, info = predict_on_grid(
            bundle, channels, image.affine, device=self.inputs.device, mask=head
        )
        return hu, device_fields(info)


def _as_list(value) -> list[str]:
    return [] if not value else [value] if isinstance(value, str) else list(value)
