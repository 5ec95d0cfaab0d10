"""``bids-synth train`` end to end: BIDS pairs and simulated pairs → a loadable bundle; resume."""

import csv
import json
import logging

import numpy as np
import pytest
import torch
from test_import_synthrad import write_patient

import bids_synth.simulate
from bids_synth.cli import main as cli
from bids_synth.models.bundle import Bundle
from bids_synth.nn.inference import predict_volume

TINY = [
    "--channels",
    "4",
    "8",
    "--patch",
    "16",
    "16",
    "16",
    "--batch-size",
    "2",
    "--device",
    "cpu",
    "--validation-draws",
    "1",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two and does not fight other jobs for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bids_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    for i in range(3):
        write_patient(root / "synthrad" / f"1BA00{i}", shape=(20, 18, 16), seed=i)
    assert cli(["import-synthrad", str(root / "synthrad"), str(root / "bids")]) == 0
    return root / "bids"


def test_train_writes_a_loadable_bundle_and_resumes(bids_dir, tmp_path, caplog):
    out = tmp_path / "bundle"
    args = [
        "train",
        "--task",
        "sct",
        "--out",
        str(out),
        "--bids-dir",
        str(bids_dir),
        "--source",
        "T1w",
        "--target",
        "CT",
        "--val-every",
        "1",
        *TINY,
    ]
    assert cli([*args, "--steps", "2"]) == 0
    bundle = Bundle.read(out)
    assert bundle.ref == "sct-unet@0.1.0" and bundle.meta["training"]["data"]["kind"] == "bids"
    assert bundle.meta["metrics"][0]["dataset"] == "held-out subject sub-1BA002"
    assert bundle.meta["output"]["units"] == "HU" and bundle.meta["training"]["command"].startswith(
        "bids-synth train"
    )
    for name in ("MODEL_CARD.md", "training_log.csv", "training_curves.png"):
        assert (out / name).stat().st_size > 0
    volume = np.random.default_rng(0).random((20, 18, 16)).astype(np.float32)
    prediction, info = predict_volume(
        bundle.load_network(),
        volume,
        patch=(16, 16, 16),
        device="cpu",
        input_norm=bundle.meta["input"]["normalization"],
        output_norm=bundle.meta["output"]["normalization"],
    )
    assert prediction.shape == volume.shape and info["device"] == "cpu"

    with caplog.at_level(logging.WARNING, logger="bids_synth"):
        assert cli([*args, "--out", str(tmp_path / "fresh"), "--steps", "1", "--resume"]) == 0
    assert "no checkpoint in" in caplog.text  # a fresh start, said out loud
    assert cli([*args, "--steps", "3", "--resume", "--lr", "0.1"]) == 2  # other settings: refused
    assert cli([*args, "--steps", "3", "--resume"]) == 0
    rows = list(csv.DictReader((out / "training_log.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]


def test_noise2self_and_cyclegan_modes_run(bids_dir, tmp_path):
    for mode in ("noise2self", "cyclegan"):
        out = tmp_path / mode
        assert (
            cli(
                [
                    "train",
                    "--task",
                    "denoise",
                    "--out",
                    str(out),
                    "--bids-dir",
                    str(bids_dir),
                    "--mode",
                    mode,
                    "--arch",
                    "resunet",
                    "--steps",
                    "1",
                    *TINY,
                ]
            )
            == 0
        )
        meta = Bundle.read(out).meta
        assert meta["training"]["mode"] == mode
        if mode == "noise2self":  # a denoiser runs on the voxels it was trained on
            assert meta["input"]["grid"] == "acquired" and meta["input"]["spacing_mm"] == [1.0] * 3


def test_usage_errors(tmp_path, bids_dir, capsys):
    base = [
        "train",
        "--task",
        "sct",
        "--out",
        str(tmp_path / "b"),
        "--bids-dir",
        str(bids_dir),
        "--device",
        "cpu",
    ]
    assert cli([*base, "--patch", "20", "20", "20"]) == 2
    assert cli([*base, "--arch", "red", "--red-depth", "3"]) == 2
    simulated = ["train", "--task", "sct", "--out", str(tmp_path / "s"), "--simulated"]
    assert cli([*simulated, "--spacing", "6", "--patch", "48", "48", "48"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert cli([*base, "--target", "FLAIR"]) == 4
    assert cli([*base, "--version", "banana"]) == 2  # before any data is read or trained on
    assert "invalid version 'banana'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit) as refused:
        cli(["train", "--task", "nosuch", "--out", str(tmp_path / "n"), "--simulated"])
    assert refused.value.code == 2 and "invalid choice: 'nosuch'" in capsys.readouterr().err
    assert (
        cli(["train", "--task", "sct", "--out", str(tmp_path / "b"), "--bids-dir", str(tmp_path)])
        == 3
    )


class FakeTrainingPairs:
    """The head-model contract: MR ÷ its 99.5th percentile, CT in HU/1000, deterministic per seed."""

    def __init__(self, source, target, *, patch, batch_size, seed, device="cpu", **options):
        self.shape, self.batch_size, self.seed = patch, batch_size, seed

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            mr = 300 + 100 * torch.rand((self.batch_size, 1, *self.shape), generator=generator)
            scale = torch.quantile(mr.flatten(1), 0.995, dim=1).view(-1, 1, 1, 1, 1)
            yield {
                "source": mr / scale,
                "target": (4 * mr - 1200) / 1000,
                "mask": torch.ones_like(mr),
            }


def test_simulated_training_on_head_model_pairs(tmp_path, monkeypatch):
    monkeypatch.setattr(bids_synth.simulate, "TrainingPairs", FakeTrainingPairs, raising=False)
    out = tmp_path / "sim"
    assert (
        cli(
            [
                "train",
                "--task",
                "sct",
                "--out",
                str(out),
                "--simulated",
                "--arch",
                "red",
                "--steps",
                "2",
                *TINY,
            ]
        )
        == 0
    )
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["training"]["data"]["kind"] == "simulated" and meta["architecture"]["name"] == "red"
    assert 0 < meta["metrics"][0]["value"] < 2000  # MAE in HU on held-out simulated draws
