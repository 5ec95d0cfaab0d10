import pytest

from bids_synth.config import Config
from bids_synth.errors import UsageError


def test_toml_round_trip(tmp_path):
    config = Config()
    config.execution.participant_label = ["01", "02"]
    config.execution.bids_filters = {"t1w": {"acquisition": "mprage"}}
    config.nipype.plugin_args = {"n_procs": 3}
    config.workflow.coreg_transform = "affine"
    config.seeds.random_seed = 7
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert Config.from_toml(path) == config


def test_unknown_settings_are_refused():
    with pytest.raises(UsageError, match="unknown setting workflow.nope"):
        Config.from_dict({"workflow": {"nope": 1}})
    with pytest.raises(UsageError, match=r"unknown section \[extra\]"):
        Config.from_dict({"extra": {}})


def test_invalid_toml_is_a_usage_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[workflow\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        Config.from_toml(path)
