"""MODEL_CARD.md, generated from a bundle's metadata and its training log."""

from __future__ import annotations

import json


def _metric_lines(metrics: list[dict]) -> list[str]:
    if not metrics:
        return ["No held-out metrics were recorded."]
    lines = ["| metric | value | units | measured on |", "|---|---|---|---|"]
    for m in metrics:
        lines.append(
            f"| {m['name']} | {m['value']:.4g} | {m.get('units', '')} | {m.get('dataset', '')} |"
        )
    return lines


def _compute_line(training: dict, history: list[dict]) -> str:
    seconds = sum(float(row.get("seconds", 0.0)) for row in history)
    device = str(training.get("device", "?"))
    kind = "a GPU" if device.startswith("cuda") else "a CPU" if device == "cpu" else device
    line = (
        f"Compute: trained on {kind} ({device}) for {training.get('steps', '?')} steps, "
        f"{f'{seconds / 60:.0f} min' if seconds >= 60 else f'{seconds:.0f} s'} of training time"
    )
    if "cpu_hours" in training:
        line += (
            f" ({training['cpu_hours']} CPU-hours, {training.get('samples', '?')} samples, "
            f"{training.get('output_voxels', 0) / 1e9:.1f} G output voxels seen)"
        )
    return line + (" — a small CPU budget, not a converged model." if kind == "a CPU" else ".")


def _inference_lines(inference: dict) -> list[str]:
    if inference.get("mode") != "slabs":
        return []
    symmetries = inference.get("symmetries", 1)
    averaged = [f"{symmetries} symmetries of the in-plane voxel lattice"] if symmetries > 1 else []
    if inference.get("mirror"):
        averaged.append("the image and its left/right mirror image")
    ensemble = f" (each the mean over {' and '.join(averaged)})" if averaged else ""
    adaptation = inference.get("adaptation")
    adapted = (
        f" Before it denoises an image its normalisation gains are tuned on that image alone:"
        f" {adaptation['steps']} Adam steps (learning rate {adaptation['lr']:g}) on Stein's"
        " unbiased estimate of its squared error (SURE), with the noise σ estimated in the head."
        if adaptation
        else ""
    )
    return [
        f"Inference: slabs of {inference.get('slices', '?')} slices along each of "
        f"{len(inference.get('axes', []))} orientations{ensemble}, fused by their "
        f"{inference.get('fusion', 'mean')}, under {inference.get('amp', 'no')} autocast."
        + adapted,
        "",
    ]


def _output_reference_lines(reference: dict | None) -> list[str]:
    if not reference:
        return []
    return [
        f"In the pipeline its outputs are then standardised in the head mask by the Nyul "
        f"landmarks in `{reference['file']}`, learned from {reference['learned_from']}: the "
        "network undoes the scanner's contrast, the landmarks what is left of its scale.",
        "",
    ]


def _harmonization_lines(meta: dict) -> list[str]:
    """What a harmonization bundle maps to (absent for other tasks)."""
    harmonization = meta.get("harmonization")
    if not harmonization:
        return []
    style = harmonization.get("target_style", {})
    suffix = meta["output"].get("suffix", "")
    protocol = style.get("mr", {}).get(suffix, {})
    sequence = protocol.get("sequence", {})
    return [
        "## Harmonization target",
        "",
        f"Maps images from any scanner to **{harmonization['target']}** "
        f"({style.get('field_strength_T', '?')} T, {suffix} {sequence.get('kind', '?')} "
        f"`{json.dumps(sequence, sort_keys=True)}`): the target was "
        f"{harmonization.get('target_image', 'the target site image')}. Output on one fixed "
        f"scale whatever the input's: {meta['output']['units']} (network output × "
        f"{meta['output']['normalization'].get('scale')}). "
        f"Training sources: {', '.join(harmonization.get('source_styles', []))} scanner styles.",
        "",
        *_output_reference_lines(harmonization.get("output_reference")),
        "It synthesises the target site's image of the subject's anatomy: the output is the "
        "network's estimate, not a re-mapping of the input intensities; anatomy the head model "
        "does not simulate (lesions beyond its lesion class, tumours, post-surgical changes) may "
        "be altered or erased. Check the benchmark before any quantitative use.",
        "",
    ]


def _check_lines(checks: dict) -> list[str]:
    """One line per recorded check (e.g. the real-scan check that decides a default method)."""
    if not checks:
        return []
    lines = ["## Checks", ""]
    for name, check in sorted(checks.items()):
        verdict = "passed" if check.get("passed") else "failed"
        lines.append(f"- {name.replace('_', ' ')}: **{verdict}** — {check.get('summary', '')}")
    return [*lines, ""]


def _grid_text(inputs: dict) -> str:
    """Where the network runs, as the input contract's ``grid`` says."""
    orientation = inputs.get("orientation", "?")
    if inputs.get("grid") == "acquired":
        return (
            f"on the image's own voxels ({orientation}; trained at "
            f"{inputs.get('spacing_mm', '?')} mm, never resampled: interpolation would correlate "
            "the noise) as bids-synth does before inference."
        )
    return (
        f"resampled to {inputs.get('spacing_mm', '?')} mm ({orientation}) as bids-synth does "
        "before inference."
    )


def render_model_card(meta: dict, history: list[dict]) -> str:
    """The model card text: what the model does, its training data, held-out metrics, limits and
    the command that retrains it."""
    training = meta.get("training", {})
    data = training.get("data", {})
    inputs, output = meta["input"], meta["output"]
    architecture = meta["architecture"]
    suffixes = inputs.get("suffixes", [])
    alternatives = len(suffixes) > 1 and inputs.get("channels") == 1
    if alternatives and meta["task"] == "brainmask":
        contract = f"any of {'/'.join(suffixes)} → its brain"
        use = f"brain masks (the brain and its CSF) of {'/'.join(suffixes)} images"
    elif alternatives:  # a denoiser's contrasts
        contract = f"any of {'/'.join(suffixes)} → the same contrast"
        use = f"denoised {'/'.join(suffixes)} images from noisy ones"
    else:
        contract = f"{'+'.join(suffixes)} → {output.get('suffix', '?')}"
        use = f"{output.get('suffix', 'the target')} images from {' and '.join(suffixes)}"
    lines = [
        f"# Model card: {meta['id']} {meta['version']}",
        "",
        f"Task **{meta['task']}**: {contract} ({output.get('units', 'a.u.')}). Generated by "
        f"bids-synth {meta.get('software', {}).get('bids_synth', '?')}.",
        "",
        "## Intended use",
        "",
        f"Research use: produce {use} of the head, {_grid_text(inputs)} "
        "Not a medical device; not for diagnosis or treatment planning without independent validation.",
        "",
        "## Architecture",
        "",
        f"`{architecture['name']}` with `{json.dumps(architecture.get('kwargs', {}), sort_keys=True)}`; "
        f"trained in `{training.get('mode', '?')}` mode, seed {training.get('seed', '?')}, "
        f"{training.get('steps', '?')} steps of batch {training.get('batch_size', '?')} on patches "
        f"{training.get('patch', '?')} ({training.get('device', '?')}, amp {training.get('amp', '?')}).",
        "",
        "Input normalisation: `"
        + json.dumps(inputs.get("normalization", {}), sort_keys=True)
        + "`; output: `"
        + json.dumps(output.get("normalization", {}), sort_keys=True)
        + "`.",
        "",
        *_inference_lines(meta.get("inference", {})),
        *_harmonization_lines(meta),
        "## Training data",
        "",
        f"{data.get('kind', 'unknown')}: {data.get('description', 'not described')}",
        "",
        _compute_line(training, history),
        "",
        "## Held-out metrics",
        "",
        *_metric_lines(meta.get("metrics", [])),
        "",
        *_check_lines(meta.get("checks", {})),
        f"Training log: `training_log.csv` ({len(history)} epochs), curves in `training_curves.png`.",
        "",
        "## Limits",
        "",
        "- Trained on "
        + (
            "simulated heads from the generative head model: expect a domain gap on real scans."
            if data.get("kind") == "simulated"
            else "the dataset above only: other scanners, "
            "protocols, ages or pathologies may degrade the output."
        ),
        *(f"- {limit}" for limit in meta.get("limits", [])),
        "",
        "## Retrain",
        "",
        "```",
        training.get("command", "(command not recorded)"),
        "```",
        "",
    ]
    return "\n".join(lines)


def record_evaluation(
    folder, metrics: list[dict], *, limits: list[str] = (), inference=None, checks=None
) -> None:
    """Add evaluation ``metrics`` (dicts with name, value, units, dataset) and card ``limits`` to
    the bundle in ``folder``, optionally its ``inference`` settings and named ``checks`` (e.g.
    ``{"real_scans": {"passed": False, ...}}``), and re-render MODEL_CARD.md.

    Rows already recorded for the same (name, dataset) are replaced; the weights are untouched, so
    the bundle's sha256 stays valid.
    """
    import csv
    from pathlib import Path

    from bids_synth.fileio import atomic_write_json, atomic_write_text
    from bids_synth.models.bundle import BUNDLE_FILE, CARD_FILE, Bundle

    folder = Path(folder)
    meta = dict(Bundle.read(folder).meta)
    new_keys = {(m["name"], m.get("dataset")) for m in metrics}
    kept = [m for m in meta.get("metrics", []) if (m["name"], m.get("dataset")) not in new_keys]
    meta["metrics"] = kept + list(metrics)
    meta["limits"] = list(dict.fromkeys([*meta.get("limits", []), *limits]))
    if inference is not None:
        meta["inference"] = dict(inference)
    if checks:
        meta["checks"] = {**meta.get("checks", {}), **checks}
    log = folder / "training_log.csv"
    history = list(csv.DictReader(log.open())) if log.is_file() else []
    atomic_write_text(folder / CARD_FILE, render_model_card(meta, history))
    atomic_write_json(folder / BUNDLE_FILE, meta)
