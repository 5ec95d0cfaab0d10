"""Synthesis tasks plug into the session workflow through this registry.

A task module in this package defines ``TASK = Task(...)``. Its ``build`` returns a
:class:`TaskBranch` for one participant/session (or ``None``, after logging why, when the
session lacks an input the task needs): a workflow whose ``inputnode`` fields are fed from the
session's :data:`PROVIDERS` and whose ``outputnode`` fields are published as derivatives.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from nipype.pipeline import engine as pe

from bids_synth.argtypes import value_problem
from bids_synth.errors import UsageError

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


def _option_actions(task: Task) -> dict[str, argparse.Action]:
    """The command-line options of ``task`` by key (their dest without the ``<name>_`` prefix)."""
    parser = argparse.ArgumentParser(add_help=False)
    if task.add_arguments:
        task.add_arguments(parser.add_argument_group(task.name))
    prefix = f"{task.name}_"
    return {a.dest[len(prefix) :]: a for a in parser._actions if a.dest.startswith(prefix)}


def check_task_options(given, *, source: str) -> None:
    """Refuse, with one :class:`UsageError` line, task options (``workflow.task_options`` of a
    configuration file) that the command line could not have given: an unknown task or key, a
    value of the wrong type or outside the option's choices."""
    tasks = registered_tasks()
    if not isinstance(given, dict):
        raise UsageError(f"{source}: workflow.task_options must be a table of tables")
    for name, options in given.items():
        where = f"workflow.task_options.{name}"
        if name not in tasks:
            raise UsageError(f"{source}: unknown task {where} (known: {', '.join(tasks)})")
        if not isinstance(options, dict):
            raise UsageError(f"{source}: {where} must be a table of options")
        actions = _option_actions(tasks[name])
        for key, value in options.items():
            if key not in actions:
                raise UsageError(
                    f"{source}: unknown option {where}.{key} (known: {', '.join(actions)})"
                )
            if problem := _bad_value(actions[key], value):
                flag = actions[key].option_strings[0]
                raise UsageError(
                    f"{source}: {where}.{key} = {json.dumps(value)}: {problem} ({flag})"
                )


def _bad_value(action: argparse.Action, value) -> str | None:
    """Why the command line could not give ``value`` to ``action``; None when it could."""
    several = action.nargs in ("+", "*")
    if several != isinstance(value, list):
        return "must be a list" if several else "must be a single value"
    for item in value if several else [value]:
        if problem := value_problem(action.type, item):
            return problem.replace("must", "each value must", 1) if several else problem
        if action.choices and item not in action.choices:
            return f"must be one of {', '.join(map(str, action.choices))}"
    return None
