"""HTML building blocks of the reports: escaping, tables, figures and the self-contained page.

Text passed to these helpers is escaped; markup they return is wrapped in :class:`Html`, which
passes through unchanged. Pages carry their CSS inline and images as ``data:`` URIs, so a report
is one file that opens offline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

from bids_synth import __version__


class Html(str):
    """Trusted markup: inserted as is, where plain ``str`` values are escaped."""


def render(value) -> Html:
    """``value`` as markup: :class:`Html` unchanged, anything else escaped (None as an en dash)."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("–" if value is None else str(value)))


def join(parts: Iterable) -> Html:
    return Html("".join(render(part) for part in parts))


def tag(name: str, content="", **attributes) -> Html:
    """``<name attr="…">content</name>``; ``class_`` gives ``class``; None attributes are dropped."""
    attrs = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{html.escape(str(value))}"'
        for key, value in attributes.items()
        if value is not None
    )
    return Html(f"<{name}{attrs}>{render(content)}</{name}>")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption, *, alt: str) -> Html:
    image = Html(f'<img src="{data_uri(png)}" alt="{html.escape(alt)}">')
    return tag("figure", join([image, tag("figcaption", caption)]))


def table(header: list, rows: Iterable[list], *, row_classes: Iterable[str | None] = ()) -> Html:
    """A table with a header row; ``row_classes`` (one per row) gives rows a CSS class."""
    rows = list(rows)
    classes = list(row_classes) or [None] * len(rows)
    head = tag("tr", join(tag("th", cell) for cell in header))
    body = join(
        tag("tr", join(tag("td", cell) for cell in row), class_=row_class)
        for row, row_class in zip(rows, classes, strict=True)
    )
    return tag("div", tag("table", join([tag("thead", head), tag("tbody", body)])), class_="scroll")


def key_values(pairs: Iterable[tuple]) -> Html:
    """A two-column table of labelled values."""
    body = join(tag("tr", join([tag("th", key), tag("td", value)])) for key, value in pairs)
    return tag("table", tag("tbody", body), class_="kv")


def facts(pairs: list[tuple[str, object]], *, class_: str) -> Html:
    """A paragraph of ``label value`` pairs separated by middle dots; empty without pairs."""
    if not pairs:
        return Html("")
    items = [join([f"{label} ", tag("b", value)]) for label, value in pairs]
    return tag("p", Html(" · ".join(items)), class_=class_)


def digest(sha256: str) -> Html:
    """A hash shortened to 12 characters, the whole of it on hover."""
    return tag("code", sha256[:12] + "…", title=sha256)


def details(summary, content) -> Html:
    return tag("details", join([tag("summary", summary), content]))


def badge(status: str) -> Html:
    kind = {"success": "ok", "failed": "bad", "invalid-input": "bad"}.get(status, "warn")
    return tag("span", status, class_=f"badge {kind}")


def section(anchor: str, title: str, content) -> Html:
    return tag("section", join([tag("h2", title), content]), id=anchor)


def page(title: str, subtitle, nav: list[tuple[str, str]], body) -> Html:
    """A complete HTML document: sticky navigation bar, header, body, footer."""
    links = join(tag("a", label, href=f"#{anchor}") for anchor, label in nav)
    head = join([
        Html('<meta charset="utf-8">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        tag("title", title),
        tag("style", Html(CSS)),
    ])  # fmt: skip
    body = join([
        tag("nav", join([tag("span", "bids-synth", class_="brand"), links])),
        tag("header", join([tag("h1", title), tag("p", subtitle, class_="muted")])),
        tag("main", body),
        tag("footer", f"bids-synth {__version__} · self-contained report, works offline"),
    ])  # fmt: skip
    return Html(
        "<!DOCTYPE html>\n"
        + tag("html", join([tag("head", head), tag("body", body)]), lang="en")
        + "\n"
    )


CSS = """
:root { --fg: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #1f6feb; --bg-alt: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.5 -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; }
nav { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 4px 18px;
      align-items: center; padding: 8px 24px; background: #102a43; }
nav a { color: #d9e2ec; text-decoration: none; font-size: 14px; }
nav a:hover { color: #fff; text-decoration: underline; }
nav .brand { color: #fff; font-weight: 600; margin-right: 12px; }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 26px; margin: 0 0 2px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 26px 0 8px; }
h3.session { padding: 3px 10px; border-left: 4px solid var(--accent); background: var(--bg-alt); }
h4 { font-size: 15px; margin: 20px 0 6px; }
.note { font-size: 13px; color: var(--muted); border-left: 3px solid var(--line); padding-left: 10px; }
section { scroll-margin-top: 48px; }
p { margin: 6px 0 10px; }
.muted { color: var(--muted); }
figure { margin: 10px 0 22px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; max-width: 960px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0 14px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--bg-alt); border-bottom: 2px solid var(--line); white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.outlier td { background: #fff4e5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { color: var(--muted); font-weight: 500; white-space: nowrap; }
code, pre { font-family: SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--bg-alt); padding: 10px 12px; overflow-x: auto; border-radius: 4px; }
details { margin: 8px 0 14px; }
summary { cursor: pointer; color: var(--accent); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.ok { background: #e3f9e5; color: #1b7a2f; }
.badge.warn { background: #fff4e5; color: #a35c00; }
.badge.bad { background: #ffe3e3; color: #b42318; }
.score { font-size: 14px; margin: 4px 0 8px; }
ul.warnings li { margin: 4px 0; }
footer { color: var(--muted); font-size: 12px; padding: 30px 24px 40px; }
a { color: var(--accent); }
"""
