"""Super-resolution of anisotropic MR images (thickest / thinnest spacing > 1.5), as acquired.

Works on each raw MR image in its own grid (any slice axis, non-integer factors):
``--superres-method self`` (default) learns from the image's own in-plane detail degraded to the
through-plane sampling (SMORE-like, no training data); ``bspline`` is cubic B-spline resampling.
Outputs ``res-iso_desc-superres_<suffix>`` at the in-plane resolution over the same field of view.
Near-isotropic images are skipped with a log line. The slice thickness comes from the raw
sidecar's ``SliceThickness`` when there is one (thickness < spacing: a gap); otherwise ``self``
estimates it from the image. The profile's shape is not in BIDS: ``--superres-slice-profile``
gives it (box: e.g. thick slices averaged from a 3D acquisition; gaussian: close to a 2D
multi-slice excitation); unknown, ``self`` trains for both a box and a Gaussian, which costs
0.2–0.6 dB against the right shape (BENCHMARKS.md).
"""

from __future__ import annotations

import logging

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.argtypes import positive_int
from bids_synth.bids import read_sidecar
from bids_synth.interfaces.superres import METHODS, SuperResolution
from bids_synth.modalities import SESSION_MR_SUFFIXES
from bids_synth.synthesis.superresolution import SLICE_PROFILES, SMORE_DEFAULTS
from bids_synth.workflows.synthesis import Task, TaskBranch

LOG = logging.getLogger("bids_synth")


def add_arguments(group) -> None:
    group.add_argument(
        "--superres-method",
        dest="superres_method",
        choices=METHODS,
        help="self: SMORE-like self-supervised 2D network learnt from the image's own in-plane "
        "data; bspline: cubic B-spline resampling (default: self)",
    )
    group.add_argument(
        "--superres-slice-profile",
        dest="superres_slice_profile",
        choices=SLICE_PROFILES,
        help="self: the shape of the acquisition's slice profile, when known (default: unknown, "
        "trained for both)",
    )
    group.add_argument(
        "--superres-steps",
        dest="superres_steps",
        type=positive_int,
        metavar="N",
        help="training steps of the self-supervised network; the weights with the lowest loss on "
        f"held-out slices are kept (default: {SMORE_DEFAULTS['steps']})",
    )


def _slice_thickness(path: str) -> float | None:
    """``SliceThickness`` from the raw image's JSON sidecar (checked by the participant level)."""
    value = read_sidecar(path).get("SliceThickness")
    return float(value) if value else None


def build(*, unit, options, omp_nthreads, seed, device, name) -> TaskBranch | None:
    import nibabel as nib

    from bids_synth.nn.devices import uses_gpu
    from bids_synth.synthesis.superresolution import ANISOTROPY_THRESHOLD, anisotropy, voxel_sizes

    method = options.get("method") or "self"
    chosen = {}
    for suffix in (s for s in SESSION_MR_SUFFIXES if s in unit.all_inputs):
        path = unit.all_inputs[suffix]
        sizes = voxel_sizes(nib.load(path).affine)
        ratio = anisotropy(sizes)
        if ratio > ANISOTROPY_THRESHOLD:
            chosen[suffix] = (path, float(min(sizes)))
        else:
            LOG.info("superres: %s: %s skipped, near isotropic (thickest/thinnest %.2f ≤ %g)",
                     unit.name, suffix, ratio, ANISOTROPY_THRESHOLD)  # fmt: skip
    if not chosen:
        LOG.info("superres: %s skipped: no anisotropic MR image", unit.name)
        return None
    workflow = pe.Workflow(name=name)
    fields = [f"{suffix}_raw" for suffix in chosen]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=[f for s in chosen for f in (s.lower(), f"{s.lower()}_metadata")]
        ),
        name="outputnode",
    )
    outputs = {}
    for suffix, (path, spacing) in chosen.items():
        thickness = _slice_thickness(path)
        node = pe.Node(
            SuperResolution(
                method=method,
                seed=seed,
                use_gpu=method == "self" and uses_gpu(device),
                device=device,
                num_threads=omp_nthreads,
                **({"slice_thickness": thickness} if thickness else {}),
                **({"steps": options["steps"]} if options.get("steps") else {}),
                **(
                    {"slice_profile": options["slice_profile"]}
                    if options.get("slice_profile")
                    else {}
                ),
            ),
            name=f"superres_{suffix.lower()}",
        )
        workflow.connect([
            (inputnode, node, [(f"{suffix}_raw", "in_file")]),
            (node, outputnode, [("out_file", suffix.lower()),
                                ("metadata", f"{suffix.lower()}_metadata")]),
        ])  # fmt: skip
        outputs[suffix.lower()] = {
            "entities": {"res": "iso", "desc": "superres", "suffix": suffix},
            "sources": [path],
            "metadata": {
                "Method": method,
                # BIDS: the res entity's label is described in the sidecar
                "Resolution": {"iso": f"isotropic {spacing:g} mm (the input's in-plane spacing)"},
                **({"SliceThickness": thickness} if thickness else {}),
            },
        }
    LOG.info("superres: %s: %s with method %s", unit.name, ", ".join(chosen), method)
    return TaskBranch(workflow, {field: field for field in fields}, outputs)


TASK = Task(
    name="superres",
    help="super-resolve anisotropic (thick-slice) MR images to isotropic voxels: SMORE-like "
    "self-supervised or cubic B-spline",
    build=build,
    add_arguments=add_arguments,
    descriptions={"superres": "isotropic super-resolution of a thick-slice MR image"},
    reads_sidecars=True,
)
