"""The subject report's methods: the boilerplate of each run behind it, with its references."""

from __future__ import annotations

import re

from bids_synth.boilerplate import cited_keys, reference_list
from bids_synth.reports.html import Html, join, tag

_INLINE = re.compile(r"`([^`]+)`|\[@([A-Za-z0-9]+)\]")


def methods_html(texts: list[str]) -> Html:
    """The boilerplate texts (Markdown of :mod:`bids_synth.boilerplate`) as HTML, each followed
    by its numbered references."""
    note = "To cite: logs/CITATION.md and logs/CITATION.bib of the output folder."
    parts = [tag("p", note, class_="note")]
    for text in texts:
        keys = cited_keys(text)
        for block in text.strip().split("\n\n"):
            if block.startswith("# "):
                continue
            lines = block.splitlines()
            items = [line[2:] for line in lines if line.startswith("- ")]
            prose = [line for line in lines if not line.startswith("- ")]
            if prose:
                parts.append(tag("p", _inline(" ".join(prose), keys)))
            if items:
                parts.append(tag("ul", join(tag("li", _inline(item, keys)) for item in items)))
        references = join(tag("li", entry) for entry in reference_list(keys))
        parts += [tag("h4", "References"), tag("ol", references, class_="references")]
    return join(parts)


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
