"""Anatomical preprocessing: masks and N4 of the T1w reference, alignment of the other images."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_synth.interfaces.ants import BrainMask, HeadMask, N4BiasCorrection, RegisterToReference

# peak memory of a step as a multiple of one float32 copy of the image (measured on 1 mm heads)
MEMORY_FACTORS = {"mask": 12, "n4": 30, "register": 40}


def _mem_gb(image_gb: float, step: str) -> float:
    return max(0.2, image_gb * MEMORY_FACTORS[step])


def brain_mask_bundle(method: str):
    """The ``brainmask`` bundle that ``--brain-mask-method`` asks for (``model``; ``auto`` once
    the newest one has passed the real-scan check of ``benchmarks/bench_brainmask.py --record``),
    verified; None for the morphological mask."""
    from bids_synth.errors import ModelBundleError
    from bids_synth.models.selection import evidence_default, find_task_bundle

    if method == "auto":
        method = evidence_default("brainmask", "T1w", "mask", "morphology")
    if method != "model":
        return None
    try:
        bundle = find_task_bundle("brainmask", "T1w", "mask")
    except ModelBundleError:
        raise ModelBundleError(
            "no brainmask model bundle: train one with `python -m bids_synth.training "
            "brainmask-slab --workdir DIR`, export it (`--export BUNDLE`) and install it with "
            "`bids-synth models install BUNDLE`, or use --brain-mask-method morphology"
        ) from None
    bundle.verify()
    return bundle


def init_anat_preproc_wf(
    *,
    omp_nthreads: int,
    shrink_factor: int = 4,
    image_gb: float = 0.03,
    brain_bundle=None,
    device: str = "cpu",
    seed: int = 0,
    name: str = "anat_preproc_wf",
) -> pe.Workflow:
    """T1w reference → head mask, N4 bias correction inside it, brain mask (by morphology, or by
    ``brain_bundle``, a ``brainmask`` bundle run on ``device``).

    ``image_gb`` (size of the image in float32) sets the nodes' memory requests.
    Inputs: ``t1w``. Outputs: ``t1w_preproc``, ``head_mask``, ``brain_mask``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w"]), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["t1w_preproc", "head_mask", "brain_mask"]), name="outputnode"
    )
    head_mask = pe.Node(HeadMask(modality="MR"), name="head_mask", mem_gb=_mem_gb(image_gb, "mask"))
    n4 = pe.Node(
        N4BiasCorrection(shrink_factor=shrink_factor, num_threads=omp_nthreads),
        name="n4",
        n_procs=omp_nthreads,
        mem_gb=_mem_gb(image_gb, "n4"),
    )
    learned = (
        {}
        if brain_bundle is None
        else _learned_mask_inputs(brain_bundle, device=device, seed=seed, omp_nthreads=omp_nthreads)
    )
    brain_mask = pe.Node(
        BrainMask(**learned),
        name="brain_mask",
        n_procs=omp_nthreads if learned else 1,
        mem_gb=_mem_gb(image_gb, "mask"),
    )
    workflow.connect([
        (inputnode, head_mask, [("t1w", "in_file")]),
        (inputnode, n4, [("t1w", "in_file")]),
        (head_mask, n4, [("out_mask", "mask_file")]),
        (n4, brain_mask, [("out_file", "in_file")]),
        (head_mask, brain_mask, [("out_mask", "head_mask")]),
        (n4, outputnode, [("out_file", "t1w_preproc")]),
        (head_mask, outputnode, [("out_mask", "head_mask")]),
        (brain_mask, outputnode, [("out_mask", "brain_mask")]),
    ])  # fmt: skip
    return workflow


def _learned_mask_inputs(bundle, *, device: str, seed: int, omp_nthreads: int) -> dict:
    from bids_synth.models.selection import bundle_inputs
    from bids_synth.nn.devices import uses_gpu

    return {
        "method": "model",
        "device": device,
        "use_gpu": uses_gpu(device),
        "seed": seed,
        "num_threads": omp_nthreads,
        **bundle_inputs(bundle),
    }


def init_coreg_wf(
    *,
    modality: str,
    transform: str,
    omp_nthreads: int,
    seed: int,
    shrink_factor: int = 4,
    image_gb: float = 0.03,
    name: str,
) -> pe.Workflow:
    """Align one image (T2w, FLAIR, PD or CT) to the preprocessed T1w.

    MR images are bias-corrected first (N4 inside their own head mask); CT is registered as it is.
    Inputs: ``moving``, ``reference``, ``reference_mask``. Outputs: ``xfm`` (moving → T1w) and
    ``registered`` (the image resampled onto the T1w grid).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=["moving", "reference", "reference_mask"]), name="inputnode"
    )
    outputnode = pe.Node(niu.IdentityInterface(fields=["xfm", "registered"]), name="outputnode")
    is_ct = modality == "CT"
    register = pe.Node(
        RegisterToReference(
            transform=transform,
            modality="CT" if is_ct else "MR",
            random_seed=seed,
        ),
        name="register",
        n_procs=1,  # single-threaded for bitwise-reproducible transforms (see RegisterToReference)
        mem_gb=_mem_gb(image_gb, "register"),
    )
    workflow.connect([
        (inputnode, register, [("reference", "fixed"), ("reference_mask", "fixed_mask")]),
        (register, outputnode, [("out_matrix", "xfm"), ("out_file", "registered")]),
    ])  # fmt: skip
    if is_ct:
        workflow.connect(inputnode, "moving", register, "moving")
        return workflow
    head_mask = pe.Node(HeadMask(modality="MR"), name="head_mask", mem_gb=_mem_gb(image_gb, "mask"))
    n4 = pe.Node(
        N4BiasCorrection(shrink_factor=shrink_factor, num_threads=omp_nthreads),
        name="n4",
        n_procs=omp_nthreads,
        mem_gb=_mem_gb(image_gb, "n4"),
    )
    workflow.connect([
        (inputnode, head_mask, [("moving", "in_file")]),
        (inputnode, n4, [("moving", "in_file")]),
        (head_mask, n4, [("out_mask", "mask_file")]),
        (n4, register, [("out_file", "moving")]),
    ])  # fmt: skip
    return workflow
