"""Registry of subject-report sections.

A section is a function of one :class:`~bids_synth.reports.session.SessionFiles` that returns
its HTML, or None when the session has nothing for it (the section then does not appear). Each
module of this package registers its own sections with :func:`register`; modules are found and
imported automatically, so a synthesis task adds its section by adding a module here::

    @register("sct", "Synthetic CT", order=40)
    def synthetic_ct(files: SessionFiles) -> Html | None: ...

Sections are shown in increasing ``order``: summary 10, anatomy 20, registration 30, synthesis
tasks 40–80, provenance 90.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from bids_synth.reports.html import Html
from bids_synth.reports.session import SessionFiles

Builder = Callable[[SessionFiles], Html | None]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    order: int
    build: Builder


_REGISTRY: dict[str, Section] = {}


def register(key: str, title: str, *, order: int) -> Callable[[Builder], Builder]:
    """Decorator: add a section builder to the subject report."""

    def add(build: Builder) -> Builder:
        if key in _REGISTRY and _REGISTRY[key].build is not build:
            raise ValueError(f"report section {key!r} is registered twice")
        _REGISTRY[key] = Section(key, title, order, build)
        return build

    return add


def sections() -> list[Section]:
    """Every registered section, in report order (importing this package's modules first)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.key))
