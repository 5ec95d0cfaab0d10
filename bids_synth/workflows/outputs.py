"""Derivative sinks of one participant/session, committed together at the end."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.bids import bids_uri, source_entities
from bids_synth.interfaces.derivatives import CommitDerivatives, DerivativesDataSink


def init_derivatives_wf(
    *,
    outputs: dict[str, dict],
    entities: dict[str, str],
    raw_root: str,
    reference: str,
    output_dir: str,
    record: str,
    digests: dict[str, str],
    run_metadata: tuple[str, ...] = (),
    name: str = "derivatives_wf",
) -> pe.Workflow:
    """One sink per output and a commit node that publishes them all or none.

    ``outputs`` maps each inputnode field to its sink settings: ``entities`` (derivative entities
    besides subject/session), ``sources`` (input files), optional ``metadata`` and ``dtype``.
    Each output's name keeps the source entities (acq, ce, rec, run, ...) of the first of its
    ``sources``, the image it is made from.
    Fields named in ``run_metadata`` also get an inputnode field ``<field>_metadata``: a dict
    merged into the sidecar once the step that made the output has run. ``reference`` is the
    raw T1w whose grid ``space-T1w`` outputs are on; ``digests`` maps each input file of the
    participant/session to its sha256.
    """
    workflow = pe.Workflow(name=name)
    fields = sorted(outputs)
    metadata_fields = [f"{field}_metadata" for field in run_metadata]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields + metadata_fields), name="inputnode")
    merge = pe.Node(niu.Merge(len(fields)), name="merge_staged", run_without_submitting=True)
    commit = pe.Node(
        CommitDerivatives(
            output_dir=output_dir,
            record=record,
            raw_root=raw_root,
            inputs={bids_uri(path, raw_root): sha256 for path, sha256 in digests.items()},
        ),
        name="commit",
        overwrite=True,  # re-publish on every run, so deleted outputs come back
    )
    for index, field in enumerate(fields, start=1):
        spec = outputs[field]
        sink = pe.Node(
            DerivativesDataSink(
                entities={
                    **entities,
                    "datatype": "anat",
                    **source_entities(spec["sources"][0]),
                    **spec["entities"],
                },
                source_files=list(spec["sources"]),
                source_digests={path: digests[path] for path in spec["sources"]},
                raw_root=raw_root,
                reference=reference,
                metadata=spec.get("metadata", {}),
                data_dtype=spec.get("dtype", ""),
            ),
            name=f"ds_{field}",
            run_without_submitting=True,
        )
        workflow.connect(inputnode, field, sink, "in_file")
        if field in run_metadata:
            workflow.connect(inputnode, f"{field}_metadata", sink, "run_metadata")
        workflow.connect(sink, "staged", merge, f"in{index}")
    workflow.connect(merge, "out", commit, "staged")
    return workflow
