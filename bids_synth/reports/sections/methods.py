"""Methods: the boilerplate of the run (``logs/CITATION.md``), with its references."""

from __future__ import annotations

import re

from bids_synth.boilerplate import cited_keys, reference_list
from bids_synth.reports.html import Html, join, tag
from bids_synth.reports.sections import register
from bids_synth.reports.session import SessionFiles

_INLINE = re.compile(r"`([^`]+)`|\[@([A-Za-z0-9]+)\]")


@register("methods", "Methods", order=85)
def methods(files: SessionFiles) -> Html | None:
    if not files.methods:
        return None
    keys = cited_keys(files.methods)
    blocks = []
    for block in files.methods.strip().split("\n\n"):
        if block.startswith("# "):
            continue
        lines = block.splitlines()
        items = [line[2:] for line in lines if line.startswith("- ")]
        text = [line for line in lines if not line.startswith("- ")]
        if text:
            blocks.append(tag("p", _inline(" ".join(text), keys)))
        if items:
            blocks.append(tag("ul", join(tag("li", _inline(item, keys)) for item in items)))
    references = [tag("li", entry) for entry in reference_list(keys)]
    blocks += [tag("h4", "References"), tag("ol", join(references), class_="references")]
    note = "To cite, copy logs/CITATION.md with logs/CITATION.bib of the output folder."
    return join([tag("p", note, class_="note"), *blocks])


def _inline(text: str, keys: list[str]) -> Html:
    """``code`` spans and ``[@key]`` citations (as the reference's number) of one paragraph."""
    parts, start = [], 0
    for match in _INLINE.finditer(text):
        parts.append(text[start : match.start()])
        if match.group(1):
            parts.append(tag("code", match.group(1)))
        else:
            parts.append(f"[{keys.index(match.group(2)) + 1}]")
        start = match.end()
    parts.append(text[start:])
    return join(parts)
