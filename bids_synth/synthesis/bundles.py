"""Choose the model bundle of a synthesis task by its contract (source suffixes → target)."""

from __future__ import annotations

from bids_synth.errors import ModelBundleError
from bids_synth.models import find_bundle, list_bundles
from bids_synth.models.bundle import semver_key


def contract(bundle) -> tuple[tuple[str, ...], str]:
    """(input suffixes, output suffix) of a bundle."""
    return tuple(bundle.meta["input"].get("suffixes", [])), bundle.meta["output"].get("suffix", "")


def find_task_bundle(task: str, source: str, target: str, ref: str | None = None):
    """The bundle named by ``ref``, else the newest ``task`` bundle whose first input is ``source``
    and whose output is ``target`` (user bundles before shipped ones).

    Raises :class:`ModelBundleError` (exit 7) with the command that trains one.
    """
    if ref:
        bundle = find_bundle(ref)
        if bundle.task != task:
            raise ModelBundleError(
                f"model bundle {bundle.ref} serves task {bundle.task!r}, not {task!r}"
            )
        return bundle
    matches = [
        b
        for b in list_bundles()
        if b.task == task and contract(b)[0][:1] == (source,) and contract(b)[1] == target
    ]
    if not matches:
        raise ModelBundleError(
            f"no {task} model bundle for {source}→{target}: train one with `bids-synth train "
            f"--task {task} --simulated --source {source} --target {target} --out DIR` (or "
            f"--bids-dir for paired data) and install it with `bids-synth models install DIR`"
        )
    return max(matches, key=lambda b: semver_key(b.version))


def model_fields(bundle) -> dict:
    """The sidecar's ``Model`` entry: identity, the weights' sha256 and the whole bundle's digest."""
    return {
        "Id": bundle.id,
        "Version": bundle.version,
        "Sha256": bundle.sha256,
        "Digest": bundle.digest,
    }
