"""``--tasks sct``: synthetic CT (HU), its body mask and the 511 keV μ-map on the T1w grid.

Methods: ``model`` (a ``sct`` bundle, T1w or T1w+T2w → CT), ``bulk`` (tissue classes → fixed HU,
:func:`bids_synth.synthesis.sct_methods.bulk_ct`) and ``atlas`` (MR/CT atlas pairs registered to
the participant, :func:`bids_synth.synthesis.sct_methods.atlas_ct`). The default is ``model`` when
the session's ``sct`` bundle passed the real-scan check (:func:`default_method`), otherwise ``bulk``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.argtypes import nonnegative_int, positive_float
from bids_synth.errors import ModelBundleError, UsageError
from bids_synth.interfaces.sct import METHODS, HeadModelAtlas, SyntheticCT
from bids_synth.models.selection import (
    bundle_inputs,
    choose_bundle,
    contract,
    evidence_default,
    find_task_bundle,
    model_fields,
    passed_real_scan_check,
    task_bundles,
)
from bids_synth.simulate.ct import CARNEY_2006
from bids_synth.synthesis.sct_methods import BONE_SHELL_MM, BULK_HU
from bids_synth.workflows.synthesis import Task, TaskBranch

LOG = logging.getLogger("bids_synth.sct")
FALLBACK_METHOD = "bulk"
ATLAS_SEEDS = (1,)
ATLAS_SPACING_MM = 2.0
KVP = 120


def add_arguments(group) -> None:
    group.add_argument(
        "--sct-method",
        choices=METHODS,
        help=(
            "model: a trained sct bundle; bulk: tissue classes → fixed HU; atlas: register MR/CT "
            "atlas pairs (default: model if the sct bundle the session would use passed the "
            f"real-scan check of its benchmark, else {FALLBACK_METHOD})"
        ),
    )
    group.add_argument("--sct-model", help="sct bundle: folder, id or id@version (method model)")
    group.add_argument(
        "--sct-atlas-t1w", help="atlas T1w (with --sct-atlas-ct; default: head-model atlases)"
    )
    group.add_argument("--sct-atlas-ct", help="atlas CT in HU on the atlas T1w's grid")
    group.add_argument(
        "--sct-atlas-seeds",
        nargs="+",
        type=nonnegative_int,
        help=(
            f"head-model seeds of the atlas pairs, fused by median (default: {' '.join(map(str, ATLAS_SEEDS))})"
        ),
    )
    group.add_argument(
        "--sct-atlas-spacing",
        type=positive_float,
        help=f"voxel size (mm) of head-model atlases (default: {ATLAS_SPACING_MM})",
    )
    group.add_argument(
        "--sct-kvp",
        type=int,
        choices=sorted(CARNEY_2006),
        help=f"kVp assumed by the μ-map conversion (default: {KVP})",
    )


def default_method(unit=None) -> str:
    """``model`` when the sct bundle of ``unit`` (:func:`_model_bundle`; with no session, the
    newest) passed the real-scan check of ``benchmarks/bench_sct.py --record`` (plausible brain
    and bone HU on real scans), else ``bulk``."""
    if unit is None:
        return evidence_default("sct", "T1w", "CT", FALLBACK_METHOD)
    try:
        bundle = _model_bundle(unit, None)
    except ModelBundleError:
        return FALLBACK_METHOD
    return "model" if passed_real_scan_check(bundle) else FALLBACK_METHOD


def _model_bundle(unit, ref: str | None):
    """The bundle named by ``ref``, else the one using the most of the session's contrasts
    (newest first), else the newest (a session lacking its inputs is then skipped)."""
    newest = find_task_bundle("sct", "T1w", "CT", ref)
    if ref:
        return newest
    available = ("T1w", *unit.others)
    return choose_bundle(task_bundles("sct", "T1w", "CT"), "CT", available) or newest


def build(*, unit, options, omp_nthreads, seed, device, name):
    from bids_synth.nn.devices import uses_gpu

    method = options.get("method") or default_method(unit)
    if bool(options.get("atlas_t1w")) != bool(options.get("atlas_ct")):
        raise UsageError("--sct-atlas-t1w and --sct-atlas-ct go together")
    unused = sorted(f"--sct-{key.replace('_', '-')}" for key in options if key.startswith("atlas"))
    if unused and method != "atlas":
        LOG.warning("sct: %s ignored: method %s, not atlas", ", ".join(unused), method)
    bundle = _model_bundle(unit, options.get("model")) if method == "model" else None
    channels = contract(bundle)[0] if bundle else ("T1w",)
    missing = [s for s in channels[1:] if s not in unit.others]
    if missing:
        LOG.warning(
            "sct: skipping %s: the bundle %s needs %s", unit.name, bundle.ref, ", ".join(missing)
        )
        return None
    kvp = int(options.get("kvp", KVP))

    workflow = pe.Workflow(name=name)
    fields = ["t1w", "head_mask", "brain_mask", *(["t2w"] if len(channels) > 1 else [])]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["ct", "mask", "mumap", "ct_metadata", "mumap_metadata"]),
        name="outputnode",
    )
    synth = pe.Node(
        SyntheticCT(
            method=method,
            kvp=kvp,
            seed=seed,
            num_threads=omp_nthreads,
            device=device,
            use_gpu=method == "model" and uses_gpu(device),
        ),
        name="synthetic_ct",
        n_procs=omp_nthreads,
    )
    parameters = {"KVp": kvp, "RandomSeed": seed}
    if bundle is not None:
        synth.inputs.trait_set(**bundle_inputs(bundle))
        parameters["Channels"] = list(channels)
    elif method == "bulk":
        parameters.update(BulkHU=BULK_HU, BoneShellMM=BONE_SHELL_MM)
    else:
        parameters.update(_connect_atlas(workflow, synth, options))
    workflow.connect([
        (inputnode, synth, [(f, f) for f in fields]),
        (synth, outputnode, [("out_ct", "ct"), ("out_mask", "mask"), ("out_mumap", "mumap"),
                             ("metadata", "ct_metadata"), ("metadata", "mumap_metadata")]),
    ])  # fmt: skip

    sources = [unit.t1w, *(unit.others[s] for s in channels[1:])]
    metadata = {"Method": method, "Parameters": parameters}
    if bundle is not None:
        metadata["Model"] = model_fields(bundle)
    inputs = {"t1w": "t1w_preproc", "head_mask": "head_mask", "brain_mask": "brain_mask"}
    if len(channels) > 1:
        inputs["t2w"] = f"{channels[1]}_registered"

    def spec(suffix, dtype, **entities):
        return {
            "entities": {"space": "T1w", "desc": "synthetic", **entities, "suffix": suffix},
            "sources": sources,
            "metadata": metadata,
            "dtype": dtype,
        }

    outputs = {
        "ct": spec("CT", "int16"),
        "mask": spec("mask", "uint8", label="body"),
        "mumap": spec("mumap", "float32"),
    }
    outputs["ct"]["metadata"] = {**metadata, "Units": "HU"}
    outputs["mumap"]["metadata"] = {
        **metadata,
        "Units": "cm-1",
        "PhotonEnergyKeV": 511,
        "Conversion": "bilinear, Carney et al. 2006",
    }
    return TaskBranch(workflow, inputs, outputs)


def _atlas_file(options, key: str) -> str:
    """The absolute path of a given atlas image (nodes run in folders of their own)."""
    path = Path(options[key]).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"--sct-{key.replace('_', '-')} {options[key]}: no such file")
    return str(path)


def _connect_atlas(workflow, synth, options) -> dict:
    """Feed the atlas pairs (given, or drawn from the head model) to ``synth``; their parameters."""
    if options.get("atlas_t1w"):
        t1w, ct = (_atlas_file(options, key) for key in ("atlas_t1w", "atlas_ct"))
        synth.inputs.atlas_t1w = [t1w]
        synth.inputs.atlas_ct = [ct]
        return {
            "Atlas": {"T1w": t1w, "CT": ct},
            "Registration": "antsRegistrationSyNQuick[s]",
        }
    seeds = [int(s) for s in options.get("atlas_seeds") or ATLAS_SEEDS]
    spacing = float(options.get("atlas_spacing", ATLAS_SPACING_MM))
    atlas = pe.Node(HeadModelAtlas(seeds=seeds, spacing=spacing), name="head_model_atlas")
    workflow.connect([(atlas, synth, [("atlas_t1w", "atlas_t1w"), ("atlas_ct", "atlas_ct")])])
    return {
        "Atlas": {
            "Source": "bids-synth head model (phantom labels)",
            "Seeds": seeds,
            "SpacingMM": spacing,
            "Fusion": "median",
        },
        "Registration": "antsRegistrationSyNQuick[s]",
    }


TASK = Task(
    name="sct",
    help="synthetic CT (HU), body mask and 511 keV μ-map from the T1w (model, bulk or atlas)",
    build=build,
    add_arguments=add_arguments,
    descriptions={"synthetic": "synthesized image (see the sidecar's Method and Model)"},
)
