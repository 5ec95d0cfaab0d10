"""The rooms of the package and what each may import (README, "Architecture"), read from the
source: every import statement, module level or inside a function."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bids_synth"

#: the pure core: runs on a machine with torch, numpy and safetensors only
CORE = {"nn", "simulate", "errors", "fileio", "progress", "modalities", "refdata", "logs"}
#: science rooms: no workflow engine, no BIDS layout
SCIENCE = {"preproc", "synthesis", "metrics", "models", "training", "resampling"}
PIPELINE_PACKAGES = {"nipype", "bids", "ants"}
ENGINE_ROOMS = {"interfaces", "workflows", "execution", "participant", "group", "cli"}


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imports() -> dict[str, set[str]]:
    """room -> the top-level packages and ``bids_synth`` rooms (prefixed ``.``) it imports."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names = found.setdefault(room_of(path), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "bids_synth" and len(parts) > 1:
                    names.add("." + parts[1])
                elif parts[0] != "bids_synth":
                    names.add(parts[0])
    return found


IMPORTS = imports()


@pytest.mark.parametrize("room", sorted(IMPORTS))
def test_only_the_cli_imports_the_cli(room):
    if room not in {"cli", "__main__"}:
        assert ".cli" not in IMPORTS[room]


@pytest.mark.parametrize("room", sorted(CORE))
def test_the_core_imports_no_pipeline_package_and_no_room_above_it(room):
    assert not IMPORTS[room] & PIPELINE_PACKAGES
    above = {name[1:] for name in IMPORTS[room] if name.startswith(".")} - CORE
    assert not above, f"{room} imports {sorted(above)}"


@pytest.mark.parametrize("room", sorted(SCIENCE))
def test_science_rooms_use_no_workflow_engine(room):
    assert "nipype" not in IMPORTS[room]
    assert not {name[1:] for name in IMPORTS[room] if name.startswith(".")} & ENGINE_ROOMS


def test_nipype_lives_in_the_engine_rooms():
    users = {room for room, names in IMPORTS.items() if "nipype" in names}
    assert users <= ENGINE_ROOMS, sorted(users - ENGINE_ROOMS)
