"""Reading provenance from derivative sidecars, whatever the capitalisation of their keys.

Fields read (case-insensitive): ``Method``; ``Model`` — an object with ``Id``, ``Version`` and
``Sha256`` or a string; ``Device``; ``RuntimeSeconds`` (or ``Runtime``); ``Warnings`` (a string or
a list of strings).
"""

from __future__ import annotations

from bids_synth.reports.html import digest


def lookup(mapping, *names):
    """The value of the first of ``names`` present in ``mapping`` (case-insensitive), else None."""
    if not isinstance(mapping, dict):
        return None
    lowered = {str(key).lower(): value for key, value in mapping.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def model_fields(sidecar: dict) -> list[tuple[str, object]]:
    """``(label, value)`` pairs of the method, model, weights' sha256 (shortened markup), device and
    runtime that the sidecar gives."""
    model = lookup(sidecar, "Model")
    if isinstance(model, dict):
        version = lookup(model, "Version")
        name = lookup(model, "Id", "Name")
        sha256 = lookup(model, "Sha256", "SHA-256")
        model = f"{name}@{version}" if version else name
    else:
        sha256 = lookup(sidecar, "Sha256", "ModelSha256")
    runtime = lookup(sidecar, "RuntimeSeconds", "Runtime")
    pairs = [
        ("Method", lookup(sidecar, "Method")),
        ("Model", model),
        ("sha256", digest(str(sha256)) if sha256 else None),
        ("Device", lookup(sidecar, "Device")),
        ("Runtime", f"{runtime:.1f} s" if isinstance(runtime, (int, float)) else runtime),
    ]
    return [(label, value) for label, value in pairs if value not in (None, "")]


def sidecar_warnings(sidecar: dict) -> list[str]:
    warnings = lookup(sidecar, "Warnings") or []
    return [warnings] if isinstance(warnings, str) else [str(w) for w in warnings]
