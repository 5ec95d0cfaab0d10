"""Harmonization: standardise MR intensities across scanners and sites within the brain mask.

``nyul`` (piecewise-linear landmarks) needs a cohort reference: the group level
(``bids-synth BIDS OUT group --tasks harmonize``) learns one per contrast from every participant's
preprocessed images, and a second participant pass applies it (``--harmonize-reference``, or, with
``--harmonize-method nyul``, found in ``OUT/group/harmonize``; the default method never changes on
a rerun). ``whitestripe`` and ``zscore`` need no reference; without one the default is
``whitestripe``, or ``learned`` once its bundle has passed its real-scan check
(:func:`default_method`).
``learned`` runs a harmonization bundle (trained on simulated traveling subjects) that maps the
session's images to its target site (``--harmonize-target``), on the bundle's fixed output scale
whatever the input's scale; a bundle reading T2w/FLAIR too is used when the session has them. A
bundle that carries a Nyul reference of its own outputs at its target site
(:mod:`bids_synth.training.output_reference`) has its outputs standardised by it in the head
mask: the network undoes the contrast, Nyul what is left of the scale.
Outputs ``desc-harmonized_<suffix>`` on the T1w grid.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.errors import UsageError
from bids_synth.modalities import SESSION_MR_SUFFIXES
from bids_synth.synthesis.harmonization import WHITESTRIPE_WIDTH
from bids_synth.synthesis.harmonization_cohort import MASK
from bids_synth.workflows.synthesis import Task, TaskBranch

LOG = logging.getLogger("bids_synth")

METHODS = ("nyul", "whitestripe", "zscore", "learned")
FALLBACK_METHOD = "whitestripe"  #: the default without a reference until a bundle earns it


def add_arguments(group) -> None:
    group.add_argument(
        "--harmonize-method",
        dest="harmonize_method",
        choices=METHODS,
        help="nyul: map each contrast's histogram landmarks onto the cohort reference (run the "
        "group level first); whitestripe: normal-appearing white matter at 0, its sd as unit; "
        "zscore: brain mean 0, sd 1; learned: a bundle trained on simulated traveling subjects "
        "maps the images to its target site, then the bundle's own Nyul reference standardises "
        "them in the head when it carries one (default: learned with --harmonize-target or "
        "--harmonize-model, else nyul with --harmonize-reference, else learned if its bundle "
        "passed the real-scan check, else whitestripe; nyul without a reference uses "
        "OUT/group/harmonize)",
    )
    group.add_argument(
        "--harmonize-target",
        dest="harmonize_target",
        metavar="SITE",
        help="learned: the target site of the bundle to use (e.g. site0 or 0; default: the one "
        "target installed)",
    )
    group.add_argument(
        "--harmonize-model",
        dest="harmonize_model",
        metavar="BUNDLE",
        help="learned: a harmonization bundle folder, id or id@version (default: chosen by target "
        "and the session's contrasts)",
    )
    group.add_argument(
        "--harmonize-reference",
        dest="harmonize_reference",
        metavar="PATH",
        help="Nyul reference: a desc-nyul_<suffix>_reference.json, or the folder holding them "
        "(OUT/group/harmonize after the group level)",
    )


def build(*, unit, options, omp_nthreads, seed, device, name) -> TaskBranch | None:
    from bids_synth.interfaces.harmonize import HarmonizeIntensity
    from bids_synth.synthesis.harmonization_reference import find_references

    method = options.get("method")
    if method is None and (options.get("target") or options.get("model")):
        method = "learned"
    reference = options.get("reference")
    if reference is None and method == "nyul":  # explicit: a rerun never switches method
        reference = _group_reference(options.get("output_dir"))
    suffixes = [s for s in SESSION_MR_SUFFIXES if s == "T1w" or s in unit.others]
    method = method or ("nyul" if reference else default_method(suffixes))
    if method == "learned":
        return _build_learned(unit, suffixes, options, omp_nthreads, seed, device, name)
    references = {}
    if method == "nyul":
        if not reference:
            raise UsageError(
                "harmonize: --harmonize-method nyul needs a cohort reference: run "
                "`bids-synth BIDS OUT group --tasks harmonize` first, then the participant level "
                "with --harmonize-reference OUT/group/harmonize"
            )
        references = find_references(reference)
        missing = [s for s in suffixes if s not in references]
        if missing:
            LOG.info("harmonize: %s: no Nyul reference for %s, not harmonized",
                     unit.name, ", ".join(missing))  # fmt: skip
        suffixes = [s for s in suffixes if s in references]
        if not suffixes:
            LOG.warning("harmonize: %s skipped: no Nyul reference for its contrasts", unit.name)
            return None

    workflow = pe.Workflow(name=name)
    fields = ["brain_mask", *(_input_field(s) for s in suffixes)]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=[s.lower() for s in suffixes]), name="outputnode"
    )
    outputs = {}
    for suffix in suffixes:
        node = pe.Node(
            HarmonizeIntensity(method=method, suffix=suffix),
            name=f"harmonize_{suffix.lower()}",
        )
        if suffix in references:
            node.inputs.reference = str(Path(references[suffix]).resolve())
        workflow.connect([
            (inputnode, node, [(_input_field(suffix), "in_file"), ("brain_mask", "mask_file")]),
            (node, outputnode, [("out_file", suffix.lower())]),
        ])  # fmt: skip
        outputs[suffix.lower()] = {
            "entities": {
                **({} if suffix == "T1w" else {"space": "T1w"}),
                "desc": "harmonized",
                "suffix": suffix,
            },
            "sources": [unit.t1w] if suffix == "T1w" else [unit.others[suffix], unit.t1w],
            "metadata": _metadata(method, suffix, references.get(suffix)),
        }
    LOG.info("harmonize: %s: %s with method %s", unit.name, ", ".join(suffixes), method)
    # the inputnode fields are named after the session providers that feed them
    return TaskBranch(workflow, {field: field for field in fields}, outputs)


def default_method(suffixes) -> str:
    """Without a Nyul reference: ``learned`` when the bundle that would harmonize the session's
    T1w passed the real-scan check of ``benchmarks/harmonize_real.py --record`` (real scans of
    different scanners no further apart than under WhiteStripe, grey/white separability kept),
    else ``whitestripe``."""
    from bids_synth.errors import ModelBundleError
    from bids_synth.models.selection import (
        choose_bundle,
        harmonization_bundles,
        passed_real_scan_check,
    )

    try:
        bundle = choose_bundle(harmonization_bundles(), "T1w", suffixes)
    except (ModelBundleError, UsageError):  # none installed, or several targets to choose from
        return FALLBACK_METHOD
    return "learned" if bundle and passed_real_scan_check(bundle) else FALLBACK_METHOD


def _group_reference(output_dir) -> Path | None:
    """``OUT/group/harmonize`` when the group level wrote Nyul references there."""
    from bids_synth.synthesis.harmonization_reference import REFERENCE_FOLDER, REFERENCE_PATTERN

    if not output_dir:
        return None
    folder = Path(output_dir) / REFERENCE_FOLDER
    if not any(folder.glob(REFERENCE_PATTERN.format(suffix="*"))):
        return None
    LOG.info("harmonize: using the group-level Nyul references in %s", folder)
    return folder


def _build_learned(unit, suffixes, options, omp_nthreads, seed, device, name):
    """One :class:`BundleMRPrediction` node per contrast that a bundle for the target writes."""
    from bids_synth.interfaces.bundle import BundleMRPrediction
    from bids_synth.interfaces.harmonize import HarmonizeIntensity
    from bids_synth.models.selection import (
        bundle_inputs,
        choose_bundle,
        contract,
        harmonization_bundles,
        output_reference,
    )
    from bids_synth.nn.devices import uses_gpu

    bundles = harmonization_bundles(options.get("target"), options.get("model"))
    chosen = {s: choose_bundle(bundles, s, suffixes) for s in suffixes}
    missing = [s for s, b in chosen.items() if b is None]
    if missing:
        LOG.info("harmonize: %s: no learned bundle for %s, not harmonized",
                 unit.name, ", ".join(missing))  # fmt: skip
    chosen = {s: b for s, b in chosen.items() if b is not None}
    if not chosen:
        LOG.warning("harmonize: %s skipped: no learned bundle for its contrasts", unit.name)
        return None
    for bundle in {b.path: b for b in chosen.values()}.values():
        bundle.verify()
    needed = sorted(
        {c for b in chosen.values() for c in contract(b)[0]}, key=SESSION_MR_SUFFIXES.index
    )
    references = {s: output_reference(b) for s, b in chosen.items()}
    fields = ["head_mask", "brain_mask", *(_input_field(c) for c in needed)]
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=[f for s in chosen for f in (s.lower(), f"{s.lower()}_metadata")]
        ),
        name="outputnode",
    )
    outputs = {}
    for suffix, bundle in chosen.items():
        inputs = contract(bundle)[0]
        node = pe.Node(
            BundleMRPrediction(**bundle_inputs(bundle), seed=seed, num_threads=omp_nthreads,
                               device=device, use_gpu=uses_gpu(device)),
            name=f"harmonize_{suffix.lower()}",
            n_procs=omp_nthreads,
        )  # fmt: skip
        merge = pe.Node(niu.Merge(len(inputs)), name=f"sources_{suffix.lower()}",
                        run_without_submitting=True)  # fmt: skip
        for index, contrast in enumerate(inputs, start=1):
            workflow.connect(inputnode, _input_field(contrast), merge, f"in{index}")
        workflow.connect([
            (merge, node, [("out", "sources")]),
            (inputnode, node, [("head_mask", "head_mask"), ("brain_mask", "brain_mask")]),
            (node, outputnode, [("metadata", f"{suffix.lower()}_metadata")]),
        ])  # fmt: skip
        if references[suffix]:
            standardise = pe.Node(
                HarmonizeIntensity(method="nyul", suffix=suffix, reference=str(references[suffix])),
                name=f"standardise_{suffix.lower()}",
            )
            workflow.connect([
                (node, standardise, [("out_file", "in_file")]),
                (inputnode, standardise, [("head_mask", "mask_file")]),
                (standardise, outputnode, [("out_file", suffix.lower())]),
            ])  # fmt: skip
        else:
            workflow.connect(node, "out_file", outputnode, suffix.lower())
        outputs[suffix.lower()] = {
            "entities": {
                **({} if suffix == "T1w" else {"space": "T1w"}),
                "desc": "harmonized",
                "suffix": suffix,
            },
            "sources": [unit.t1w if c == "T1w" else unit.others[c] for c in inputs],
            "metadata": _learned_metadata(bundle, references[suffix]),
            "dtype": "float32",
        }
        LOG.info("harmonize: %s: %s with %s (%s → %s)", unit.name, suffix, bundle.ref,
                 "+".join(inputs), bundle.meta["harmonization"]["target"])  # fmt: skip
    return TaskBranch(workflow, {field: field for field in fields}, outputs)


def _learned_metadata(bundle, reference: Path | None) -> dict:
    """Sidecar of a learned harmonization: method, target site, units, model identity and, when
    the bundle's Nyul reference standardised its output, that reference."""
    from bids_synth.models.selection import contract, model_fields

    target = bundle.meta["harmonization"]
    style = target.get("target_style", {})
    suffix = bundle.meta["output"]["suffix"]
    meta = {
        "Method": "learned",
        "Target": target["target"],
        "TargetStyle": {
            "FieldStrength": style.get("field_strength_T"),
            "Protocol": style.get("mr", {}).get(suffix),
        },  # fmt: skip
        "Units": bundle.meta["output"].get("units", ""),
        "Inputs": list(contract(bundle)[0]),
        "Mask": "head",
        "Model": model_fields(bundle),
    }
    if reference:
        from bids_synth.synthesis.harmonization_reference import BUNDLE_REFERENCE_MASK

        nyul = _metadata("nyul", suffix, reference)
        meta.update({
            "Units": f"a.u. ({nyul['Target']}, the bundle's outputs at {target['target']})",
            "Standardisation": {"Method": "nyul", "Mask": BUNDLE_REFERENCE_MASK,
                                "Reference": nyul["Reference"], "Landmarks": nyul["Landmarks"]},
        })  # fmt: skip
    return meta


def _input_field(suffix: str) -> str:
    return "t1w_preproc" if suffix == "T1w" else f"{suffix}_registered"


def _metadata(method: str, suffix: str, reference: Path | None) -> dict:
    """Sidecar: method, target scale and, for Nyul, the reference file, its sha256 and landmarks."""
    from bids_synth.synthesis.harmonization_reference import read_reference, sha256

    meta = {"Method": method, "Mask": MASK}
    if method == "nyul":
        model, _ = read_reference(reference)
        meta.update({
            "Reference": {"Path": str(Path(reference).resolve()), "Sha256": sha256(reference)},
            "Target": f"Nyul standard scale: percentile {model.percentiles[0]:g} → "
            f"{model.standard_range[0]:g}, {model.percentiles[-1]:g} → {model.standard_range[1]:g}",
            "Landmarks": {"Percentiles": list(model.percentiles),
                          "Standard": list(model.landmarks)},
        })  # fmt: skip
    elif method == "whitestripe":
        meta.update({
            "Target": "normal-appearing white matter stripe: mean 0, sd 1",
            "Parameters": {"Width": WHITESTRIPE_WIDTH,
                           "Mode": "highest-intensity peak" if suffix == "T1w" else "tallest peak"},
        })  # fmt: skip
    else:
        meta["Target"] = "brain mask: mean 0, sd 1"
    return meta


def group(config) -> None:
    """Learn a Nyul reference per MR contrast from every participant's preprocessed images."""
    from bids_synth.synthesis.harmonization_cohort import learn_cohort_references

    learn_cohort_references(config.execution.output_dir, config.execution.participant_label)


TASK = Task(
    name="harmonize",
    help="standardise MR intensities across scanners/sites (Nyul with a group-level reference, "
    "WhiteStripe, z-score, or a learned bundle mapping to a target site)",
    build=build,
    add_arguments=add_arguments,
    descriptions={"harmonized": "intensities standardised across scanners and sites"},
    group=group,
)
