"""The training spec: plan, checks, contracts and the settings a resumed run must match."""

from pathlib import Path

import pytest

from bids_synth.errors import UsageError
from bids_synth.simulate.normalisation import CT_SCALE_HU, MR_PERCENTILE
from bids_synth.training.spec import TrainingSpec


def _spec(**options) -> TrainingSpec:
    return TrainingSpec(
        **{"task": "sct", "out": Path("bundle"), "bids_dir": Path("bids"), **options}
    )


def test_plan_makes_epochs_of_val_every_steps_rounded_up():
    assert _spec(epochs=3, steps_per_epoch=7).plan() == (3, 7)
    assert _spec(steps=250, val_every=100).plan() == (3, 100)
    assert _spec(steps=20, val_every=100).plan() == (1, 20)


def test_contracts_take_the_head_model_normalisation():
    inputs, output = _spec().contracts()
    assert inputs["normalization"] == {"method": "percentile-scale", "percentile": MR_PERCENTILE}
    assert output["units"] == "HU" and output["normalization"]["scale"] == CT_SCALE_HU
    denoise = _spec(mode="noise2self", source=("T2w",))
    assert denoise.denoising and denoise.contracts()[1]["suffix"] == "T2w"
    assert denoise.contracts()[1]["normalization"] == {"method": "input"}
    assert denoise.contracts()[0]["grid"] == "acquired" and inputs["grid"] == "spacing"


def test_bids_training_data_are_on_the_grid_the_bundle_sees_at_inference(tmp_path):
    """An LPS image of 2 mm voxels is trained on in RAS at the contract's 1 mm, as
    predict_on_grid would feed it; a denoiser keeps the acquired voxels."""
    import nibabel as nib
    import numpy as np

    from bids_synth.training.sources import load_set

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    lps = np.diag([-2.0, -2.0, 2.0, 1.0])
    for name in ("t1w", "ct"):
        nib.save(nib.Nifti1Image(data, lps), tmp_path / f"{name}.nii.gz")
    entry = {"sources": [tmp_path / "t1w.nii.gz"], "target": tmp_path / "ct.nii.gz", "mask": None}
    sources, target, _ = load_set(entry, *_spec().contracts())
    assert sources.shape == target.shape == (1, 8, 10, 12)
    # x and y flipped to RAS: the data's first voxel (its minimum) is now at the far x/y corner
    assert np.unravel_index(target[0].argmin(), target[0].shape) == (7, 9, 0)
    assert np.unravel_index(target[0].argmax(), target[0].shape) == (0, 0, 11)
    denoise = _spec(mode="noise2self", source=("T1w",))
    sources, target, _ = load_set(entry, *denoise.contracts())
    assert sources.shape == (1, 4, 5, 6)


def test_harmonization_contract_and_source_sites():
    spec = _spec(
        simulated=True, bids_dir=None, target="T1w", target_site=2, source_sites=("random", "1")
    )
    assert spec.harmonizing and not spec.denoising
    assert spec.source_site_numbers() == (None, 1)
    assert spec.contracts()[1]["units"] == "site2 scanner units"
    with pytest.raises(UsageError, match="'random' or a site number"):
        _spec(source_sites=("x",)).source_site_numbers()


def test_run_settings_leave_out_what_a_resume_may_change():
    settings = _spec(steps=10, val_every=4).run_settings()
    assert settings["steps_per_epoch"] == 4 and settings["patch"] == [64, 64, 64]
    assert settings["bids_dir"] == "bids"
    assert not {"out", "device", "epochs", "resume", "command"} & set(settings)
    assert _spec(device="cpu", epochs=99).run_settings() == _spec().run_settings()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"patch": (20, 20, 20)}, "multiple of 8"),
        ({"inference_overlap": 0.95}, "--inference-overlap"),
        ({"arch": "red", "red_depth": 3}, "--red-depth 3"),
        ({"simulated": True, "mode": "noise2self"}, "noise2self trains on real images"),
        ({"target_site": 0, "target": "T1w"}, "add --simulated"),
        ({"lr": 0.0}, "--lr must be positive"),
        ({"validation_draws": 0}, "--validation-draws must be at least 1"),
        ({"seed": -1}, "--seed must be a non-negative integer"),
        ({"channels": ()}, "--channels"),
        ({"channels": (8, 0)}, "--channels"),
        ({"slices": 4}, "--slices must be an odd number"),
        ({"slices": 3, "arch": "red"}, "not with --arch red"),
    ],
)
def test_check_names_the_option(options, message):
    with pytest.raises(UsageError, match=message):
        _spec(**options).check()
