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


def test_a_list_setting_given_as_a_string_is_one_line(tmp_path):
    from bids_synth.config import Config
    from bids_synth.errors import UsageError

    path = tmp_path / "run.toml"
    path.write_text('[workflow]\ntasks = "sct"\n')
    with pytest.raises(UsageError, match=r'workflow.tasks must be a list, e.g. tasks = \["sct"\]'):
        Config.from_toml(path)


@pytest.mark.parametrize(
    ("section", "setting", "message"),
    [
        ("nipype", "nprocs = -2", "nipype.nprocs = -2: must be a non-negative integer"),
        ("nipype", "mem_gb = -1", "nipype.mem_gb = -1: must be a non-negative number"),
        ("nipype", "nprocs = 1.5", "nipype.nprocs = 1.5: must be a non-negative integer"),
        ("workflow", "coreg_transform = 'bogus'", "must be one of rigid, affine"),
        ("workflow", "brain_mask_method = 'bet'", "must be one of auto, morphology, model"),
        ("workflow", "n4_shrink_factor = 0", "n4_shrink_factor = 0: must be a positive integer"),
        ("seeds", "random_seed = -1", "random_seed = -1: must be a non-negative integer"),
        ("execution", "skip_bids_validation = 1", "must be true or false"),
    ],
)
def test_settings_of_a_config_file_are_checked(tmp_path, section, setting, message):
    path = tmp_path / "run.toml"
    path.write_text(f"[{section}]\n{setting}\n")
    with pytest.raises(UsageError, match=message):
        Config.from_toml(path)


def test_a_config_file_that_is_a_folder_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="cannot be read"):
        Config.from_toml(tmp_path)
