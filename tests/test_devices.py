"""The one device resolver: every user device string becomes a torch device through it."""

import numpy as np
import pytest
import torch

from bids_synth.nn.devices import resolve_device, uses_gpu


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize(("gpus", "expected"), [(0, "cpu"), (2, "cuda")])
def test_auto_is_a_gpu_when_there_is_one(monkeypatch, gpus, expected):
    fake_gpus(monkeypatch, gpus)
    assert resolve_device("auto") == torch.device(expected)
    assert uses_gpu("auto") is (expected == "cuda")


def test_cuda_index_is_checked_against_the_gpus_present(monkeypatch):
    fake_gpus(monkeypatch, 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(
        ValueError, match=r"^device cuda:2 requested but only 2 CUDA GPU\(s\) found"
    ):
        resolve_device("cuda:2")
    fake_gpus(monkeypatch, 0)
    with pytest.raises(ValueError, match="^device cuda requested but no CUDA GPU is available"):
        resolve_device("cuda")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "CPU", "mps", "", "cpu "])
def test_invalid_device_strings_are_one_line_errors(spec):
    with pytest.raises(ValueError, match="^invalid device .*expected auto") as error:
        resolve_device(spec)
    assert "\n" not in str(error.value)


def test_a_torch_device_passes_through():
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_self_supervised_methods_take_auto(monkeypatch):
    """The default --device auto reaches SMORE and the self-supervised denoiser as a string."""
    from bids_synth.synthesis.denoising import self_supervised_denoise
    from bids_synth.synthesis.superresolution import smore

    fake_gpus(monkeypatch, 0)
    rng = np.random.default_rng(0)
    thick = rng.random((24, 24, 8)).astype(np.float32)
    _, _, info = smore(thick, np.diag([1.0, 1.0, 3.0, 1.0]), device="auto", steps=2)
    assert info["device"] == "cpu"
    volume = rng.random((16, 16, 16)).astype(np.float32)
    _, info = self_supervised_denoise(volume, np.ones_like(volume), device="auto", steps=2)
    assert info["device"] == "cpu"


@pytest.mark.parametrize("command", ["run", "simulate", "train"])
def test_every_command_refuses_a_bad_device_with_one_line(tmp_path, capsys, command):
    from bids_synth.cli import main

    argv = {
        "run": [str(tmp_path), str(tmp_path / "out"), "participant", "--tasks", "superres"],
        "simulate": ["simulate", str(tmp_path / "sim")],
        "train": ["train", "--task", "sct", "--simulated", "--source", "T1w", "--target", "CT",
                  "--out", str(tmp_path / "model")],
    }[command]  # fmt: skip
    (tmp_path / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    assert main([*argv, "--device", "tpu:0"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "invalid device 'tpu:0'" in errors[0], errors
