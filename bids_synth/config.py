"""Sectioned run settings with a TOML round trip.

Precedence: built-in defaults < ``--config-file`` TOML < options given on the command line. Of
the workflows only the top-level builder reads this object; sub-workflows take explicit arguments.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from bids_synth.argtypes import nonnegative_float, nonnegative_int, positive_int, value_problem
from bids_synth.errors import UsageError

#: transforms aligning the other images to the T1w (``--coreg-transform``)
COREG_TRANSFORMS = ("rigid", "affine")
#: how the T1w's brain mask is found (``--brain-mask-method``; auto: the evidence's choice)
BRAIN_MASK_METHODS = ("auto", "morphology", "model")


def _checked(default, check):
    """A setting whose configuration-file value must pass ``check``: a value type of
    :mod:`bids_synth.argtypes` or a tuple of choices."""
    return field(default=default, metadata={"check": check})


@dataclass
class Execution:
    bids_dir: str = ""
    output_dir: str = ""
    analysis_level: str = "participant"
    work_dir: str = ""
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    bids_filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    skip_bids_validation: bool = False
    boilerplate_only: bool = False
    reports_only: bool = False
    write_graph: bool = False
    stop_on_first_crash: bool = False
    run_id: str = ""
    verbosity: int = 0


#: threads of one process at most (ITK, torch): beyond it they pay less than another process
MAX_OMP_NTHREADS = 8


def default_omp_nthreads(nprocs: int) -> int:
    """Threads per process: half the processes' cores (1 to :data:`MAX_OMP_NTHREADS`), so that
    two multi-threaded nodes run at once. A torch node's inference gains 1.4× from 1 to 2 threads
    on a 2-core machine; two 1-thread nodes side by side gain 2×."""
    return max(1, min(nprocs // 2, MAX_OMP_NTHREADS))


@dataclass
class Nipype:
    plugin: str = "MultiProc"
    plugin_args: dict[str, Any] = field(default_factory=dict)
    nprocs: int = _checked(0, nonnegative_int)  # 0: all available cores
    omp_nthreads: int = _checked(0, nonnegative_int)  # 0: default_omp_nthreads(nprocs)
    mem_gb: float = _checked(0.0, nonnegative_float)  # 0: no limit given to the scheduler


@dataclass
class Workflow:
    tasks: list[str] = field(default_factory=list)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task
    coreg_transform: str = _checked("rigid", COREG_TRANSFORMS)
    brain_mask_method: str = _checked("auto", BRAIN_MASK_METHODS)
    n4_shrink_factor: int = _checked(4, positive_int)
    device: str = "auto"


@dataclass
class Seeds:
    random_seed: int = _checked(0, nonnegative_int)


@dataclass
class Config:
    execution: Execution = field(default_factory=Execution)
    nipype: Nipype = field(default_factory=Nipype)
    workflow: Workflow = field(default_factory=Workflow)
    seeds: Seeds = field(default_factory=Seeds)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_empty(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> Config:
        config = cls()
        config.update(data, source="configuration")
        return config

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path))

    def update(self, data: dict[str, dict[str, Any]], *, source: str) -> None:
        """Overwrite settings from a ``{section: {key: value}}`` mapping, rejecting unknown keys."""
        sections = {f.name for f in dataclasses.fields(self)}
        for section, values in data.items():
            if section not in sections or not isinstance(values, dict):
                raise UsageError(f"{source}: unknown section [{section}]")
            target = getattr(self, section)
            known = {f.name: f for f in dataclasses.fields(target)}
            for key, value in values.items():
                if key not in known:
                    raise UsageError(f"{source}: unknown setting {section}.{key}")
                if isinstance(getattr(target, key), list) and not isinstance(value, list):
                    raise UsageError(
                        f"{source}: {section}.{key} must be a list, e.g. {key} = [{json.dumps(value)}]"
                    )
                if problem := _bad_setting(getattr(target, key), value, known[key].metadata):
                    raise UsageError(f"{source}: {section}.{key} = {json.dumps(value)}: {problem}")
                setattr(target, key, value)


def _bad_setting(current, value, metadata) -> str | None:
    """Why ``value`` cannot replace a setting of value ``current`` (checked by its field's
    ``check``, else by type); None if it can."""
    check = metadata.get("check")
    if isinstance(check, tuple):
        return None if value in check else f"must be one of {', '.join(check)}"
    if check:
        return value_problem(check, value)
    kinds = {bool: (bool, "true or false"), int: (int, "an integer"), str: (str, "a string"),
             float: ((int, float), "a number"), dict: (dict, "a table"), list: (list, "a list")}  # fmt: skip
    kind, wanted = kinds[type(current)]
    if isinstance(value, bool) != isinstance(current, bool) or not isinstance(value, kind):
        return f"must be {wanted}"
    return None


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise UsageError(f"configuration file {path} not found") from exc
    except OSError as exc:
        raise UsageError(f"configuration file {path} cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"configuration file {path} is not valid TOML: {exc}") from exc


def _drop_empty(data: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """TOML has no null: leave out unset (empty-string) values."""
    return {
        section: {key: value for key, value in values.items() if value != ""}
        for section, values in data.items()
    }
