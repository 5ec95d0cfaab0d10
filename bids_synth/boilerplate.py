"""The methods boilerplate of a run: a citable description of the steps in its workflow.

As fMRIPrep and MRIQC do, each participant-level run writes ``OUTPUT_DIR/logs/CITATION.md`` (text
with ``[@key]`` citations, ready for pandoc) and ``OUTPUT_DIR/logs/CITATION.bib``; a copy of the
text goes beside each participant's run settings, where the subject report finds it. The text is
built from the workflow itself: one sentence per kind of derivative its sinks publish (method,
parameters, the model bundles its nodes load, with id, version and sha256), so it names only the
steps that run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from importlib import resources
from pathlib import Path

from bids_synth import __version__
from bids_synth.derivatives import CODE_URL
from bids_synth.fileio import atomic_write_text
from bids_synth.modalities import MR_SUFFIXES

#: what each synthesis step did to its images, with its citations, by (kind, Method)
TASK_STEPS = {
    ("denoised", "nlm"): "denoised with adaptive non-local means [@manjon2010]",
    ("denoised", "self"): "denoised by a small blind-spot U-Net trained on each image itself, "
    "following Noise2Self [@noise2self2019]",
    ("denoised", "model"): "denoised by a trained network (the model bundle named below)",
    ("harmonized", "nyul"): "harmonized by piecewise-linear standardisation of their histogram "
    "landmarks inside the brain mask onto a cohort reference scale [@nyul2000]",
    ("harmonized", "whitestripe"): "harmonized with WhiteStripe (mean 0, standard deviation 1 in "
    "a stripe of normal-appearing white matter) [@whitestripe2014]",
    ("harmonized", "zscore"): "harmonized to mean 0, standard deviation 1 in the brain mask",
    ("harmonized", "learned"): "harmonized to a target site's contrast by a trained network "
    "following DeepHarmony [@deepharmony2019]",
    ("superres", "self"): "super-resolved to isotropic voxels by a network trained on the "
    "image's own in-plane resolution, following SMORE [@smore2021]",
    ("superres", "bspline"): "resampled to isotropic voxels by cubic B-spline interpolation",
    ("translate", "model"): "synthesized from the T1w by a trained image-to-image network "
    "(the translation task of CycleGAN [@cyclegan2017], trained here on paired images)",
    ("sct", "model"): "synthesized from the MR images by a trained network, following the "
    "context-aware GAN of Nie et al. [@contextgan2017]",
    ("sct", "bulk"): "synthesized by assigning fixed Hounsfield units to tissue classes of the "
    "T1w (bulk density)",
    ("sct", "atlas"): "synthesized by registering MR/CT atlas pairs to the T1w (antsRegistration "
    "[@ants2008]) and carrying their CT over",
}
_CITATION = re.compile(r"\[@([A-Za-z0-9]+)\]")


@dataclass
class Step:
    """One kind of output of the run: its ``desc``, method, and the suffixes written with it."""

    desc: str
    method: str
    suffixes: set[str] = field(default_factory=set)
    parameters: dict[str, list] = field(default_factory=dict)  # name -> its distinct values


def workflow_steps(workflow) -> tuple[list[Step], list]:
    """The steps whose outputs the workflow's derivative sinks publish, and the model bundles its
    nodes load (:class:`~bids_synth.models.Bundle`, sorted by id)."""
    from bids_synth.models import Bundle

    steps: dict[tuple[str, str], Step] = {}
    bundles = {}
    for name in workflow.list_node_names():
        inputs = workflow.get_node(name).inputs
        folder = getattr(inputs, "bundle", None)
        if isinstance(folder, str) and folder:
            bundle = Bundle.read(folder)
            bundles[bundle.ref] = bundle
        if not name.split(".")[-1].startswith("ds_"):
            continue
        entities, meta = inputs.entities, inputs.metadata
        kind = _kind(entities)
        step = steps.setdefault((kind, meta.get("Method", "")), Step(kind, meta.get("Method", "")))
        step.suffixes.add(entities.get("from") or entities["suffix"])
        for name, value in (meta.get("Parameters") or {}).items():
            values = step.parameters.setdefault(name, [])
            if value not in values:
                values.append(value)
    return sorted(steps.values(), key=lambda s: (s.desc, s.method)), sorted(
        bundles.values(), key=lambda b: b.ref
    )


def _kind(entities: dict) -> str:
    """``xfm``, ``sct`` or ``translate`` (the synthetic outputs of each), or the ``desc``."""
    if entities["suffix"] == "xfm":
        return "xfm"
    if entities.get("desc") == "synthetic":
        return "translate" if entities["suffix"] in MR_SUFFIXES else "sct"
    return entities.get("desc", "")


def methods_text(steps: list[Step], bundles: list, *, seed: int) -> str:
    """The boilerplate paragraphs (Markdown, ``[@key]`` citations) of a run's steps."""
    by_desc = {(step.desc, step.method): step for step in steps}
    paragraphs = [
        f"Results included in this dataset come from bids-synth {__version__} ({CODE_URL}), "
        f"a BIDS App built on Nipype {_version('nipype')} [@nipype2011], which found the input "
        f"images with PyBIDS {_version('pybids')} [@pybids2019]."
    ]
    preproc = by_desc.get(("preproc", "N4BiasFieldCorrection (antspyx)"))
    shrink = preproc.parameters.get("N4ShrinkFactor", [None])[0] if preproc else None
    anatomy = (
        "The T1w image of each participant and session was corrected for intensity "
        f"non-uniformity with N4BiasFieldCorrection [@n4] (ANTs through antspyx "
        f"{_version('antspyx')} [@antsx2021]; shrink factor {shrink}); its head mask was then "
        "computed from its intensities (above their clip level) and mathematical morphology, "
        + (
            "its brain mask by a network trained on simulated heads of random contrasts, as "
            "SynthStrip [@synthstrip2022] (the brain share above ½; bundle below)."
            if ("brain", "model") in by_desc
            else "its brain mask from its intensities (above a multi-Otsu threshold) and "
            "mathematical morphology."
        )
    )
    coreg = by_desc.get(("xfm", "antsRegistration (antspyx)"))
    if coreg:
        transform = coreg.parameters.get("Transform", ["rigid"])[0]
        anatomy += (
            f" The {_listing(coreg.suffixes)} image(s) were aligned to the T1w (MR images after "
            f"the same N4 correction) with a {transform} transform maximising Mattes mutual "
            f"information [@mattes2003] (antsRegistration [@ants2008], single-threaded, random "
            f"seed {coreg.parameters.get('RandomSeed', [seed])[0]}) and resampled onto its grid."
        )
    paragraphs.append(anatomy)
    for step in steps:
        done = TASK_STEPS.get((step.desc, step.method))
        if done is None:
            continue
        if step.desc == "sct":
            sentence = f"A CT image in Hounsfield units and its body mask were {done}"
            if "mumap" in step.suffixes:
                sentence += (
                    "; the CT was converted to a 511 keV attenuation map with the bilinear "
                    "model of Carney et al. [@carney2006]"
                )
        else:
            sentence = f"The {_listing(step.suffixes)} image(s) were {done}"
        if step.parameters:
            sentence += f". Parameters: {_parameters_text(step.parameters)}"
        paragraphs.append(sentence + ".")
    if bundles:
        lines = ["The trained networks came from these model bundles (weights checked by sha256):"]
        for bundle in bundles:
            lines.append(f"- {_bundle_line(bundle)}")
        paragraphs.append("\n".join(lines))
    paragraphs.append(
        f"Every random step used the seed {seed}; the same inputs and seed give identical "
        "derivatives on a CPU."
    )
    return "\n\n".join(paragraphs)


def _bundle_line(bundle) -> str:
    meta = bundle.meta
    architecture = meta.get("architecture", {}).get("name", "")
    data = meta.get("training", {}).get("data", {})
    line = f"`{bundle.id}` version {bundle.version} (sha256 `{bundle.sha256}`), task {bundle.task}"
    if architecture:
        line += f", a {architecture}" + (" [@unet2015]" if architecture == "unet" else "")
    if data.get("description"):
        line += f", trained on {data['description']}"
        if data.get("kind") == "simulated":
            line += " (tissue properties after BrainWeb [@brainweb1998])"
    return line + "."


def _parameters_text(parameters: dict[str, list]) -> str:
    """``name value`` pairs; a parameter that differs between images lists its values."""

    def value_text(value) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{key} {value_text(item)}" for key, item in value.items())
        if isinstance(value, list | tuple):
            return "/".join(map(str, value))
        return str(value)

    return "; ".join(
        f"{name} {' or '.join(value_text(value) for value in values)}"
        for name, values in parameters.items()
    )


def _listing(suffixes) -> str:
    names = sorted(suffixes, key=lambda s: (s != "T1w", s))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _version(distribution: str) -> str:
    try:
        return package_metadata.version(distribution)
    except package_metadata.PackageNotFoundError:
        return "(version unknown)"


def cited_keys(text: str) -> list[str]:
    """The ``[@key]`` citations of ``text``, in order of first use."""
    return list(dict.fromkeys(_CITATION.findall(text)))


def _entries(keys: list[str]) -> list[str]:
    """The BibTeX entries of ``keys`` from the package's ``data/references.bib``, in that order."""
    source = resources.files("bids_synth").joinpath("data/references.bib").read_text()
    entries = {
        match.group(1): match.group(0).strip()
        for match in re.finditer(r"@\w+\{(\w+),.*?\n\}", source, flags=re.DOTALL)
    }
    missing = [key for key in keys if key not in entries]
    if missing:
        raise KeyError(f"references.bib lacks {', '.join(missing)}")
    return [entries[key] for key in keys]


def bibliography(keys: list[str]) -> str:
    """A BibTeX file of ``keys``."""
    return "\n\n".join(_entries(keys)) + "\n"


def reference_list(keys: list[str]) -> list[str]:
    """``keys`` as one-line references: first author et al., title, venue, year, DOI."""
    lines = []
    for entry in _entries(keys):
        fields = {
            name.lower(): re.sub(r"[{}]|\\.", "", value)
            for name, value in re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", entry, re.MULTILINE)
        }
        authors = fields.get("author", "").split(" and ")
        first = authors[0].split(",")[0]
        venue = fields.get("journal") or fields.get("booktitle", "")
        line = f"{first}{' et al.' if len(authors) > 1 else ''} ({fields.get('year', '')}). "
        line += f"{fields.get('title', '')}. {venue}."
        if fields.get("doi"):
            line += f" doi:{fields['doi']}"
        lines.append(line)
    return lines


def write_boilerplate(workflow, output_dir: str | Path, *, seed: int) -> str:
    """Write ``logs/CITATION.md`` and ``logs/CITATION.bib`` of a run; return the Markdown text."""
    steps, bundles = workflow_steps(workflow)
    text = "# Methods\n\n" + methods_text(steps, bundles, seed=seed) + "\n"
    logs = Path(output_dir) / "logs"
    atomic_write_text(logs / "CITATION.bib", bibliography(cited_keys(text)))
    atomic_write_text(logs / "CITATION.md", text)
    return text
