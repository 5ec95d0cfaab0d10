"""The training loop: epochs of steps, held-out validation, CSV log, checkpoints and exact resume."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from bids_synth.nn.checkpoint import load_checkpoint, read_latest, save_checkpoint
from bids_synth.nn.history import write_history_csv
from bids_synth.nn.losses import masked_mean
from bids_synth.nn.trainers import Trainer
from bids_synth.progress import progress

LOG = logging.getLogger("bids_synth.nn.loop")


class ResumeMismatch(ValueError):
    """The checkpoint was written by a run with different settings."""


def validate(
    trainer: Trainer, batches: list[dict], *, output_scale: float = 1.0
) -> dict[str, float]:
    """MAE (in output units: model units × ``output_scale``) and PSNR of the generator on ``batches``.

    Both are computed over mask voxels; PSNR uses the targets' value range as data range.
    """
    abs_error = squared_error = voxels = 0.0
    low, high = math.inf, -math.inf
    for batch in batches:
        prediction, target, mask = trainer.predict(batch["source"]), batch["target"], batch["mask"]
        weight = float((mask > 0).sum())
        abs_error += float(masked_mean((prediction - target).abs(), mask)) * weight
        squared_error += float(masked_mean((prediction - target) ** 2, mask)) * weight
        voxels += weight
        low, high = min(low, float(target.min())), max(high, float(target.max()))
    mse = squared_error / max(voxels, 1.0)
    psnr = 10 * math.log10((high - low) ** 2 / mse) if mse > 0 else math.inf
    return {"val_mae": abs_error / max(voxels, 1.0) * output_scale, "val_psnr": psnr}


def fit(
    trainer: Trainer,
    data,
    *,
    epochs: int,
    steps_per_epoch: int,
    workdir: Path,
    run: dict,
    resume: bool = False,
    validation_draws: int = 4,
    output_scale: float = 1.0,
    tags: dict | None = None,
    lr_at: Callable[[int], float] | None = None,
) -> list[dict]:
    """Train ``trainer`` on ``data`` (see :mod:`bids_synth.nn.data`) and return the per-epoch history.

    After each epoch: validation on ``validation_draws`` held-out batches, ``history.csv`` and a
    checkpoint in ``workdir/checkpoints``. ``run`` (the settings that define the trajectory) is stored
    with the checkpoint; ``resume=True`` continues from the latest checkpoint, bit for bit on CPU,
    and refuses a checkpoint written with different settings. ``tags`` are recorded in every row
    this call adds to the history (what the run's data was, e.g. the head model's revision).
    ``lr_at`` gives each epoch's learning rate (0-based epoch → rate); without it the optimizers
    keep theirs.
    """
    checkpoints = workdir / "checkpoints"
    history: list[dict] = []
    start = 0
    if resume and read_latest(checkpoints) is not None:
        stored = read_latest(checkpoints)["run"]
        if stored != run:
            changed = sorted(
                key for key in run.keys() | stored.keys() if run.get(key) != stored.get(key)
            )
            raise ResumeMismatch(
                f"cannot resume: settings differ from the checkpoint's ({', '.join(changed)})"
            )
        latest = load_checkpoint(checkpoints, trainer)
        start, history = latest["epoch"], latest["history"]
        LOG.info("resuming after epoch %d", start)
    elif resume:
        LOG.warning("no checkpoint in %s to resume from: training from the start", checkpoints)
    validation = data.validation_batches(validation_draws)
    for epoch in range(start, epochs):
        started = time.perf_counter()
        if lr_at is not None:
            trainer.set_lr(lr_at(epoch))
        totals: dict[str, float] = {}
        bar = progress(
            data.epoch_batches(epoch, steps_per_epoch),
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="step",
        )
        for batch in bar:
            losses = trainer.train_step(batch)
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value
            bar.set_postfix(loss=f"{losses['loss']:.4g}")
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, **(tags or {})}
        if lr_at is not None:
            row["lr"] = lr_at(epoch)
        row.update({f"train_{name}": total / steps_per_epoch for name, total in totals.items()})
        row.update(validate(trainer, validation, output_scale=output_scale))
        row["seconds"] = round(time.perf_counter() - started, 3)
        history.append(row)
        LOG.info(
            "epoch %d/%d: loss %.4g, val MAE %.4g, val PSNR %.2f dB",
            epoch + 1,
            epochs,
            row["train_loss"],
            row["val_mae"],
            row["val_psnr"],
        )
        write_history_csv(workdir / "history.csv", history)
        save_checkpoint(checkpoints, trainer, epoch=epoch + 1, run=run, history=history)
    return history
