"""Synthesis tasks plug into the session workflow through this registry.

A task module in this package defines ``TASK = Task(...)``. Its ``build`` returns a
:class:`TaskBranch` for one participant/session (or ``None``, after logging why, when the
session lacks an input the task needs): a workflow whose ``inputnode`` fields are fed from the
session's :data:`PROVIDERS` and whose ``outputnode`` fields are published as derivatives.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from nipype.pipeline import engine as pe

#: what a session offers to the tasks: preprocessing outputs and the raw images
#: (``<suffix>_registered``: aligned to the T1w grid; ``<suffix>_raw``: as acquired)
PROVIDERS = ("t1w_preproc", "head_mask", "brain_mask", "<suffix>_registered", "<suffix>_raw")


@dataclass
class TaskBranch:
    workflow: pe.Workflow
    inputs: dict[str, str]  # inputnode field -> provider key (see PROVIDERS)
    outputs: dict[
        str, dict
    ]  # outputnode field -> derivative spec: entities, sources, metadata, dtype


@dataclass(frozen=True)
class Task:
    name: str
    help: str
    #: build(*, unit, options, omp_nthreads, seed, device, name) -> TaskBranch | None
    build: Callable[..., TaskBranch | None]
    #: adds the task's options to its argument group; their dests start with ``<name>_``
    add_arguments: Callable[[argparse._ArgumentGroup], None] | None = None
    descriptions: dict[str, str] = field(default_factory=dict)  # desc- values it writes
    #: group-level step run by ``bids-synth ... group --tasks <name>``: group(config) -> None
    group: Callable | None = None
    #: reads its raw inputs' sidecars (:func:`bids_synth.bids.read_sidecar`): a participant
    #: whose sidecar is unusable is then skipped with one line
    reads_sidecars: bool = False


@cache
def registered_tasks() -> dict[str, Task]:
    """Every task module of this package, by task name."""
    tasks = {}
    for module in pkgutil.iter_modules(__path__):
        task = getattr(importlib.import_module(f"{__name__}.{module.name}"), "TASK", None)
        if isinstance(task, Task):
            tasks[task.name] = task
    return dict(sorted(tasks.items()))


def task_options(task: Task, args: argparse.Namespace) -> dict:
    """The options of ``task`` given on the command line, without the ``<name>_`` prefix."""
    prefix = f"{task.name}_"
    return {
        key[len(prefix) :]: value
        for key, value in vars(args).items()
        if key.startswith(prefix) and value is not None
    }
