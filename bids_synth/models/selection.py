"""Choose the bundle of a learned task: by task, contract (source suffixes → target) and site.

A bundle's contract is ``input.suffixes`` → ``output.suffix`` in its ``bundle.json``; a
harmonization bundle (``bids-synth train --task harmonize --target-site K``) also records its
target there: ``harmonization.target`` (``"site<K>"``) and ``harmonization.target_style``.
Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from bids_synth.errors import ModelBundleError, UsageError
from bids_synth.models.bundle import semver_key
from bids_synth.models.registry import find_bundle, list_bundles

HARMONIZE = "harmonize"


def contract(bundle) -> tuple[tuple[str, ...], str]:
    """(input suffixes, output suffix) of a bundle."""
    return tuple(bundle.meta["input"].get("suffixes", [])), bundle.meta["output"].get("suffix", "")


def output_reference(bundle) -> Path | None:
    """The Nyul reference file of a harmonization bundle's own outputs, when it carries one;
    :class:`ModelBundleError` when ``bundle.json`` names one that is not there."""
    entry = bundle.meta.get("harmonization", {}).get("output_reference")
    if not entry:
        return None
    path = bundle.path / entry["file"]
    if not path.is_file():
        raise ModelBundleError(f"model bundle {bundle.ref}: its Nyul reference {path} is missing")
    return path


def bundle_inputs(bundle) -> dict:
    """The interface inputs naming ``bundle``: its folder and its digest, which nipype hashes (a
    bundle replaced in the same folder is run again, never reused with the new one's identity)."""
    return {"bundle": str(bundle.path), "bundle_digest": bundle.digest}


def model_fields(bundle) -> dict:
    """The sidecar's ``Model`` entry: identity, the weights' sha256 and the whole bundle's digest."""
    return {
        "Id": bundle.id,
        "Version": bundle.version,
        "Sha256": bundle.sha256,
        "Digest": bundle.digest,
    }


def task_bundles(task: str, source: str, target: str) -> list:
    """The installed ``task`` bundles whose first input is ``source`` and output ``target``."""
    return [
        b
        for b in list_bundles()
        if b.task == task and contract(b)[0][:1] == (source,) and contract(b)[1] == target
    ]


def named_task_bundle(task: str, ref: str):
    """The bundle named by ``ref`` (:func:`~bids_synth.models.registry.find_bundle`), which must
    serve ``task`` (:class:`ModelBundleError`, exit 7, otherwise)."""
    bundle = find_bundle(ref)
    if bundle.task != task:
        raise ModelBundleError(
            f"model bundle {bundle.ref} serves task {bundle.task!r}, not {task!r}"
        )
    return bundle


def find_task_bundle(task: str, source: str, target: str, ref: str | None = None):
    """The bundle named by ``ref``, else the newest ``task`` bundle whose first input is ``source``
    and whose output is ``target`` (user bundles before shipped ones).

    Raises :class:`ModelBundleError` (exit 7) with the command that trains one.
    """
    if ref:
        return named_task_bundle(task, ref)
    matches = task_bundles(task, source, target)
    if not matches:
        raise ModelBundleError(
            f"no {task} model bundle for {source}→{target}: train one with `bids-synth train "
            f"--task {task} --simulated --source {source} --target {target} --out DIR` (or "
            f"--bids-dir for paired data) and install it with `bids-synth models install DIR`"
        )
    return max(matches, key=lambda b: semver_key(b.version))


def evidence_default(task: str, source: str, target: str, fallback: str) -> str:
    """``model`` when the newest ``task`` bundle for ``source`` → ``target`` passed the real-scan
    check its benchmark recorded (``checks.real_scans.passed`` in its bundle.json), else
    ``fallback``: a task's default is the method that holds on real scans."""
    try:
        bundle = find_task_bundle(task, source, target)
    except ModelBundleError:
        return fallback
    return "model" if passed_real_scan_check(bundle) else fallback


def passed_real_scan_check(bundle) -> bool:
    """Whether ``bundle`` passed the real-scan check its benchmark recorded."""
    return bool(bundle.meta.get("checks", {}).get("real_scans", {}).get("passed", False))


def installed_pairs(task: str) -> dict:
    """(first source, target) → newest bundle, for every installed or shipped ``task`` bundle."""
    pairs = {}
    for bundle in list_bundles():
        suffixes, target = contract(bundle)
        if bundle.task == task and suffixes and target:
            pairs.setdefault((suffixes[0], target), find_task_bundle(task, suffixes[0], target))
    return pairs


def normalise_target(target: str | int | None) -> str | None:
    """``"0"``, ``0`` or ``"site0"`` → ``"site0"``; None stays None."""
    if target is None:
        return None
    text = str(target).strip()
    return f"site{text}" if text.isdigit() else text


def bundle_target(bundle) -> str | None:
    """The target a harmonization bundle maps to (``"site<K>"``), or None when not recorded."""
    return bundle.meta.get("harmonization", {}).get("target")


def harmonization_bundles(target: str | None = None, ref: str | None = None) -> list:
    """Harmonization bundles (the one named by ``ref``, else every installed or shipped one),
    restricted to ``target`` when given; :class:`ModelBundleError` (exit 7) when none fits."""
    target = normalise_target(target)
    if ref:
        bundle = find_bundle(ref)
        if bundle.task != HARMONIZE or bundle_target(bundle) is None:
            raise ModelBundleError(f"model bundle {bundle.ref} is not a harmonization bundle")
        if target not in (None, bundle_target(bundle)):
            raise ModelBundleError(
                f"model bundle {bundle.ref} harmonizes to {bundle_target(bundle)}, not {target}"
            )
        return [bundle]
    found = [b for b in list_bundles() if b.task == HARMONIZE and bundle_target(b) is not None]
    targets = sorted({bundle_target(b) for b in found})
    if target is not None:
        found = [b for b in found if bundle_target(b) == target]
    elif len(targets) > 1:
        raise UsageError(
            f"harmonize: bundles for several targets are installed ({', '.join(targets)}): "
            "choose one with --harmonize-target"
        )
    if not found:
        raise ModelBundleError(
            f"no harmonization model bundle for target {target or 'any site'} (installed targets: "
            f"{', '.join(targets) or 'none'}): train one with `bids-synth train --task harmonize "
            "--simulated --source T1w --target T1w --target-site K --out DIR` and install it with "
            "`bids-synth models install DIR`"
        )
    return found


def choose_bundle(bundles: list, suffix: str, available) -> object | None:
    """The bundle of ``bundles`` writing ``suffix`` whose inputs are all ``available``: the one
    using the most contrasts, then the newest; None when none fits."""
    fitting = [
        b
        for b in bundles
        if contract(b)[1] == suffix and contract(b)[0] and set(contract(b)[0]) <= set(available)
    ]
    if not fitting:
        return None
    return max(fitting, key=lambda b: (len(contract(b)[0]), semver_key(b.version)))
