"""Training: a tiny paired problem is learnt, every mode steps, resume is bit-exact, data hooks."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from bids_synth.nn import trainers as trainers_module
from bids_synth.nn.data import BlindSpot, HeldOut, VolumePatches
from bids_synth.nn.loop import ResumeMismatch, fit
from bids_synth.nn.trainers import build_trainer

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two and does not fight other jobs for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smooth_pair(seed: int, shape=(24, 24, 24)):
    """A smooth random volume and an analytic, non-linear mapping of it (the 'target contrast')."""
    v = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 3)
    v = (v / v.std()).astype(np.float32)
    return v[None], (np.tanh(2 * v) + 0.3 * v)[None].astype(np.float32)


def patches(seeds, **kwargs):
    pairs = [smooth_pair(s) for s in seeds]
    options = {"patch": (16, 16, 16), "batch_size": 2, "seed": 0, **kwargs}
    return VolumePatches([s for s, _ in pairs], [t for _, t in pairs], **options)


def test_tiny_paired_problem_is_learnt(tmp_path):
    data = HeldOut(patches([1, 2, 3]), patches([99]))  # validation on a volume never trained on
    trainer = build_trainer(
        "regression",
        architecture="unet",
        device=CPU,
        lr=1e-2,
        seed=0,
        network_kwargs={"channels": (8, 16), "norm": "none"},
    )
    history = fit(trainer, data, epochs=3, steps_per_epoch=25, workdir=tmp_path, run={})
    # baseline: the error of predicting each held-out patch's mean
    baseline = np.mean(
        [float((b["target"] - b["target"].mean()).abs().mean()) for b in data.validation_batches(4)]
    )
    assert history[-1]["train_content"] < 0.5 * history[0]["train_content"]
    assert history[-1]["val_mae"] < 0.3 * baseline
    assert (tmp_path / "history.csv").read_text().count("\n") == 4


@pytest.mark.parametrize(
    ("mode", "architecture", "kwargs"),
    [
        ("pix2pix", "unet", {"channels": (4, 8)}),
        ("cyclegan", "resunet", {"channels": (4, 8)}),
        ("wgan-gp", "red", {"width": 4, "depth": 2}),
    ],
)
def test_every_mode_takes_a_finite_step(mode, architecture, kwargs):
    trainer = build_trainer(
        mode,
        architecture=architecture,
        network_kwargs=kwargs,
        device=CPU,
        seed=0,
        critic_layers=1,
        **({"critic_steps": 2} if mode == "wgan-gp" else {}),
    )
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    losses = trainer.train_step(next(patches([1], paired=mode != "cyclegan").epoch_batches(0, 1)))
    assert all(np.isfinite(v) for v in losses.values()) and "loss" in losses
    after = trainer.generator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("mode", "architecture", "kwargs"),
    [
        ("regression", "unet", {"channels": (4, 8)}),
        ("regression", "unet", {"channels": (4, 8), "average_decay": 0.9}),
        ("wgan-gp", "red", {"width": 4, "depth": 2, "critic_steps": 1}),
    ],
)
def test_resume_continues_the_same_trajectory(tmp_path, mode, architecture, kwargs):
    def run(workdir, epochs, resume=False):
        options = dict(kwargs)
        trainer_options = {
            key: options.pop(key) for key in ("critic_steps", "average_decay") if key in options
        }
        trainer = build_trainer(
            mode,
            architecture=architecture,
            network_kwargs=options,
            device=CPU,
            seed=3,
            critic_layers=1,
            **trainer_options,
        )
        history = fit(
            trainer,
            patches([1, 2]),
            epochs=epochs,
            steps_per_epoch=2,
            workdir=workdir,
            run={"mode": mode},
            resume=resume,
            validation_draws=1,
        )
        return trainer, history

    straight, straight_history = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)  # "interrupted" after one epoch
    resumed, resumed_history = run(tmp_path / "b", 3, resume=True)
    resumed_networks = resumed.checkpointed_networks()
    for name, net in straight.checkpointed_networks().items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, resumed_networks[name].state_dict()[key]), f"{name}.{key}"
    assert [r["train_loss"] for r in resumed_history] == [r["train_loss"] for r in straight_history]
    assert len(list((tmp_path / "b" / "checkpoints").glob("epoch-*"))) == 1


def test_the_weight_average_follows_the_steps_and_predicts():
    trainer = build_trainer(
        "regression",
        architecture="unet",
        network_kwargs={"channels": (4, 8)},
        device=CPU,
        lr=1e-2,
        average_decay=0.75,
    )
    batches = patches([1, 2]).epoch_batches(0, 3)
    assert trainer.inference_generator is trainer.generator  # nothing averaged yet
    expected = None
    for batch in batches:
        trainer.train_step(batch)
        weights = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
        expected = (
            weights
            if expected is None
            else {k: 0.75 * expected[k] + 0.25 * weights[k] for k in weights}
        )
    averaged = trainer.inference_generator.state_dict()
    assert trainer.inference_generator is not trainer.generator
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value)
    source = next(patches([3]).epoch_batches(0, 1))["source"]
    with torch.inference_mode():
        trainer.inference_generator.eval()
        assert torch.equal(trainer.predict(source), trainer.inference_generator(source))


def test_resume_refuses_other_settings(tmp_path):
    def trainer():
        return build_trainer(
            "regression", architecture="red", network_kwargs={"width": 2, "depth": 2}, device=CPU
        )

    fit(
        trainer(),
        patches([1]),
        epochs=1,
        steps_per_epoch=1,
        workdir=tmp_path,
        run={"lr": 1},
        validation_draws=1,
    )
    with pytest.raises(ResumeMismatch, match="lr"):
        fit(
            trainer(),
            patches([1]),
            epochs=2,
            steps_per_epoch=1,
            workdir=tmp_path,
            run={"lr": 2},
            resume=True,
        )


def test_mixed_precision_paths_step_on_cpu(monkeypatch):
    batch = next(patches([1]).epoch_batches(0, 1))
    bf16 = build_trainer(
        "regression",
        architecture="red",
        network_kwargs={"width": 4, "depth": 2},
        device=CPU,
        amp="bf16",
    )
    assert bf16.dtype == torch.bfloat16 and bf16.scaler is None
    assert np.isfinite(bf16.train_step(batch)["loss"])
    monkeypatch.setattr(
        trainers_module, "needs_grad_scaler", lambda device, dtype: True
    )  # the fp16 (CUDA) path
    scaled = build_trainer(
        "pix2pix",
        architecture="red",
        network_kwargs={"width": 4, "depth": 2},
        device=CPU,
        amp="bf16",
        critic_layers=1,
    )
    assert scaled.scaler is not None
    assert (
        np.isfinite(scaled.train_step(batch)["loss"]) and scaled.state_dict()["scaler"]["scale"] > 0
    )
    with pytest.raises(ValueError, match="fp16"):
        build_trainer("regression", architecture="red", network_kwargs={}, device=CPU, amp="fp16")


def test_batches_depend_only_on_seed_and_epoch():
    a, b = patches([1, 2]), patches([1, 2])
    first = list(a.epoch_batches(5, 2))
    assert all(torch.equal(x["source"], y["source"]) for x, y in zip(first, b.epoch_batches(5, 2)))
    assert not torch.equal(first[0]["source"], next(a.epoch_batches(6, 1))["source"])


def test_blind_spot_pairs_hide_only_the_scored_voxels():
    source = torch.randn(2, 1, 16, 16, 16)
    masked, target, mask = BlindSpot(fraction=0.05)(source, np.random.default_rng(0))
    assert torch.equal(target, source)
    assert 0.02 < mask.mean() < 0.08
    changed = masked != source
    assert not changed[mask == 0].any() and changed[mask > 0].float().mean() > 0.99


def test_noise2self_trains_through_the_data_hook(tmp_path):
    volumes = [
        smooth_pair(1)[0]
        + 0.3 * np.random.default_rng(2).standard_normal((1, 24, 24, 24)).astype(np.float32)
    ]
    data = VolumePatches(volumes, patch=(16, 16, 16), batch_size=2, seed=0, pair_fn=BlindSpot(0.02))
    trainer = build_trainer(
        "regression", architecture="unet", network_kwargs={"channels": (4, 8)}, device=CPU
    )
    history = fit(
        trainer, data, epochs=1, steps_per_epoch=2, workdir=tmp_path, run={}, validation_draws=1
    )
    assert np.isfinite(history[-1]["val_mae"])
