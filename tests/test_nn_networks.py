"""Shapes and input contracts of every network, and the inference fusions."""

import pytest
import torch

from bids_synth.nn.factory import build_network
from bids_synth.nn.fusion import optimize_for_inference


@pytest.mark.parametrize(
    ("name", "kwargs", "in_channels"),
    [
        ("unet", {"channels": (4, 8, 16)}, 1),
        ("resunet", {"channels": (4, 8), "norm": "group", "in_channels": 2}, 2),
        ("unet", {"channels": (4, 8), "norm": "batch"}, 1),
        ("unet", {"channels": (4, 8), "norm": "none", "slices": 3, "in_channels": 2}, 2),
        ("red", {"width": 4, "depth": 4}, 1),
    ],
)
def test_generators_keep_the_input_grid(name, kwargs, in_channels):
    net = build_network(name, **kwargs)
    x = torch.randn(2, in_channels, 16, 16, 12)
    assert net(x).shape == (2, 1, 16, 16, 12)


def test_red_accepts_any_size_and_adds_the_input():
    net = build_network("red", width=4, depth=2)
    for module in net.decoder:
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
    x = torch.randn(1, 1, 9, 11, 13)
    assert torch.equal(net(x), x)  # with a zero decoder only the input shortcut remains


def test_patchgan_scores_patches():
    net = build_network("patchgan", in_channels=2, width=4, layers=2)
    assert net(torch.randn(1, 2, 32, 32, 32)).shape == (1, 1, 6, 6, 6)


def test_2p5d_predicts_each_slice_from_its_own_slab():
    net = build_network("unet", channels=(4, 8), norm="none", slices=3).eval()
    x = torch.randn(1, 1, 8, 8, 10)
    changed = x.clone()
    changed[..., 7] += 1.0
    diff = (net(changed) - net(x)).abs().amax(dim=(0, 1, 2, 3))
    assert torch.all(diff[6:9] > 0) and torch.all(diff[:6] == 0) and diff[9] == 0


def test_input_contracts_are_checked():
    with pytest.raises(ValueError, match="multiple of 4"):
        build_network("unet", channels=(4, 8, 16))(torch.randn(1, 1, 10, 16, 16))
    with pytest.raises(ValueError, match="odd number"):
        build_network("unet", slices=2)
    with pytest.raises(ValueError, match="even number"):
        build_network("red", depth=3)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("vit")
    with pytest.raises(ValueError, match="unknown norm"):
        build_network("unet", norm="layer")


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_fused_copy_gives_the_same_output(norm):
    torch.manual_seed(0)
    net = build_network("resunet", channels=(4, 8), norm=norm)
    net(torch.randn(2, 1, 8, 8, 8))  # give batch norm running statistics
    net.eval()
    x = torch.randn(2, 1, 16, 16, 16)
    fused = optimize_for_inference(net)
    assert not any(
        isinstance(m, (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d)) for m in fused.modules()
    )
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules()) == (
        norm == "instance"
    )
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-5)
