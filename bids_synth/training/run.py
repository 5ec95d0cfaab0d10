"""A training run: :func:`train` fits the network a :class:`TrainingSpec` describes and writes its
bundle (weights, ``bundle.json``, model card, training log and curves). Progress is checkpointed
every epoch in the spec's work folder; ``resume`` continues a stopped run exactly."""

from __future__ import annotations

import math
import shlex

import bids_synth
from bids_synth.errors import UsageError
from bids_synth.training.sources import training_data
from bids_synth.training.spec import TrainingSpec


def train(spec: TrainingSpec):
    """Train and write the bundle to ``spec.out``; return (the bundle, the history per epoch)."""
    spec.check()
    from bids_synth.models.bundle import save_bundle
    from bids_synth.models.card import render_model_card
    from bids_synth.nn.devices import amp_dtype, amp_name, resolve_device
    from bids_synth.nn.history import plot_history, write_history_csv
    from bids_synth.nn.loop import ResumeMismatch, fit
    from bids_synth.nn.trainers import build_trainer

    try:
        device = resolve_device(spec.device)
        amp = amp_name(amp_dtype(device, spec.amp))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    epochs, steps = spec.plan()
    inputs, output = spec.contracts()
    data, data_info = training_data(spec, inputs, output)
    kwargs = spec.network_kwargs()
    trainer = build_trainer(
        "regression" if spec.mode == "noise2self" else spec.mode,
        architecture=spec.arch,
        network_kwargs=dict(kwargs),
        device=device,
        amp=spec.amp,
        lr=spec.lr,
        seed=spec.seed,
        critic_layers=max(1, min(3, int(math.log2(min(spec.patch))) - 3)),
    )
    normalization = output["normalization"]
    try:
        history = fit(
            trainer,
            data,
            epochs=epochs,
            steps_per_epoch=steps,
            workdir=spec.workdir,
            run=spec.run_settings(),
            resume=spec.resume,
            validation_draws=spec.validation_draws,
            output_scale=normalization["scale"] if normalization["method"] == "scale" else 1.0,
        )
    except ResumeMismatch as exc:
        raise UsageError(str(exc)) from exc
    meta = bundle_meta(
        spec,
        inputs=inputs,
        output=output,
        kwargs=kwargs,
        data_info=data_info,
        history=history,
        device=str(device),
        amp=amp,
    )
    write_history_csv(spec.out / "training_log.csv", history)
    plot_history(spec.out / "training_curves.png", history)
    bundle = save_bundle(
        spec.out, trainer.generator, meta=meta, card=render_model_card(meta, history)
    )
    if spec.harmonizing:
        from bids_synth.training.output_reference import add_output_reference

        bundle = add_output_reference(
            spec.out, spec.label_sources, spacing_mm=spec.spacing, history=history
        )
    return bundle, history


def bundle_meta(spec: TrainingSpec, *, inputs, output, kwargs, data_info, history, device, amp):
    """``bundle.json`` of a finished run."""
    import torch

    epochs, steps = spec.plan()
    last = history[-1]
    validation = data_info["validation"]
    # the command that retrains it from scratch (a resumed run follows the same trajectory)
    command = ["bids-synth", "train", *(a for a in spec.command if a != "--resume")]
    return {
        "id": spec.resolved_bundle_id,
        "version": spec.bundle_version,
        "task": spec.task,
        "architecture": {"name": spec.arch, "kwargs": kwargs},
        "input": inputs,
        "output": output,
        "inference": {"patch": list(spec.patch), "overlap": spec.inference_overlap},
        "training": {
            "data": data_info,
            "mode": spec.mode,
            "seed": spec.seed,
            "steps": epochs * steps,
            "epochs": epochs,
            "batch_size": spec.batch_size,
            "patch": list(spec.patch),
            "lr": spec.lr,
            "device": device,
            "amp": amp,
            "command": shlex.join(command),
        },
        "metrics": [
            {
                "name": "MAE",
                "value": last["val_mae"],
                "units": output["units"],
                "dataset": validation,
            },
            {"name": "PSNR", "value": last["val_psnr"], "units": "dB", "dataset": validation},
        ],
        "software": {"bids_synth": bids_synth.__version__, "torch": torch.__version__},
        **({"harmonization": harmonization_meta(spec)} if spec.harmonizing else {}),
    }


def harmonization_meta(spec: TrainingSpec) -> dict:
    """The bundle's ``harmonization`` entry: the target site and its scanner style."""
    return site_harmonization_meta(spec.target_site, spec.source_site_numbers())


def site_harmonization_meta(target_site: int, source_sites=(None,)) -> dict:
    """A harmonization bundle's ``harmonization`` entry: site ``target_site`` and its scanner
    style, the source styles (None: random)."""
    from bids_synth.simulate.scanner import ScannerStyle

    style = ScannerStyle.for_site(target_site)
    return {
        "target_site": target_site,
        "target": style.name,
        "target_style": style.to_json(),
        "source_styles": [
            "random" if s is None else ScannerStyle.for_site(s).name for s in source_sites
        ],
        "target_image": "the noise-, bias- and PSF-free image of the target site on the simulation grid",
    }
