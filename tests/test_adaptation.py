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


def _denoiser_trained_at(sigma: float) -> torch.nn.Module:
    """A tiny 2.5D residual U-Net trained briefly to remove noise of ``sigma`` from smooth blobs."""
    from bids_synth.nn.factory import build_network
    from bids_synth.nn.trainers import RegressionTrainer

    torch.manual_seed(0)
    network = build_network(
        "unet", in_channels=3, out_channels=1, channels=(8, 16), dims=2, identity_channel=1
    )
    trainer = RegressionTrainer(
        {"generator": network}, lr=3e-3, device=torch.device("cpu"), amp="off", seed=0,
        ssim_weight=0.0, content="l2",
    )  # fmt: skip
    for step in range(80):
        clean = torch.cat([_smooth_volume((3, 24, 24), seed=4 * step + i) for i in range(4)])
        noisy = clean + sigma * torch.randn(clean.shape)
        trainer.train_step(
            {"source": noisy, "target": clean[:, 1:2], "mask": torch.ones(4, 1, 24, 24)}
        )
    return network.eval()


def test_sure_adaptation_fits_a_denoiser_to_another_noise_level_reproducibly():
    """A denoiser trained at σ 0.2 over-smooths an image of σ 0.05; tuning its normalisation
    gains on that image alone lowers its error against the clean image, the same way twice,
    and leaves the trained network as it was."""
    from bids_synth.nn.slabs import predict_slabs

    network = _denoiser_trained_at(0.2)
    clean = _smooth_volume(seed=99)
    sigma = 0.05
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=clean.shape)).float()
    noisy = clean + sigma * noise
    mask = torch.ones(clean.shape[1:], dtype=torch.bool)
    settings = SureAdaptation(steps=60, batch_size=4, size=16)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    common = dict(slices=3, settings=settings, multiple=4)
    adapted, info = sure_adapted(network, noisy, mask, sigma, **common)
    again, _ = sure_adapted(network, noisy, mask, sigma, **common)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(adapted.parameters(), again.parameters()))
    assert info["method"] == "sure" and info["steps"] == 60 and info["sigma"] == sigma
    tuned = [name for name, p in adapted.named_parameters() if not torch.equal(p, before[name])]
    gains = {
        f"{name}.{kind}"
        for name, module in adapted.named_modules()
        if "Norm" in type(module).__name__
        for kind, _ in module.named_parameters(recurse=False)
    }
    assert tuned and set(tuned) <= gains  # the convolutions are the trained network's

    def error(net):
        return (predict_slabs(net, noisy, slices=3, multiple=4) - clean).square().mean().item()

    assert error(adapted) < 0.9 * error(network)


def test_adaptation_settings_round_trip_and_refuse_unknown_methods():
    settings = SureAdaptation(steps=10, lr=1e-4)
    assert SureAdaptation.from_dict(settings.as_dict()) == settings
    with pytest.raises(ValueError, match="unknown adaptation method"):
        SureAdaptation.from_dict({"method": "noise2noise"})
