"""Sliding-window inference: exactness, layout, normalisation, flips and out-of-memory fallbacks."""

import numpy as np
import pytest
import torch
from torch import nn

from bids_synth.nn.factory import build_network
from bids_synth.nn.inference import (
    gaussian_importance,
    next_fallback,
    predict_volume,
    window_starts,
)


def pointwise_net() -> nn.Module:
    """Fully convolutional with a 1-voxel receptive field: windowed output must equal the whole-volume one."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(2, 8, 1), nn.InstanceNorm3d(8, affine=False), nn.Tanh(), nn.Conv3d(8, 1, 1)
    )


def volume(shape=(37, 29, 23), channels=2):
    return np.random.default_rng(0).standard_normal((channels, *shape)).astype(np.float32)


def test_windows_and_weights_are_monais():
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    assert window_starts(20, 32, 0.5) == [0]
    assert window_starts(32, 32, 0.5) == [0]
    inferers = pytest.importorskip("monai.inferers.utils")
    torch.testing.assert_close(
        gaussian_importance((8, 12, 9)),
        inferers.compute_importance_map((8, 12, 9), mode="gaussian"),
    )
    interval = inferers._get_scan_interval((100, 45, 32), (32, 16, 32), 3, (0.5, 0.25, 0.5))
    monai_corners = {
        tuple(int(s.start) for s in window)
        for window in inferers.dense_patch_slices((100, 45, 32), (32, 16, 32), interval)
    }
    ours = {
        (a, b, c)
        for a in window_starts(100, 32, 0.5)
        for b in window_starts(45, 16, 0.25)
        for c in window_starts(32, 32, 0.5)
    }
    assert ours == monai_corners


@pytest.mark.parametrize("batch_size", [1, 3])
def test_windows_blend_to_the_full_volume_forward(batch_size):
    net = nn.Sequential(nn.Conv3d(2, 8, 1), nn.Tanh(), nn.Conv3d(8, 1, 1))
    x = volume()
    out, info = predict_volume(
        net, x, patch=(16, 16, 16), overlap=0.25, batch_size=batch_size, device="cpu"
    )
    with torch.inference_mode():
        full = net(torch.from_numpy(x)[None])[0].numpy()
    assert out.shape == full.shape == (1, 37, 29, 23)
    np.testing.assert_allclose(out, full, atol=1e-5)
    assert info["device"] == "cpu" and info["windows"] == 3 * 3 * 2 and info["fallbacks"] == []


def test_unet_windows_match_the_whole_volume_inside_each_windows_interior():
    torch.manual_seed(0)
    net = build_network("unet", channels=(4, 8), norm="none").eval()
    x = volume((24, 16, 16), channels=1)[0]
    out, _ = predict_volume(net, x, patch=(16, 16, 16), overlap=0.5, device="cpu")
    with torch.inference_mode():
        full = net(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert out.shape == x.shape
    # the middle slab along axis 0 is interior to the central window, whose weight dominates there
    assert np.abs(out - full)[10:14, 6:10, 6:10].max() < 0.05 * np.abs(full).max()


def test_small_volumes_are_padded_and_cropped_back():
    x = volume((7, 6, 5), channels=1)[0]
    out, info = predict_volume(
        build_network("unet", channels=(4, 8)), x, patch=(8, 8, 8), device="cpu"
    )
    assert out.shape == x.shape and np.isfinite(out).all() and info["windows"] == 1


def test_fused_channels_last_prediction_equals_the_plain_network():
    torch.manual_seed(1)
    net = build_network("unet", channels=(4, 8)).eval()
    x = volume((20, 20, 20), channels=1)[0]
    fast, _ = predict_volume(net, x, patch=(16, 16, 16), device="cpu")
    plain, _ = predict_volume(net, x, patch=(16, 16, 16), device="cpu", channels_last=False)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert any(
        isinstance(m, nn.InstanceNorm3d) for m in net.modules()
    )  # the caller's network is untouched
    assert next(net.parameters()).is_contiguous()


@pytest.mark.parametrize(
    "input_norm",
    [
        {"method": "percentile-scale", "percentile": 99.5},
        {"method": "percentile", "low": 1, "high": 99},
    ],
)
def test_normalisation_and_its_inverse_round_trip(input_norm):
    identity = nn.Conv3d(1, 1, 1, bias=False)
    nn.init.ones_(identity.weight)
    x = 200 + 50 * volume((12, 12, 12), channels=1)[0]
    out, _ = predict_volume(
        identity,
        x,
        patch=(8, 8, 8),
        device="cpu",
        input_norm=input_norm,
        output_norm={"method": "input"},
    )
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-3)
    hu, _ = predict_volume(
        identity,
        x,
        patch=(8, 8, 8),
        device="cpu",
        input_norm={"method": "zscore"},
        output_norm={"method": "scale", "scale": 1000.0},
    )
    foreground = x[x > x.min()]  # the minimum is taken as background
    np.testing.assert_allclose(
        hu, 1000 * (x - foreground.mean()) / foreground.std(), rtol=1e-4, atol=1e-2
    )


def test_flip_tta_runs_four_passes_and_is_exact_for_a_pointwise_net():
    net = pointwise_net()
    x = volume((16, 16, 16))
    plain, _ = predict_volume(net, x, patch=(16, 16, 16), device="cpu")
    tta, info = predict_volume(net, x, patch=(16, 16, 16), device="cpu", tta_flip=True)
    assert info["passes"] == 4
    np.testing.assert_allclose(tta, plain, atol=1e-5)


class RunsOutOfMemoryAboveOnePatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1)

    def forward(self, x):
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x)


def test_out_of_memory_halves_the_patch_batch_and_reports_it(caplog):
    x = volume((16, 16, 16), channels=1)[0]
    net = RunsOutOfMemoryAboveOnePatch()
    out, info = predict_volume(net, x, patch=(8, 8, 8), batch_size=4, device="cpu")
    assert (
        info["batch_size"] == 1 and len(info["fallbacks"]) == 2 and "out of memory" in caplog.text
    )
    reference, _ = predict_volume(net, x, patch=(8, 8, 8), batch_size=1, device="cpu")
    np.testing.assert_array_equal(out, reference)


def test_fallback_policy_ends_on_cpu():
    gpu = torch.device("cuda:0")
    assert next_fallback(gpu, 8) == (gpu, 4)
    assert next_fallback(gpu, 1) == (torch.device("cpu"), 1)
    with pytest.raises(MemoryError):
        next_fallback(torch.device("cpu"), 1)
