"""SURE test-time adaptation of 2.5D denoisers (bids_synth.nn.adaptation)."""

import numpy as np
import pytest
import torch

from bids_synth.nn.adaptation import SureAdaptation, sure_adapted, sure_loss


def _smooth_volume(shape=(24, 24, 24), seed=0) -> torch.Tensor:
    blobs = torch.from_numpy(np.random.default_rng(seed).random((1, 1, 4, 4, 4))).float()
    return torch.nn.functional.interpolate(blobs, size=shape, mode="trilinear")[0]


def test_sure_equals_the_true_error_without_the_clean_image():
    """Identity: SURE is σ² (its error) with no clean data; a 3×3 box filter: SURE is within a
    few percent of the mean squared error against the clean slices."""
    torch.manual_seed(0)
    sigma = 0.1
    clean = _smooth_volume((3, 64, 64))[0].reshape(1, 3, 64, 64).expand(8, 3, 64, 64)
    noisy = clean + sigma * torch.randn(clean.shape)
    mask = torch.ones(8, 1, 64, 64)
    generator = torch.Generator().manual_seed(0)

    def identity(x):
        return x[:, 1:2]

    box = torch.nn.Conv2d(3, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        box.weight.zero_()
        box.weight[0, 1] = 1 / 9
    for network, tolerance in ((identity, 0.02), (box, 0.05)):
        with torch.no_grad():
            estimate = sure_loss(network, noisy, mask, sigma, 1e-3, centre=1, generator=generator)
            truth = (network(noisy) - clean[:, 1:2]).square().mean()
        assert estimate.item() == pytest.approx(truth.item(), rel=tolerance)


def test_sure_adaptation_lowers_the_error_reproducibly_and_leaves_the_network():
    from bids_synth.nn.factory import build_network

    torch.manual_seed(0)
    network = build_network(
        "unet", in_channels=3, out_channels=1, channels=(8, 16), dims=2, identity_channel=1
    )
    clean = _smooth_volume()
    sigma = 0.1
    noisy = (
        clean + sigma * torch.from_numpy(np.random.default_rng(1).normal(size=clean.shape)).float()
    )
    mask = torch.ones(clean.shape[1:], dtype=torch.bool)
    settings = SureAdaptation(steps=40, lr=3e-3, batch_size=4, size=16)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    adapted, info = sure_adapted(
        network, noisy, mask, sigma, slices=3, settings=settings, multiple=4
    )
    again, _ = sure_adapted(network, noisy, mask, sigma, slices=3, settings=settings, multiple=4)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(adapted.parameters(), again.parameters()))
    assert info["sure_last"] < info["sure_first"] and info["steps"] == 40
    assert info["method"] == "sure" and info["sigma"] == sigma

    from bids_synth.nn.slabs import predict_slabs

    def error(net):
        return (predict_slabs(net, noisy, slices=3, multiple=4) - clean).square().mean().item()

    assert error(adapted) < 0.8 * error(network)


def test_adaptation_settings_round_trip_and_refuse_unknown_methods():
    settings = SureAdaptation(steps=10, lr=1e-4)
    assert SureAdaptation.from_dict(settings.as_dict()) == settings
    with pytest.raises(ValueError, match="unknown adaptation method"):
        SureAdaptation.from_dict({"method": "noise2noise"})
