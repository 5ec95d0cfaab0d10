"""Training checkpoints: network weights (safetensors) + optimizer/random state + progress.

Layout under the checkpoint folder::

    epoch-0003/networks.safetensors   every network's weights, keys "<network>/<parameter>"
                                      (with the generator's weight average, when kept)
    epoch-0003/state.pt               optimizers, loss scaler, random generators (torch.save)
    latest.json                       {"epoch": 3, "folder": "epoch-0003", "run": {...}, "history": [...]}

``latest.json`` is replaced atomically after the epoch folder is complete, so a run killed while
saving resumes from the previous checkpoint. ``state.pt`` is read with ``weights_only=True``;
bundles never contain it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from bids_synth.fileio import atomic_write, atomic_write_json
from bids_synth.nn.trainers import GENERATOR_AVERAGE, Trainer


def save_checkpoint(
    folder: Path, trainer: Trainer, *, epoch: int, run: dict, history: list[dict]
) -> None:
    """Save the state after ``epoch`` epochs and drop older checkpoints."""
    name = f"epoch-{epoch:04d}"
    target = folder / name
    weights = {
        f"{net_name}/{key}": value.detach().cpu().contiguous()
        for net_name, net in trainer.checkpointed_networks().items()
        for key, value in net.state_dict().items()
    }
    with atomic_write(target / "networks.safetensors") as handle:
        handle.write(save_safetensors(weights))
    state = {**trainer.state_dict(), "torch_rng": torch.get_rng_state()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(target / "state.pt") as handle:
        handle.write(buffer.getvalue())
    atomic_write_json(
        folder / "latest.json", {"epoch": epoch, "folder": name, "run": run, "history": history}
    )
    for old in folder.glob("epoch-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def read_latest(folder: Path) -> dict | None:
    """The content of ``latest.json`` (epoch, folder, run, history), or None without a checkpoint."""
    path = folder / "latest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_checkpoint(folder: Path, trainer: Trainer) -> dict:
    """Restore ``trainer`` from the latest checkpoint; return ``latest.json``'s content. A weight
    average the checkpoint lacks (it was written without one) starts from the next step's weights."""
    latest = read_latest(folder)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {folder}")
    target = folder / latest["folder"]
    weights = load_safetensors((target / "networks.safetensors").read_bytes())
    for net_name, net in trainer.checkpointed_networks().items():
        prefix = f"{net_name}/"
        stored = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if stored or net_name != GENERATOR_AVERAGE:
            net.load_state_dict(stored)
    state = torch.load(target / "state.pt", map_location="cpu", weights_only=True)
    trainer.load_state_dict(state)
    torch.set_rng_state(state["torch_rng"])
    return latest
