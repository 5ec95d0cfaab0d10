"""Top-level workflow: one sub-workflow per participant, one branch per session."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.bids import SessionInputs
from bids_synth.config import Config
from bids_synth.derivatives import DESCRIPTIONS
from bids_synth.fileio import file_sha256
from bids_synth.workflows import WORKFLOW_NAME, workflow_base_dir
from bids_synth.workflows.outputs import init_derivatives_wf
from bids_synth.workflows.preproc import brain_mask_bundle, init_anat_preproc_wf, init_coreg_wf
from bids_synth.workflows.synthesis import registered_tasks


def init_bids_synth_wf(config: Config, units: list[SessionInputs]) -> pe.Workflow:
    """The whole run: a ``sub_<label>_wf`` per participant. The only workflow that reads
    ``config``."""
    execution, workflow_opts = config.execution, config.workflow
    workflow = pe.Workflow(name=WORKFLOW_NAME, base_dir=workflow_base_dir(execution.work_dir))
    brain_bundle = brain_mask_bundle(workflow_opts.brain_mask_method)
    for subject in sorted({unit.subject for unit in units}):
        workflow.add_nodes([
            init_single_subject_wf(
                sessions=[unit for unit in units if unit.subject == subject],
                raw_root=execution.bids_dir,
                output_dir=execution.output_dir,
                run_id=execution.run_id,
                tasks=workflow_opts.tasks,
                task_options=workflow_opts.task_options,
                device=workflow_opts.device,
                coreg_transform=workflow_opts.coreg_transform,
                shrink_factor=workflow_opts.n4_shrink_factor,
                brain_bundle=brain_bundle,
                omp_nthreads=config.nipype.omp_nthreads,
                seed=config.seeds.random_seed,
                name=f"sub_{subject}_wf",
            )
        ])  # fmt: skip
    return workflow


def init_single_subject_wf(
    *,
    sessions: list[SessionInputs],
    raw_root: str,
    output_dir: str,
    run_id: str,
    tasks: list[str] = (),
    task_options: dict[str, dict] | None = None,
    device: str = "auto",
    coreg_transform: str = "rigid",
    shrink_factor: int = 4,
    brain_bundle=None,
    omp_nthreads: int = 1,
    seed: int = 0,
    name: str,
) -> pe.Workflow:
    """All sessions of one participant, each processed on its own T1w reference."""
    workflow = pe.Workflow(name=name)
    for unit in sessions:
        workflow.add_nodes([
            init_session_wf(
                unit=unit,
                raw_root=raw_root,
                output_dir=output_dir,
                record=str(record_path(output_dir, unit, run_id)),
                tasks=tasks,
                task_options=task_options,
                device=device,
                coreg_transform=coreg_transform,
                shrink_factor=shrink_factor,
                brain_bundle=brain_bundle,
                omp_nthreads=omp_nthreads,
                seed=seed,
                name=f"ses_{unit.session}_wf" if unit.session else "anat_wf",
            )
        ])  # fmt: skip
    return workflow


def init_session_wf(
    *,
    unit: SessionInputs,
    raw_root: str,
    output_dir: str,
    record: str,
    tasks: list[str] = (),
    task_options: dict[str, dict] | None = None,
    device: str = "auto",
    coreg_transform: str = "rigid",
    shrink_factor: int = 4,
    brain_bundle=None,
    omp_nthreads: int = 1,
    seed: int = 0,
    name: str = "anat_wf",
) -> pe.Workflow:
    """Preprocess the T1w, align the other images to it, run the tasks, write the derivatives.
    ``brain_bundle``: the ``brainmask`` bundle that finds the brain (None: morphology)."""
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w", *unit.others]), name="inputnode")
    inputnode.inputs.t1w = unit.t1w
    for suffix, path in unit.others.items():
        setattr(inputnode.inputs, suffix, path)

    image_gb = float32_gigabytes(unit.t1w)
    anat_preproc_wf = init_anat_preproc_wf(
        omp_nthreads=omp_nthreads,
        shrink_factor=shrink_factor,
        image_gb=image_gb,
        brain_bundle=brain_bundle,
        device=device,
        seed=seed,
    )
    workflow.connect(inputnode, "t1w", anat_preproc_wf, "inputnode.t1w")
    providers = {
        "t1w_preproc": (anat_preproc_wf, "outputnode.t1w_preproc"),
        "head_mask": (anat_preproc_wf, "outputnode.head_mask"),
        "brain_mask": (anat_preproc_wf, "outputnode.brain_mask"),
        "T1w_raw": (inputnode, "t1w"),
    }
    outputs = _preproc_outputs(unit, shrink_factor, brain_bundle)
    for suffix, path in unit.others.items():
        coreg_wf = init_coreg_wf(
            modality="CT" if suffix == "CT" else "MR",
            transform=coreg_transform,
            omp_nthreads=omp_nthreads,
            seed=seed,
            shrink_factor=shrink_factor,
            image_gb=max(image_gb, float32_gigabytes(path)),
            name=f"coreg_{suffix.lower()}_wf",
        )
        workflow.connect([
            (inputnode, coreg_wf, [(suffix, "inputnode.moving")]),
            (anat_preproc_wf, coreg_wf, [
                ("outputnode.t1w_preproc", "inputnode.reference"),
                ("outputnode.head_mask", "inputnode.reference_mask"),
            ]),
        ])  # fmt: skip
        providers[f"{suffix}_registered"] = (coreg_wf, "outputnode.registered")
        providers[f"{suffix}_raw"] = (inputnode, suffix)
        providers[f"{suffix}_xfm"] = (coreg_wf, "outputnode.xfm")
        outputs.update(_coreg_outputs(unit, suffix, path, coreg_transform, seed))

    run_metadata = []
    for task_name in tasks:
        branch = registered_tasks()[task_name].build(
            unit=unit,
            # the output dataset too: a task may read a group-level result there
            options={"output_dir": output_dir, **(task_options or {}).get(task_name, {})},
            omp_nthreads=omp_nthreads,
            seed=seed,
            device=device,
            name=f"{task_name}_wf",
        )
        if branch is None:
            continue
        for field, provider in branch.inputs.items():
            node, output = providers[provider]
            workflow.connect(node, output, branch.workflow, f"inputnode.{field}")
        produced = set(branch.workflow.get_node("outputnode").outputs.copyable_trait_names())
        for field, spec in branch.outputs.items():
            providers[f"{task_name}.{field}"] = (branch.workflow, f"outputnode.{field}")
            outputs[f"{task_name}_{field}"] = spec
            if f"{field}_metadata" in produced:  # sidecar fields known after the run
                providers[f"{task_name}.{field}_metadata"] = (
                    branch.workflow,
                    f"outputnode.{field}_metadata",
                )
                run_metadata.append(f"{task_name}_{field}")

    derivatives_wf = init_derivatives_wf(
        outputs=outputs,
        entities=unit.entities,
        raw_root=raw_root,
        reference=unit.t1w,
        output_dir=output_dir,
        record=record,
        digests={path: file_sha256(path) for path in unit.all_inputs.values()},
        run_metadata=tuple(run_metadata),
    )
    for field in [*outputs, *(f"{field}_metadata" for field in run_metadata)]:
        node, output = providers[_provider_of(field)]
        workflow.connect(node, output, derivatives_wf, f"inputnode.{field}")
    return workflow


def _provider_of(output_field: str) -> str:
    """The provider key publishing a derivatives field (``denoise_out`` -> ``denoise.out``)."""
    task, _, field = output_field.partition("_")
    return f"{task}.{field}" if task in registered_tasks() else output_field


def _preproc_outputs(unit: SessionInputs, shrink_factor: int, brain_bundle) -> dict[str, dict]:
    return {
        "t1w_preproc": {
            "entities": {"desc": "preproc", "suffix": "T1w"},
            "sources": [unit.t1w],
            "metadata": {
                "Method": "N4BiasFieldCorrection (antspyx)",
                "Parameters": {"N4ShrinkFactor": shrink_factor},
            },
        },
        "head_mask": {
            "entities": {"desc": "head", "suffix": "mask"},
            "sources": [unit.t1w],
            "metadata": {"Type": "ROI", "Description": DESCRIPTIONS["head"]},
            "dtype": "uint8",
        },
        "brain_mask": {
            "entities": {"desc": "brain", "suffix": "mask"},
            "sources": [unit.t1w],
            "metadata": {"Type": "Brain", **_brain_mask_method(brain_bundle)},
            "dtype": "uint8",
        },
    }


def _brain_mask_method(bundle) -> dict:
    """The brain mask sidecar's ``Method`` (and ``Model``)."""
    from bids_synth.models.selection import model_fields

    if bundle is None:
        return {"Method": "morphology"}
    return {"Method": "model", "Model": model_fields(bundle)}


def _coreg_outputs(unit, suffix: str, path: str, transform: str, seed: int) -> dict[str, dict]:
    parameters = {"Transform": transform, "Metric": "MattesMI", "RandomSeed": seed}
    return {
        f"{suffix}_xfm": {
            "entities": {"from": suffix, "to": "T1w", "mode": "image", "suffix": "xfm"},
            "sources": [path, unit.t1w],
            "metadata": {"Method": "antsRegistration (antspyx)", "Parameters": parameters},
        },
        f"{suffix}_registered": {
            "entities": {"space": "T1w", "desc": "preproc", "suffix": suffix},
            "sources": [path, unit.t1w],
            "metadata": {"Parameters": parameters},
        },
    }


def float32_gigabytes(path: str) -> float:
    """Size of an image in memory as float32, from its header."""
    return float(np.prod(nib.load(path).shape[:3])) * 4 / 2**30


def record_path(output_dir: str, unit: SessionInputs, run_id: str) -> Path:
    """Where a participant/session's run record goes once its derivatives are committed."""
    return Path(output_dir) / f"sub-{unit.subject}" / "log" / run_id / f"{unit.name}_status.json"
