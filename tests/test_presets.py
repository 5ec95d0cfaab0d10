"""Every run preset in workflows/ loads and names real settings and nipype plugins."""

from pathlib import Path

import nipype.pipeline.plugins as nipype_plugins
import pytest

from bids_synth.cli.run import read_plugin_file
from bids_synth.config import Config

PRESETS = Path(__file__).resolve().parents[1] / "workflows"
CONFIGS = sorted(PRESETS.glob("configs/*.toml"))
PLUGINS = sorted(PRESETS.glob("plugins/*.yml"))


def test_presets_exist():
    assert CONFIGS and PLUGINS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_presets_load(path):
    config = Config.from_toml(path)
    assert config.workflow.coreg_transform in ("rigid", "affine")


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.name)
def test_plugin_presets_name_nipype_plugins(path):
    plugin, args = read_plugin_file(path)
    assert hasattr(nipype_plugins, f"{plugin}Plugin")
    assert isinstance(args, dict)
