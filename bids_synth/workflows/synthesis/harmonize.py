"""Harmonization: standardise MR intensities across scanners and sites within the brain mask.

``nyul`` (piecewise-linear landmarks) needs a cohort reference: the group level
(``bids-synth BIDS OUT group --tasks harmonize``) learns one per contrast from every participant's
preprocessed images, and a second participant pass applies it (``--harmonize-reference``).
``whitestripe`` and ``zscore`` need no reference. Outputs ``desc-harmonized_<suffix>`` on the T1w grid.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.errors import UsageError
from bids_synth.synthesis.harmonization import WHITESTRIPE_WIDTH
from bids_synth.synthesis.harmonization_cohort import MASK, MR_SUFFIXES
from bids_synth.workflows.synthesis import Task, TaskBranch

LOG = logging.getLogger("bids_synth")

METHODS = ("nyul", "whitestripe", "zscore")


def add_arguments(group) -> None:
    group.add_argument(
        "--harmonize-method",
        dest="harmonize_method",
        choices=METHODS,
        help="nyul: map each contrast's histogram landmarks onto the cohort reference (run the "
        "group level first); whitestripe: normal-appearing white matter at 0, its sd as unit; "
        "zscore: brain mean 0, sd 1 (default: nyul with --harmonize-reference, else whitestripe)",
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

    method = options.get("method") or ("nyul" if options.get("reference") else "whitestripe")
    suffixes = [s for s in MR_SUFFIXES if s == "T1w" or s in unit.others]
    references = {}
    if method == "nyul":
        if not options.get("reference"):
            raise UsageError(
                "harmonize: --harmonize-method nyul needs a cohort reference: run "
                "`bids-synth BIDS OUT group --tasks harmonize` first, then the participant level "
                "with --harmonize-reference OUT/group/harmonize"
            )
        references = find_references(options["reference"])
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
    help="standardise MR intensities across scanners/sites within the brain mask "
    "(Nyul with a group-level reference, WhiteStripe, z-score)",
    build=build,
    add_arguments=add_arguments,
    descriptions={"harmonized": "intensities standardised across scanners and sites"},
    group=group,
)
