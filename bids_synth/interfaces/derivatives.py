"""Derivative sinks: name outputs with pybids patterns, stage them, commit them atomically.

A :class:`DerivativesDataSink` writes one output (image or transform) and its JSON sidecar into
its own node folder under the derivative name; :class:`CommitDerivatives` runs once all the sinks
of a participant/session have succeeded and copies every staged file atomically into the output
dataset. A participant whose processing fails therefore leaves no partial set of derivatives.
Each sidecar records the sha256 of its sources, so that a later commit can tell which earlier
derivatives were made from inputs that have changed since.
"""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="file to publish")
    entities = traits.Dict(mandatory=True, desc="BIDS entities of the output (suffix, desc, ...)")
    source_files = traits.List(traits.Str, desc="input files this output derives from")
    source_digests = traits.Dict(traits.Str, traits.Str, desc="sha256 of each source file")
    raw_root = traits.Str(mandatory=True, desc="root of the raw dataset (for Sources URIs)")
    reference = traits.Str(mandatory=True, desc="raw T1w whose grid space-T1w names")
    metadata = traits.Dict(desc="sidecar fields known when the workflow is built (method, ...)")
    run_metadata = traits.Dict(
        usedefault=True, desc="sidecar fields known once the step ran (device, runtime, QC)"
    )
    data_dtype = traits.Str(desc="cast the image to this numpy dtype (e.g. uint8 for masks)")


def merge_metadata(built: dict, ran: dict) -> dict:
    """The sidecar fields known at build time updated by those known once the step ran; the
    ``Parameters`` of both are kept (merged key by key, the run's winning)."""
    merged = {**built, **ran}
    if isinstance(built.get("Parameters"), dict) and isinstance(ran.get("Parameters"), dict):
        merged["Parameters"] = {**built["Parameters"], **ran["Parameters"]}
    return merged


class _SinkOutputSpec(TraitedSpec):
    staged = traits.List(traits.Tuple(traits.Str, traits.Str), desc="(staged file, relative path)")


class DerivativesDataSink(SimpleInterface):
    """Stage one derivative and its sidecar under their BIDS derivative names."""

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec

    def _run_interface(self, runtime):
        from bids_synth.derivatives import sidecar, stage_image, stage_json

        entities = dict(self.inputs.entities)
        staged = [stage_image(self.inputs.in_file, entities, runtime.cwd, self.inputs.data_dtype)]
        meta = sidecar(
            sources=self.inputs.source_files,
            digests=self.inputs.source_digests,
            raw_root=self.inputs.raw_root,
            entities=entities,
            reference=self.inputs.reference,
            extra=merge_metadata(self.inputs.metadata, self.inputs.run_metadata),
        )
        staged.append(stage_json(meta, entities, runtime.cwd))
        self._results["staged"] = staged
        return runtime


class _CommitInputSpec(BaseInterfaceInputSpec):
    staged = traits.List(mandatory=True, desc="(staged file, relative path) pairs of all sinks")
    output_dir = traits.Str(mandatory=True, desc="root of the derivatives dataset")
    record = traits.Str(mandatory=True, desc="path of the run record to write after the commit")
    raw_root = traits.Str(mandatory=True, desc="root of the raw dataset (for Sources URIs)")
    inputs = traits.Dict(
        traits.Str, traits.Str, mandatory=True, desc="BIDS URI -> sha256 of each input"
    )


class _CommitOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str, desc="relative paths of the committed derivatives")


class CommitDerivatives(SimpleInterface):
    """Copy every staged derivative into the output dataset atomically, remove the derivatives
    of earlier runs made from inputs that have changed since, then write the record."""

    input_spec = _CommitInputSpec
    output_spec = _CommitOutputSpec

    def _run_interface(self, runtime):
        from bids_synth.derivatives import commit

        self._results["out_files"] = commit(
            self.inputs.staged,
            self.inputs.output_dir,
            self.inputs.record,
            raw_root=self.inputs.raw_root,
            inputs=self.inputs.inputs,
        )
        return runtime
