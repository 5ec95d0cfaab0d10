"""Denoising of every MR image of a session: the T1w preproc and the registered T2w/FLAIR/PD.

``--denoise-method model`` applies the newest denoise bundle (shipped, or trained with
``bids-synth train --task denoise`` and installed with ``bids-synth models install``), its
normalisation gains first tuned on each image when the bundle declares it
(``--denoise-adapt-steps``), ``self`` trains a small blind-spot (noise2self) U-Net on each image
itself, ``nlm`` is antspyx non-local means with a Rician noise model. The default is ``model``
once the newest bundle has passed the real-scan check of the denoising benchmark, else ``nlm``
(:func:`default_method`). Outputs ``desc-denoised_<suffix>`` (``space-T1w`` for the registered
contrasts); the sidecar records the noise σ before and after."""

from __future__ import annotations

import logging

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.argtypes import nonnegative_int, positive_int
from bids_synth.interfaces.denoise import METHODS, Denoise
from bids_synth.modalities import SESSION_MR_SUFFIXES
from bids_synth.models.selection import bundle_inputs, evidence_default, find_task_bundle
from bids_synth.workflows.synthesis import Task, TaskBranch

LOG = logging.getLogger("bids_synth")

FALLBACK_METHOD = "nlm"


def default_method() -> str:
    """``model`` when the newest denoise bundle passed the real-scan check of
    ``benchmarks/bench_denoise.py --record`` (beats NLM on the real Colin27 and never makes a
    low-noise image worse), else ``nlm``."""
    return evidence_default("denoise", "T1w", "T1w", FALLBACK_METHOD)


def add_arguments(group) -> None:
    group.add_argument(
        "--denoise-method",
        dest="denoise_method",
        choices=METHODS,
        help="model: the newest trained denoise bundle; self: per-image noise2self (no training "
        "data); nlm: antspyx non-local means, Rician (default: model once the newest bundle has "
        "passed its real-scan check, else nlm)",
    )
    group.add_argument(
        "--denoise-model",
        dest="denoise_model",
        metavar="BUNDLE",
        help="bundle for --denoise-method model: folder, id or id@version (default: the newest "
        "denoise bundle)",
    )
    group.add_argument(
        "--denoise-self-steps",
        dest="denoise_self_steps",
        type=positive_int,
        metavar="N",
        help="training steps of the per-image noise2self network (default: 300)",
    )
    group.add_argument(
        "--denoise-adapt-steps",
        dest="denoise_adapt_steps",
        type=nonnegative_int,
        metavar="N",
        help="steps that tune the model's normalisation gains on each image before it "
        "denoises it (SURE: no clean data; method model, 2.5D bundles; 0: the model as "
        "trained; default: the bundle's, 100 for the shipped one)",
    )


def build(*, unit, options, omp_nthreads, seed, device, name) -> TaskBranch | None:
    from bids_synth.nn.devices import uses_gpu

    method = options.get("method") or default_method()
    bundle = None
    if method == "model":  # one-line error if absent
        bundle = find_task_bundle("denoise", "T1w", "T1w", options.get("model"))
        bundle.verify()
    suffixes = [s for s in SESSION_MR_SUFFIXES if s == "T1w" or s in unit.others]
    workflow = pe.Workflow(name=name)
    fields = ["head_mask", *(_input_field(s) for s in suffixes)]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=[f for s in suffixes for f in (s.lower(), f"{s.lower()}_metadata")]
        ),
        name="outputnode",
    )
    metadata = {"Method": method, **_parameters(method, bundle, options)}
    outputs = {}
    for suffix in suffixes:
        node = pe.Node(
            Denoise(
                method=method,
                seed=seed,
                use_gpu=uses_gpu(device),
                device=device,
                num_threads=omp_nthreads,
                **(bundle_inputs(bundle) if bundle is not None else {}),
                **({"self_steps": options["self_steps"]} if options.get("self_steps") else {}),
                **(
                    {"adapt_steps": options["adapt_steps"]}
                    if options.get("adapt_steps") is not None
                    else {}
                ),
            ),
            name=f"denoise_{suffix.lower()}",
        )
        workflow.connect([
            (inputnode, node, [(_input_field(suffix), "in_file"), ("head_mask", "head_mask")]),
            (node, outputnode, [("out_file", suffix.lower()),
                                ("metadata", f"{suffix.lower()}_metadata")]),
        ])  # fmt: skip
        outputs[suffix.lower()] = {
            "entities": {
                **({} if suffix == "T1w" else {"space": "T1w"}),
                "desc": "denoised",
                "suffix": suffix,
            },
            "sources": [unit.all_inputs[suffix], unit.t1w],
            "metadata": metadata,
        }
    LOG.info("denoise: %s: %s with method %s", unit.name, ", ".join(suffixes), method)
    return TaskBranch(workflow, {field: field for field in fields}, outputs)


def _input_field(suffix: str) -> str:
    return "t1w_preproc" if suffix == "T1w" else f"{suffix}_registered"


def _parameters(method: str, bundle, options: dict) -> dict:
    """Sidecar fields known before the run: model identity or the method's settings."""
    from bids_synth.models.selection import model_fields
    from bids_synth.synthesis.denoising import NOISE_ESTIMATOR, SELF_DEFAULTS

    fields = {"NoiseEstimator": NOISE_ESTIMATOR, "Mask": "head"}
    if method == "model":
        fields["Model"] = model_fields(bundle)
    elif method == "self":
        fields["Parameters"] = {
            "network": "3D U-Net, noise2self blind-spot training on the image itself",
            **SELF_DEFAULTS,
            **({"steps": options["self_steps"]} if options.get("self_steps") else {}),
        }
    else:
        fields["Parameters"] = {"implementation": "antspyx denoise_image", "noise_model": "Rician"}
    return fields


TASK = Task(
    name="denoise",
    help="denoise every MR image of a session (a trained 2.5D residual U-Net, per-image "
    "noise2self, or non-local means) and record the noise level before and after",
    build=build,
    add_arguments=add_arguments,
    descriptions={"denoised": "MR image denoised (method and noise σ before/after in the sidecar)"},
)
