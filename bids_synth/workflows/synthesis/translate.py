"""``--tasks translate``: any contrast to any contrast with paired bundles (``--translate T1w:T2w``).

Each pair ``SOURCE:TARGET`` runs the newest ``translate`` bundle whose contract reads SOURCE (plus
any further input suffixes it declares) and writes TARGET, on the T1w grid:
``space-T1w_desc-synthetic_<TARGET>``. A session lacking a source is skipped for that pair; a
requested pair without a bundle is an error (exit 7). Without ``--translate`` every pair with an
installed (or shipped) bundle runs, and none installed skips the task with a warning.
"""

from __future__ import annotations

import logging

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.errors import UsageError
from bids_synth.interfaces.bundle import BundleMRPrediction
from bids_synth.models.selection import (
    bundle_inputs,
    contract,
    find_task_bundle,
    installed_pairs,
    model_fields,
    named_task_bundle,
)
from bids_synth.workflows.synthesis import Task, TaskBranch

LOG = logging.getLogger("bids_synth.translate")


def add_arguments(group) -> None:
    group.add_argument(
        "--translate",
        dest="translate_pairs",
        nargs="+",
        metavar="SOURCE:TARGET",
        help="contrast pairs to synthesize (default: every pair with an installed bundle, or "
        "those of --translate-model)",
    )
    group.add_argument(
        "--translate-model",
        dest="translate_model",
        nargs="+",
        metavar="BUNDLE",
        help="bundles to use instead of the newest for their pair: folder, id, id@version, each "
        "optionally #digest (default: the newest bundle of each pair)",
    )


def parse_pairs(values) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        source, sep, target = str(value).partition(":")
        if not sep or not source or not target or source == target:
            raise UsageError(f"--translate {value!r}: expected SOURCE:TARGET, e.g. T1w:T2w")
        pairs.append((source, target))
    return pairs


def _named_bundles(refs) -> dict:
    """(source, target) → the bundle of each ``--translate-model`` reference."""
    named = {}
    for ref in refs:
        bundle = named_task_bundle("translate", ref)
        suffixes, target = contract(bundle)
        if (suffixes[0], target) in named:
            raise UsageError(f"--translate-model: two bundles for {suffixes[0]}:{target}")
        named[(suffixes[0], target)] = bundle
    return named


def _provider(suffix: str, unit) -> str | None:
    if suffix == "T1w":
        return "t1w_preproc"
    return f"{suffix}_registered" if suffix in unit.others else None


def build(*, unit, options, omp_nthreads, seed, device, name):
    from bids_synth.nn.devices import uses_gpu

    named = _named_bundles(options.get("model") or [])
    if options.get("pairs"):
        pairs = parse_pairs(options["pairs"])
        if unused := [f"{s}:{t}" for s, t in named if (s, t) not in pairs]:
            raise UsageError(f"--translate-model serves {', '.join(unused)}: not among --translate")
        # exit 7 when a pair has no bundle
        bundles = {pair: named.get(pair) or find_task_bundle("translate", *pair) for pair in pairs}
    elif named:
        bundles = named
    else:
        bundles = installed_pairs("translate")
        if not bundles:
            LOG.warning(
                "translate: skipping %s: no translate bundle installed and no --translate "
                "pair given (train one with `bids-synth train --task translate`)",
                unit.name,
            )
            return None
    workflow = pe.Workflow(name=name)
    inputs, outputs, fields = {"head_mask": "head_mask", "brain_mask": "brain_mask"}, {}, []
    branches = []
    for (source, target), bundle in bundles.items():
        suffixes = contract(bundle)[0] or (source,)
        missing = [s for s in suffixes if _provider(s, unit) is None]
        if missing:
            LOG.warning(
                "translate %s→%s: skipping %s: no %s image",
                source,
                target,
                unit.name,
                ", ".join(missing),
            )
            continue
        field = f"{source.lower()}_to_{target.lower()}"
        for suffix in suffixes:
            inputs[suffix.lower()] = _provider(suffix, unit)
        branches.append((field, suffixes, bundle))
        fields += [field, f"{field}_metadata"]
        outputs[field] = {
            "entities": {"space": "T1w", "desc": "synthetic", "suffix": target},
            "sources": [unit.t1w if s == "T1w" else unit.others[s] for s in suffixes],
            "metadata": {
                "Method": "model",
                "Model": model_fields(bundle),
                "Parameters": {"Source": list(suffixes), "Target": target, "RandomSeed": seed},
            },
            "dtype": "float32",
        }
    if not branches:
        return None
    inputnode = pe.Node(niu.IdentityInterface(fields=list(inputs)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=fields), name="outputnode")
    for field, suffixes, bundle in branches:
        node = pe.Node(
            BundleMRPrediction(
                **bundle_inputs(bundle),
                seed=seed,
                num_threads=omp_nthreads,
                device=device,
                use_gpu=uses_gpu(device),
            ),
            name=f"translate_{field}",
            n_procs=omp_nthreads,
        )
        merge = pe.Node(
            niu.Merge(len(suffixes)), name=f"sources_{field}", run_without_submitting=True
        )
        for index, suffix in enumerate(suffixes, start=1):
            workflow.connect(inputnode, suffix.lower(), merge, f"in{index}")
        workflow.connect([
            (merge, node, [("out", "sources")]),
            (inputnode, node, [("head_mask", "head_mask"), ("brain_mask", "brain_mask")]),
            (node, outputnode, [("out_file", field), ("metadata", f"{field}_metadata")]),
        ])  # fmt: skip
        LOG.info("translate: %s: %s with %s", unit.name, field.replace("_to_", "→"), bundle.ref)
    return TaskBranch(workflow, inputs, outputs)


TASK = Task(
    name="translate",
    help="synthesize other contrasts (--translate SOURCE:TARGET ...) with paired bundles",
    build=build,
    add_arguments=add_arguments,
    descriptions={"synthetic": "synthesized image (see the sidecar's Method and Model)"},
)
