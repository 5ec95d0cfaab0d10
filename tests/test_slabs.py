"""The 2.5D engine: contrast-randomised label heads, slab batches, slab inference, slab bundles."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bids_synth.nn.slabs import (
    SYMMETRIES,
    RandomisedSlabs,
    _under,
    _undone,
    predict_slabs,
    slab_stack,
)
from bids_synth.simulate.randomise import (
    HEAD_MODEL_REVISION,
    LabelHead,
    Randomisation,
    head_file_name,
    randomised_mr,
)
from bids_synth.simulate.tissues import Tissue
from bids_synth.training.head_window import HeadWindow, heads_seen, window_at, window_order


def _shell_head(size: int = 40) -> LabelHead:
    """Concentric shells: skin, bone, CSF, GM, WM (a tiny head without simulation)."""
    axes = np.indices((size, size, size)) - (size - 1) / 2
    radius = np.sqrt((axes**2).sum(0))
    labels = np.zeros((size,) * 3, np.uint8)
    for tissue, outer in [
        (Tissue.SKIN, 18),
        (Tissue.CORTICAL_BONE, 16),
        (Tissue.CSF, 13),
        (Tissue.GM, 11),
        (Tissue.WM, 8),
    ]:
        labels[radius < outer] = tissue
    hu = {
        Tissue.BACKGROUND: -1000,
        Tissue.SKIN: 35,
        Tissue.CORTICAL_BONE: 1500,
        Tissue.CSF: 8,
        Tissue.GM: 40,
        Tissue.WM: 27,
    }
    ct = np.vectorize(hu.get)(labels).astype(np.float16)
    physics = np.stack([labels * 0.1, 1.0 - labels * 0.05]).astype(np.float16)
    return LabelHead(labels, ct, physics, 1.0, physics_names=("T1w", "T2w"))


def _tiny_recipe(recipe_id: str, **changes):
    """``RECIPES[recipe_id]`` at test size (and every recipe it continues), trained on one phantom
    head, validated on another."""
    import dataclasses

    from bids_synth.training.recipes import RECIPES

    def tiny(recipe):
        return dataclasses.replace(
            recipe,
            base=recipe.base and tiny(recipe.base),
            train_heads=(("phantom", 1),),
            validation_heads=(("phantom", 2),),
            slices=3,
            size=48,
            batch_size=2,
            channels=(4, 8),
            steps_per_epoch=2,
        )

    return dataclasses.replace(tiny(RECIPES[recipe_id]), **changes)


def _premade_heads(*workdirs: Path) -> None:
    """The tiny recipes' two phantom heads in each of ``workdirs`` (no simulation in the tests)."""
    for workdir in workdirs:
        (workdir / "heads").mkdir(parents=True)
        for seed in (1, 2):
            _shell_head().save(workdir / "heads" / head_file_name("phantom", seed))


def _started_from_parent(parent, child, tmp_path: Path) -> tuple:
    """Train ``parent`` one epoch and start the fine-tune ``child`` from its seed: the parent's
    history and the trainers of both, each loaded from its latest checkpoint."""
    from bids_synth.nn.checkpoint import load_checkpoint
    from bids_synth.training.recipes import build_trainer, run_recipe, write_seed_checkpoint

    _premade_heads(tmp_path / "parent", tmp_path / "child")
    history = run_recipe(parent, tmp_path / "parent", epochs=1)
    seed = write_seed_checkpoint(parent, tmp_path / "parent", tmp_path / "seed")
    run_recipe(child, tmp_path / "child", epochs=1, seed_checkpoint=seed)  # the start only
    trainers = build_trainer(parent), build_trainer(child)
    for trainer, workdir in zip(trainers, ("parent", "child")):
        load_checkpoint(tmp_path / workdir / "checkpoints", trainer)
    return history, *trainers


def _draw(head, seed, params=None):
    return randomised_mr(
        head,
        np.random.default_rng(seed),
        torch.Generator().manual_seed(seed),
        params or Randomisation(),
    )[0]


def test_randomised_contrast_varies_per_draw_and_repeats_per_seed():
    head = _shell_head()
    gmm_only = Randomisation(physics_share=0.0, thick_share=0.0, noise_range=(0.0, 0.0))
    draws = [_draw(head, seed, gmm_only) for seed in range(6)]
    wm, csf = head.labels == Tissue.WM, head.labels == Tissue.CSF
    contrast = [float(d[wm].mean() - d[csf].mean()) for d in draws]
    assert (
        max(contrast) > 0.1 and min(contrast) < -0.1
    )  # WM brighter than CSF in some, darker in others
    assert torch.equal(_draw(head, 3), _draw(head, 3))
    assert not torch.equal(_draw(head, 3), _draw(head, 4))
    inside = draws[0][torch.from_numpy(head.head)]
    low, high = np.percentile(inside.numpy(), [0.5, 99.5])
    assert low == pytest.approx(0.0, abs=0.1)  # head-percentile normalisation before the gamma


def test_slab_batches_are_shaped_seeded_and_physical():
    heads = [_shell_head()]
    source = RandomisedSlabs(heads, heads, slices=3, size=48, batch_size=2, seed=5)
    first = list(source.epoch_batches(0, 3))
    again = list(source.epoch_batches(0, 3))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, again) for k in a)
    batch = first[0]
    assert batch["source"].shape == (2, 3, 48, 48)
    assert batch["target"].shape == batch["mask"].shape == (2, 1, 48, 48)
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    assert batch["target"].min() >= -1.001 and batch["target"].max() <= 1.501  # HU / 1000
    assert not torch.equal(first[0]["source"], list(source.epoch_batches(1, 1))[0]["source"])


def test_slabs_of_several_inputs_draw_one_image_per_contrast():
    heads = [_shell_head()]
    source = RandomisedSlabs(
        heads, heads, slices=3, size=48, batch_size=2, seed=5, inputs=("T1w", "T2w")
    )
    first, again = (list(source.epoch_batches(0, 2)) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, again) for k in a)
    batch = first[0]
    assert batch["source"].shape == (2, 6, 48, 48)  # T1w slices, then T2w slices
    assert batch["target"].shape == batch["mask"].shape == (2, 1, 48, 48)
    assert batch["target"].min() >= -1.001 and batch["target"].max() <= 1.501
    t1w, t2w = batch["source"][:, 1], batch["source"][:, 4]
    assert not torch.allclose(t1w, t2w)
    physics_only = Randomisation(physics_share=1.0, thick_share=0.0, noise_range=(0.0, 0.0))
    source = RandomisedSlabs(
        heads, heads, slices=1, size=48, seed=1, inputs=("T1w", "T2w"), randomisation=physics_only
    )
    (batch,) = source.validation_batches(1)
    ct = batch["target"][:, 0] * 1000
    wm, csf = (ct - 27).abs() < 1, (ct - 8).abs() < 1
    assert wm.any() and csf.any()
    wm_brighter = [  # the shell head's physics T1w has WM above CSF, its T2w the reverse
        float(image[wm].mean() - image[csf].mean()) > 0
        for image in (batch["source"][:, 0], batch["source"][:, 1])
    ]
    assert wm_brighter == [True, False]


def test_slab_stack_replicates_edges():
    volume = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    stack = slab_stack(volume, 0, [0, 3], 3)
    assert stack[0, :, 0, 0].tolist() == [0, 0, 1] and stack[1, :, 0, 0].tolist() == [2, 3, 3]


def test_predict_slabs_fuses_three_orientations():
    centre = torch.nn.Conv2d(5, 1, 1, bias=False)
    with torch.no_grad():
        centre.weight.zero_()
        centre.weight[0, 2] = 1.0  # returns the centre slice: prediction == input
    volume = torch.rand(1, 13, 10, 7)
    out = predict_slabs(centre, volume, slices=5, multiple=8, batch_size=4)
    assert out.shape == volume.shape and torch.allclose(out, volume)


def _shift_network() -> torch.nn.Module:
    """A 3-slice network that moves the centre slice one pixel along its first in-plane axis."""
    shift = torch.nn.Conv2d(3, 1, (3, 1), padding=(1, 0), bias=False)
    with torch.no_grad():
        shift.weight.zero_()
        shift.weight[0, 1, 0, 0] = 1.0  # out[i] = centre[i - 1]
    return shift


def _bright_voxel() -> torch.Tensor:
    volume = torch.zeros(1, 9, 9, 9)
    volume[0, 4, 4, 4] = 1.0
    return volume


def test_median_fusion_keeps_only_what_two_orientations_agree_on():
    """A network that moves the centre slice one pixel along its first in-plane axis moves a
    bright voxel along y in the sagittal slices and along x in the coronal and axial ones: the
    mean smears it (2/3 and 1/3), the median keeps what two orientations agree on; where all
    agree, both fusions are exact."""
    shift, volume = _shift_network(), _bright_voxel()
    common = dict(slices=3, multiple=1, batch_size=4)
    mean = predict_slabs(shift, volume, fusion="mean", **common)[0]
    median = predict_slabs(shift, volume, fusion="median", **common)[0]
    assert mean[5, 4, 4] == pytest.approx(2 / 3) and mean[4, 5, 4] == pytest.approx(1 / 3)
    assert median[5, 4, 4] == 1 and median.sum() == 1
    constant = torch.ones(1, 9, 9, 9)
    for fusion in ("mean", "median"):
        inside = predict_slabs(shift, constant, fusion=fusion, **common)[:, 1:, 1:, 1:]
        assert torch.equal(inside, torch.ones_like(inside))
    with pytest.raises(ValueError, match="fusion"):
        predict_slabs(shift, volume, fusion="max", **common)


def test_lattice_symmetries_are_eight_and_undone():
    x = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)
    images = {tuple(_under(x, s).flatten().tolist()) for s in SYMMETRIES}
    assert len(SYMMETRIES) == len(images) == 8
    assert all(torch.equal(_undone(_under(x, s), s), x) for s in SYMMETRIES)


def test_a_symmetry_ensemble_averages_away_what_a_network_does_along_one_direction():
    """The shift network moves a voxel one pixel along the slab's first in-plane axis; under the
    first two symmetries (identity, transpose) half of it goes along each in-plane axis, under
    four or eight the shifts cancel in direction: the fused result is symmetric about the voxel
    in every axis. A network equivariant to the lattice is left exact."""
    shift, volume = _shift_network(), _bright_voxel()
    common = dict(slices=3, multiple=1, batch_size=4)
    for symmetries in (4, 8):
        out = predict_slabs(shift, volume, symmetries=symmetries, **common)[0]
        for axis in range(3):
            assert out.flip(axis).allclose(out)
        assert out.sum().item() == pytest.approx(1.0) and out[4, 4, 4] == 0
    two = predict_slabs(shift, volume, symmetries=2, **common)[0]
    assert two[5, 4, 4] == pytest.approx(1 / 3) and two[4, 4, 5] == pytest.approx(1 / 3)
    centre = torch.nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        centre.weight.zero_()
        centre.weight[0, 1] = 1.0
    noise = torch.rand(1, 9, 7, 8)
    assert torch.allclose(predict_slabs(centre, noise, symmetries=8, **common), noise)
    with pytest.raises(ValueError, match="symmetries"):
        predict_slabs(shift, volume, symmetries=3, **common)


def test_a_mirror_ensemble_averages_the_left_right_mirror_image_back_in():
    """The shift network moves a voxel along x in the coronal and axial slices: mirrored, along
    −x; averaged, the fused result is symmetric left/right. Along y (the sagittal slices) mirroring
    changes nothing, and a network without a direction is left exact."""
    shift, volume = _shift_network(), _bright_voxel()
    common = dict(slices=3, multiple=1, batch_size=4)
    out = predict_slabs(shift, volume, mirror=True, **common)[0]
    assert out.flip(0).allclose(out) and out.sum().item() == pytest.approx(1.0)
    assert out[5, 4, 4] == pytest.approx(1 / 3) and out[3, 4, 4] == pytest.approx(1 / 3)
    assert out[4, 5, 4] == pytest.approx(1 / 3)
    centre = torch.nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        centre.weight.zero_()
        centre.weight[0, 1] = 1.0
    noise = torch.rand(1, 9, 7, 8)
    assert torch.allclose(predict_slabs(centre, noise, mirror=True, **common), noise)


def test_tiny_25d_unet_learns_a_contrast_swap_in_seconds():
    from bids_synth.nn.factory import build_network
    from bids_synth.nn.trainers import RegressionTrainer

    torch.manual_seed(0)
    net = build_network("unet", in_channels=3, out_channels=1, channels=(8, 16), dims=2)
    trainer = RegressionTrainer(
        {"generator": net}, lr=3e-3, device=torch.device("cpu"), amp="bf16", seed=0, ssim_weight=0.0
    )
    rng = np.random.default_rng(0)

    def batch():
        blobs = torch.from_numpy(rng.random((4, 1, 8, 8))).float()
        x = torch.nn.functional.interpolate(blobs, size=(32, 32), mode="bilinear")
        slab = x.expand(4, 3, 32, 32).contiguous()
        return {"source": slab, "target": 1 - x, "mask": torch.ones_like(x)}

    losses = [trainer.train_step(batch())["loss"] for _ in range(120)]
    assert np.mean(losses[-10:]) < 0.25 * np.mean(losses[:10])


def test_slab_bundle_round_trips_and_predicts_on_any_grid(tmp_path):
    from safetensors.torch import load as load_safetensors

    from bids_synth.errors import ModelBundleError
    from bids_synth.models import Bundle
    from bids_synth.models.bundle import save_bundle
    from bids_synth.models.prediction import predict_on_grid
    from bids_synth.nn.factory import build_network

    torch.manual_seed(0)
    kwargs = {"in_channels": 3, "out_channels": 1, "channels": [4, 8], "dims": 2}
    net = build_network("unet", **kwargs)
    meta = {
        "id": "sct-test-slab",
        "version": "0.0.1",
        "task": "sct",
        "architecture": {"name": "unet", "kwargs": kwargs},
        "inference": {"mode": "slabs", "slices": 3, "axes": [0, 1, 2]},
        "input": {
            "suffixes": ["T1w"],
            "spacing_mm": [1.0] * 3,
            "orientation": "RAS",
            "normalization": {"method": "percentile", "low": 0.5, "high": 99.5},
        },
        "output": {"suffix": "CT", "normalization": {"method": "scale", "scale": 1000.0}},
    }
    bundle = save_bundle(tmp_path / "b", net, meta=meta)
    loaded = Bundle.read(bundle.path).load_network()
    stored = load_safetensors((bundle.path / "model.safetensors").read_bytes())
    assert all(torch.equal(stored[k], v) for k, v in loaded.state_dict().items())
    image = np.random.default_rng(0).random((11, 9, 6)).astype(np.float32)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS: reoriented to RAS and back
    head = np.zeros(image.shape, bool)
    head[2:9, 2:7, 1:5] = True
    first, info = predict_on_grid(bundle, [image], affine, device="auto", mask=head)
    second, _ = predict_on_grid(bundle, [image], affine, device="auto", mask=head)
    assert first.shape == image.shape and np.array_equal(first, second)
    assert info["passes"] == 3 and info["device"] == "cpu" and info["fusion"] == "mean"
    meta["inference"]["symmetries"] = 4
    ensemble = save_bundle(tmp_path / "ensemble", net, meta=meta)
    averaged, info = predict_on_grid(ensemble, [image], affine, device="auto", mask=head)
    assert info["passes"] == 12 and info["symmetries"] == 4 and not np.array_equal(averaged, first)
    meta["inference"].update(symmetries=1, mirror=True)
    mirrored = save_bundle(tmp_path / "mirrored", net, meta=meta)
    both, info = predict_on_grid(mirrored, [image], affine, device="auto", mask=head)
    assert info["passes"] == 6 and info["mirror"] and not np.array_equal(both, first)
    meta["inference"]["mirror"] = "yes"
    vague = save_bundle(tmp_path / "vague", net, meta=meta)
    with pytest.raises(ModelBundleError, match="inference mirror 'yes'"):
        predict_on_grid(vague, [image], affine, device="auto", mask=head)
    meta["inference"].update(symmetries=3, mirror=False)
    odd = save_bundle(tmp_path / "three", net, meta=meta)
    with pytest.raises(ModelBundleError, match="an ensemble of 3 lattice symmetries"):
        predict_on_grid(odd, [image], affine, device="auto", mask=head)
    meta["inference"].update(symmetries=1, adaptation={"method": "sure", "steps": 3, "size": 8})
    adapting = save_bundle(tmp_path / "adapting", net, meta=meta)
    adapted, info = predict_on_grid(adapting, [image], affine, device="auto", mask=head)
    assert info["adaptation"]["steps"] == 3 and info["adaptation"]["sigma"] > 0
    assert not np.array_equal(adapted, first)
    unadapted, info = predict_on_grid(
        adapting, [image], affine, device="auto", mask=head, adapt_steps=0
    )
    assert np.array_equal(unadapted, first) and "adaptation" not in info
    _, info = predict_on_grid(bundle, [image], affine, device="auto", mask=head, adapt_steps=2)
    assert info["adaptation"]["steps"] == 2
    with pytest.raises(ModelBundleError, match="cannot adapt to this image"):
        predict_on_grid(adapting, [image], affine, device="auto", mask=np.zeros_like(head))
    meta["inference"]["adaptation"] = {"method": "noise2noise"}
    unknown = save_bundle(tmp_path / "n2n", net, meta=meta)
    with pytest.raises(ModelBundleError, match="inference adaptation"):
        predict_on_grid(unknown, [image], affine, device="auto", mask=head)
    del meta["inference"]["adaptation"]
    meta["inference"].update(symmetries=1, fusion="max")
    unknown = save_bundle(tmp_path / "max", net, meta=meta)
    with pytest.raises(ModelBundleError, match="unknown inference fusion 'max'"):
        predict_on_grid(unknown, [image], affine, device="auto", mask=head)


def test_an_acquired_grid_bundle_runs_on_the_image_voxels_and_a_spacing_one_resamples(tmp_path):
    """An identity denoiser gives the image back bit for bit on its own 3 mm voxels; resampled
    to a 1 mm contract and back, it does not."""
    from bids_synth.errors import ModelBundleError
    from bids_synth.models.bundle import save_bundle
    from bids_synth.models.prediction import predict_on_grid
    from bids_synth.nn.factory import build_network

    kwargs = {"in_channels": 3, "out_channels": 1, "channels": [4, 8], "dims": 2}
    net = build_network("unet", identity_channel=1, **kwargs)
    meta = {
        "id": "denoise-test-slab",
        "version": "0.0.1",
        "task": "denoise",
        "architecture": {"name": "unet", "kwargs": {**kwargs, "identity_channel": 1}},
        "inference": {"mode": "slabs", "slices": 3, "axes": [0, 1, 2], "amp": "off"},
        "input": {
            "suffixes": ["T1w"],
            "spacing_mm": [1.0] * 3,
            "grid": "acquired",
            "orientation": "RAS",
            "normalization": {"method": "percentile", "low": 0.5, "high": 99.5},
        },
        "output": {"suffix": "T1w", "normalization": {"method": "input"}},
    }
    image = np.random.default_rng(1).random((10, 12, 8)).astype(np.float32) + 1
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    head = np.ones(image.shape, bool)
    acquired = save_bundle(tmp_path / "acquired", net, meta=meta)
    same, _ = predict_on_grid(acquired, [image], affine, device="cpu", mask=head)
    np.testing.assert_allclose(same, image, rtol=1e-6)
    meta["input"]["grid"] = "spacing"
    spacing = save_bundle(tmp_path / "spacing", net, meta=meta)
    resampled, _ = predict_on_grid(spacing, [image], affine, device="cpu", mask=head)
    assert np.abs(resampled - image).mean() > 0.05
    meta["input"]["grid"] = "native"
    unknown = save_bundle(tmp_path / "native", net, meta=meta)
    with pytest.raises(ModelBundleError, match="unknown input grid 'native'"):
        predict_on_grid(unknown, [image], affine, device="cpu", mask=head)


def test_sct_qc_flags_bone_in_the_brain_core():
    from bids_synth.synthesis.sct_methods import ct_qc

    shape = (30, 30, 30)
    head = np.ones(shape, bool)
    brain = np.zeros(shape, bool)
    brain[5:25, 5:25, 5:25] = True
    hu = np.where(brain, 30.0, 1000.0)
    assert "Warnings" not in ct_qc(hu, head, brain)
    hu[14:17, 10:20, 10:20] = 600.0  # a bone-range slab through the ventricles
    qc = ct_qc(hu, head, brain)
    assert qc["BoneFractionBrainCore"] > 0.005 and "brain core" in qc["Warnings"][0]


def test_recipe_trains_resumes_from_a_seed_checkpoint_and_exports(tmp_path):
    import dataclasses

    from bids_synth.models import Bundle
    from bids_synth.training.recipes import (
        export_bundle,
        run_recipe,
        write_seed_checkpoint,
    )

    recipe = _tiny_recipe("sct-t1w-slab")
    first, second, third = (tmp_path / f"machine-{name}" for name in "abd")
    _premade_heads(first, second, third)
    history = run_recipe(recipe, first, epochs=1)
    seed = write_seed_checkpoint(recipe, first, tmp_path / "seed")
    assert (seed / "seed.safetensors").stat().st_size < 200_000
    resumed = run_recipe(recipe, second, epochs=2, seed_checkpoint=seed)
    assert len(resumed) == 2 and resumed[0] == history[0]
    assert {row["head_model_revision"] for row in resumed} == {HEAD_MODEL_REVISION}
    bundle = export_bundle(recipe, second, tmp_path / "bundle")
    assert Bundle.read(bundle.path).meta["training"]["steps"] == 4
    description = bundle.meta["training"]["data"]["description"]
    assert f"head model (revision {HEAD_MODEL_REVISION};" in description
    assert bundle.meta["inference"]["mode"] == "slabs"
    assert "cpu_hours" in bundle.meta["training"]
    run_recipe(recipe, third, epochs=1, seed_checkpoint=seed)  # the seed only, not trained on
    exported = export_bundle(recipe, third, tmp_path / "from-seed")
    assert len((exported.path / "training_log.csv").read_text().splitlines()) == 2
    with pytest.raises(ValueError, match="other recipe settings"):
        run_recipe(
            dataclasses.replace(recipe, lr=1.0),
            tmp_path / "machine-c",
            epochs=3,
            seed_checkpoint=seed,
        )


def test_a_weight_averaged_recipe_validates_exports_and_seeds_its_average(tmp_path):
    from safetensors.torch import load as load_safetensors

    from bids_synth.nn.checkpoint import load_checkpoint
    from bids_synth.training.recipes import (
        build_trainer,
        export_bundle,
        run_recipe,
        write_seed_checkpoint,
    )

    recipe = _tiny_recipe("sct-t1w-slab", weight_average=0.5)
    _premade_heads(tmp_path / "run")
    run_recipe(recipe, tmp_path / "run", epochs=1)
    trainer = build_trainer(recipe)
    load_checkpoint(tmp_path / "run" / "checkpoints", trainer)
    average = trainer.inference_generator.state_dict()
    last_step = trainer.generator.state_dict()
    assert any(not torch.equal(average[key], value) for key, value in last_step.items())
    bundle = export_bundle(recipe, tmp_path / "run", tmp_path / "bundle")
    assert bundle.meta["training"]["weight_average_decay"] == 0.5
    exported = bundle.load_network().state_dict()
    assert all(torch.equal(exported[key], value.float()) for key, value in average.items())
    seed = write_seed_checkpoint(recipe, tmp_path / "run", tmp_path / "seed")
    seeded = load_safetensors((seed / "seed.safetensors").read_bytes())
    assert all(torch.equal(seeded[key], value.half()) for key, value in average.items())


def test_the_card_says_which_head_model_revision_each_span_of_epochs_trained_on():
    from bids_synth.training.recipes import _head_model_revisions

    untagged = [{"epoch": 1}, {"epoch": 2}]  # rows written before the tag: revision 1
    tagged = [{"epoch": e, "head_model_revision": 2} for e in (3, 4, 5)]
    assert _head_model_revisions(untagged) == "revision 1"
    assert _head_model_revisions(untagged + tagged) == (
        "revision 1 for epochs 1–2, revision 2 for epochs 3–5"
    )


def test_a_fine_tune_continues_its_parent_seed_with_the_emphasised_loss(tmp_path):
    import dataclasses

    from bids_synth.nn.checkpoint import load_checkpoint
    from bids_synth.training.recipes import (
        build_trainer,
        export_bundle,
        run_recipe,
        write_seed_checkpoint,
    )

    parent = _tiny_recipe(
        "sct-t1w-slab",
        loss_emphasis=None,
        fine_tune_from=None,
        base=None,
        lr_anneal=None,
    )
    fine_tune = dataclasses.replace(parent, loss_emphasis=(0.3, 3.0), fine_tune_from=1)
    assert fine_tune.parent() == parent and parent.parent() is parent
    assert "loss_emphasis" not in parent.run_settings()  # older checkpoints still resume
    _premade_heads(tmp_path / "parent", tmp_path / "fine-tune", tmp_path / "late")
    history = run_recipe(parent, tmp_path / "parent", epochs=1)
    seed = write_seed_checkpoint(parent, tmp_path / "parent", tmp_path / "seed")
    tuned = run_recipe(fine_tune, tmp_path / "fine-tune", epochs=2, seed_checkpoint=seed)
    assert len(tuned) == 2 and tuned[0] == history[0]
    meta = export_bundle(fine_tune, tmp_path / "fine-tune", tmp_path / "bundle").meta
    assert meta["training"]["loss_emphasis"] == {"threshold": 0.3, "factor": 3.0}
    assert "300 HU weighing 3×" in meta["training"]["data"]["description"]
    with pytest.raises(ValueError, match="other recipe settings"):  # the parent at another epoch
        late = dataclasses.replace(fine_tune, fine_tune_from=2)
        run_recipe(late, tmp_path / "late", epochs=3, seed_checkpoint=seed)

    # a fine-tune of the fine-tune, with one more head, stretched training heads and an annealed
    # learning rate, continues it from its epoch 2
    more = dataclasses.replace(
        fine_tune,
        train_heads=fine_tune.train_heads + (("phantom", 3),),
        base=fine_tune,
        fine_tune_from=2,
        lr_anneal=(2, 0.5),
        shell_stretch_sd=0.2,
    )
    lr = more.lr
    rates = [more.lr_at(epoch) for epoch in (0, 2, 3, 4, 9)]
    assert rates == [lr, lr, 0.75 * lr, 0.5 * lr, 0.5 * lr]
    assert more.parent() is fine_tune and more.run_settings()["base"] == fine_tune.run_settings()
    (tmp_path / "more" / "heads").mkdir(parents=True)
    for head, stretch in ((1, 0.2), (3, 0.2), (2, 0.0)):  # the validation head is not stretched
        name = head_file_name("phantom", head, shell_stretch_sd=stretch)
        _shell_head().save(tmp_path / "more" / "heads" / name)
    tuned_seed = write_seed_checkpoint(fine_tune, tmp_path / "fine-tune", tmp_path / "seed-2")
    continued = run_recipe(more, tmp_path / "more", epochs=3, seed_checkpoint=tuned_seed)
    assert len(continued) == 3 and continued[:2] == tuned and continued[2]["lr"] == lr
    continued = run_recipe(more, tmp_path / "more", epochs=4)
    assert continued[3]["lr"] == 0.75 * lr
    trainer = build_trainer(more)
    load_checkpoint(tmp_path / "more" / "checkpoints", trainer)
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == 0.75 * lr
    description = export_bundle(more, tmp_path / "more", tmp_path / "more-bundle").meta
    assert description["training"]["data"]["description"].endswith(
        "300 HU weighing 3× in the L1 loss from epoch 1 on; 1 more training head (phantom), the "
        "training heads' skulls and scalps stretched per draw (log-normal, sd 0.2), and the "
        f"learning rate annealed from {lr:g} to {lr / 2:g} (half cosine) over 2 epochs "
        "from epoch 2 on"
    )


def test_a_widened_fine_tune_starts_as_its_parent_and_learns_from_both_inputs(tmp_path):
    import dataclasses

    from bids_synth.training.recipes import export_bundle, run_recipe

    parent = _tiny_recipe(
        "sct-t1w-slab",
        loss_emphasis=None,
        fine_tune_from=None,
        base=None,
        lr_anneal=None,
    )
    widened = dataclasses.replace(
        parent,
        id="sct-t1w-t2w-slab",
        suffixes=("T1w", "T2w"),
        parent_id=parent.id,
        widened_from=("T1w",),
        fine_tune_from=1,
    )
    assert widened.parent() == parent
    history, before, start = _started_from_parent(parent, widened, tmp_path)
    t1w = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = before.generator(t1w)
        without, with_t2w = (
            start.generator(torch.cat([t1w, t2w], 1))
            for t2w in (torch.zeros(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
        )
    assert torch.equal(without, with_t2w)  # the T2w slices weigh nothing yet
    torch.testing.assert_close(without, expected, rtol=0, atol=5e-3)  # half-precision seed
    tuned = run_recipe(widened, tmp_path / "child", epochs=2)
    assert len(tuned) == 2 and tuned[0] == history[0]
    meta = export_bundle(widened, tmp_path / "child", tmp_path / "bundle").meta
    assert meta["input"]["suffixes"] == ["T1w", "T2w"] and meta["input"]["channels"] == 2
    assert "started from the T1w weights" in meta["training"]["data"]["description"]


def test_emphasised_loss_weighs_the_voxels_above_the_threshold():
    from bids_synth.nn.losses import emphasised_mean, masked_mean

    target = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    error = torch.tensor([[[1.0, 1.0, 3.0, 3.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    assert float(masked_mean(error, mask)) == pytest.approx(5 / 3)
    # the masked bone voxel weighs 3, the two soft-tissue voxels 1: (1 + 1 + 9) / 5
    assert float(emphasised_mean(error, target, mask, (0.5, 3.0))) == pytest.approx(11 / 5)
    assert float(emphasised_mean(error, target, None, (2.0, 3.0))) == pytest.approx(2.0)


def test_a_symmetric_emphasis_also_weighs_what_the_prediction_calls_bone():
    """Weighing only the target's bone makes calling soft tissue bone the cheaper error; with the
    prediction the two errors pull equally (the slopes are the weights: none flows through them)."""
    from bids_synth.nn.trainers import _content_loss

    target = torch.tensor([[[0.0, 1.0]]])  # soft tissue, bone

    def slopes(symmetric: bool) -> list:
        prediction = torch.tensor([[[1.0, 0.0]]], requires_grad=True)  # both called wrong
        _content_loss(prediction, target, None, "l1", (0.5, 3.0), symmetric).backward()
        return prediction.grad.flatten().tolist()

    assert slopes(False) == pytest.approx([0.25, -0.75])  # weights 1 and 3
    assert slopes(True) == pytest.approx([0.5, -0.5])  # weights 3 and 3


def test_smoothed_texture_is_correlated_across_voxels_and_keeps_its_spread():
    head = _shell_head()
    gmm = dict(physics_share=0.0, thick_share=0.0, noise_range=(0.0, 0.0), gamma_sd=0.0,
               bias_sd=0.0, sd_range=(0.08, 0.08))  # fmt: skip
    wm = torch.from_numpy(head.labels == Tissue.WM)

    def texture(params):
        image = _draw(head, 5, params)
        inner = image[10:30, 10:30, 10:30]
        inside = wm[10:30, 10:30, 10:30]
        values = inner - inner[inside].mean()
        lag = (values[1:] * values[:-1])[inside[1:] & inside[:-1]].mean()
        return float(lag / values[inside].var()), float(values[inside].std())

    voxelwise, voxelwise_sd = texture(Randomisation(**gmm))
    smooth, smooth_sd = texture(Randomisation(**gmm, texture_smoothing_mm=(3.0, 3.0)))
    assert voxelwise < 0.6 < 0.8 < smooth  # neighbours: nearly independent / alike
    assert 0.3 < smooth_sd / voxelwise_sd < 1.5  # the texture is smoothed, not removed


def test_a_coarse_acquisition_blurs_all_three_axes_and_thick_slices_one():
    head = _shell_head()
    gmm = dict(physics_share=0.0, noise_range=(0.0, 0.0), gamma_sd=0.0, bias_sd=0.0,
               sd_range=(0.08, 0.08), thickness_mm=(5.0, 5.0), coarse_fwhm_mm=(5.0, 5.0))  # fmt: skip
    wm = torch.from_numpy(head.labels == Tissue.WM)[10:30, 10:30, 10:30]

    def lag_one(params):
        """Neighbour correlation of the WM texture along each axis."""
        inner = _draw(head, 5, params)[10:30, 10:30, 10:30]
        values = inner - inner[wm].mean()
        out = []
        for axis in range(3):
            a, b = (values.narrow(axis, start, 19) for start in (0, 1))
            both = wm.narrow(axis, 0, 19) & wm.narrow(axis, 1, 19)
            out.append(float((a * b)[both].mean() / values[wm].var()))
        return out

    coarse = lag_one(Randomisation(**gmm, thick_share=0.0, coarse_share=1.0))
    thick = lag_one(Randomisation(**gmm, thick_share=1.0))
    assert min(coarse) > 0.85
    assert max(thick) > 0.8 and sorted(thick)[1] < 0.75  # one axis blurred


def test_the_harmonizer_fine_tune_adds_coarse_acquisitions():
    from bids_synth.training.recipes import RECIPES, _fine_tune_description

    coarse = RECIPES["harmonize-t1w-site0-slab"]
    while coarse.version != "2.3.0":
        coarse = coarse.parent()
    assert coarse.parent().randomisation.coarse_share == 0.0
    assert "coarse" not in json.dumps(coarse.parent().run_settings())
    assert (
        "25% of the inputs a coarse isotropic acquisition (FWHM 2–8 mm along all three axes; "
        "thick slices 35%)" in _fine_tune_description(coarse)
    )


def test_the_summary_counts_each_epoch_with_the_batches_it_trained_on():
    from bids_synth.training.recipes import _continued, _fine_tune_description, training_summary

    whole_slices = _continued(  # 2.5.1 has 2.5.0's trajectory
        "denoise-slab", "9.9.9", 130, after="2.5.1", size=192, batch_size=4, lr_anneal=(20, 0.1)
    )
    start = whole_slices.fine_tune_from
    history = [{"epoch": epoch, "seconds": 36.0} for epoch in range(1, start + 3)]
    summary = training_summary(whole_slices, history, threads=2)
    assert summary["steps"] == 200 * (start + 2)
    assert summary["samples"] == 200 * (6 * start + 4 * 2)
    assert summary["output_voxels"] == 200 * (6 * 128**2 * start + 4 * 192**2 * 2)
    assert summary["cpu_hours"] == round(36 * 2 * (start + 2) / 3600, 2)
    assert _fine_tune_description(whole_slices).endswith(
        f"batches of 4 slabs of 192² voxels instead of 6 of 128² and the learning rate annealed "
        f"from 0.0003 to 3e-05 (half cosine) over 20 epochs from epoch {start} on"
    )


def test_the_denoise_fine_tune_smooths_the_texture_of_its_clean_targets():
    from bids_synth.training.recipes import RECIPES, _fine_tune_description

    smooth = RECIPES["denoise-slab"]
    while smooth.version != "2.2.0":  # later versions anneal its learning rate
        smooth = smooth.parent()
    assert smooth.parent().randomisation.texture_smoothing_mm == (0.0, 0.0)
    assert "texture_smoothing_mm" not in json.dumps(smooth.parent().run_settings())
    assert _fine_tune_description(smooth).endswith(
        "within-tissue texture a smooth field (σ 1.5–4 mm) instead of voxel-wise from epoch 33 on"
    )
    assert "annealed" in _fine_tune_description(RECIPES["denoise-slab"])


def test_the_shell_fine_tune_describes_each_change_once():
    from bids_synth.training.recipes import _fine_tune_description, _version_of

    continued = _version_of("sct-t1w-slab-shell", "2.13.0")  # 2.12.0 with elastic slabs
    assert continued.base.version == "2.12.0" and continued.base.base.version == "2.11.0"
    description = _fine_tune_description(continued)
    assert description.count("stretched per draw") == 1
    assert "annealed" not in description
    assert "calls bone weighing as much as bone from epoch 257 on" in description
    assert "60% of the inputs physics-based (T1w; was 25%) from epoch 352 on" in description
    assert "muscle turned into fat compartments from epoch 390 on" in description
    assert description.endswith("smooth random displacement: new local shapes per slab) instead "
                                "of a resampled affine from epoch 486 on")  # fmt: skip
    more_heads = _fine_tune_description(_version_of("sct-t1w-slab-shell", "2.14.0"))
    assert more_heads.startswith(description)
    assert more_heads.endswith("; 18 more training heads (mni2009a, phantom, tpm) and the in-plane "
                               "augmentation affine (a resampled affine) instead of a resampled "
                               "affine with a smooth random displacement: new local shapes per "
                               "slab from epoch 580 on")  # fmt: skip


def test_a_continued_trajectory_widened_to_a_t2w_input_starts_as_its_parent():
    from bids_synth.training.recipes import (
        _fine_tune_description,
        _version_of,
        _widened,
        build_trainer,
    )

    widened = _version_of("sct-t1w-t2w-slab", "2.0.0")  # the T1w trajectory at 2.12.0's epoch 486
    parent = widened.parent()
    assert (parent.id, parent.version, parent.suffixes) == (
        "sct-t1w-slab-shell",
        "2.12.0",
        ("T1w",),
    )
    assert _fine_tune_description(widened).endswith(
        "T1w+T2w inputs instead of T1w (the new contrasts' weights starting at zero) from epoch "
        "486 on"
    )
    torch.manual_seed(0)
    weights = build_trainer(parent).generator.state_dict()
    network = build_trainer(widened).generator
    network.load_state_dict(_widened(weights, network.state_dict(), widened))
    t1w = torch.randn(1, 5, 32, 32)
    with torch.no_grad():
        alone = build_trainer(parent).generator
        alone.load_state_dict(weights)
        expected = alone.eval()(t1w)
        both = network.eval()(torch.cat([t1w, torch.randn(1, 5, 32, 32)], dim=1))
    torch.testing.assert_close(both, expected)  # the T2w slices start with no weight


def test_denoising_pairs_share_one_normalisation_and_differ_by_the_noise():
    from bids_synth.simulate.randomise import CleanImage, randomised_denoising_pair

    head = _shell_head()
    quiet = Randomisation(noise_range=(0.0, 0.0), thick_share=0.0)
    noisy, clean = randomised_denoising_pair(
        head, np.random.default_rng(1), torch.Generator().manual_seed(1), quiet
    )
    assert torch.allclose(noisy, clean)  # no noise: the pair is one image
    loud = Randomisation(noise_range=(0.1, 0.1), rician_share=0.0)
    real = CleanImage(
        np.where(head.head, 1.0 + head.labels, 0.0).astype(np.float32), head.head, 1.0
    )
    for source in (head, real):
        noisy, clean = randomised_denoising_pair(
            source, np.random.default_rng(2), torch.Generator().manual_seed(2), loud
        )
        residual = (noisy - clean)[torch.from_numpy(head.head)]
        assert 0.05 < float(residual.std()) < 0.3 and abs(float(residual.mean())) < 0.02
    band = real.band(2, 10, 20)
    assert band.image.shape == band.head.shape == (40, 40, 10)


def test_denoising_slab_batches_have_clean_targets_and_black_padding():
    heads = [_shell_head()]
    source = RandomisedSlabs(heads, heads, slices=3, size=48, batch_size=2, seed=5, target="clean")
    batch = next(iter(source.epoch_batches(0, 1)))
    assert torch.all(batch["target"][:, :, 0, 0] == 0)  # padding and affine borders are black
    assert float(batch["target"].max()) > 0.5
    with pytest.raises(ValueError, match="slab target"):
        RandomisedSlabs(heads, heads, target="mr")


def test_lattice_augmentation_keeps_the_noise_of_denoising_pairs_white():
    heads = [_shell_head()]
    loud = Randomisation(noise_range=(0.1, 0.1), rician_share=0.0, thick_share=0.0, bias_sd=0.0)

    def residual_statistics(augmentation):
        source = RandomisedSlabs(
            heads,
            heads,
            slices=1,
            size=40,
            batch_size=4,
            seed=3,
            target="clean",
            randomisation=loud,
            augmentation=augmentation,
        )
        lags, sds = [], []
        for batch in source.epoch_batches(0, 4):
            residual = (batch["source"] - batch["target"])[:, 0, 12:28, 12:28]  # inside the head
            lags.append(float((residual[:, 1:] * residual[:, :-1]).mean() / residual.var()))
            sds.append(float(residual.std() / batch["target"][:, 0, 12:28, 12:28].mean()))
        return np.mean(lags), np.mean(sds)

    affine_lag, affine_sd = residual_statistics("affine")
    lattice_lag, lattice_sd = residual_statistics("lattice")
    assert abs(lattice_lag) < 0.05 < 0.15 < affine_lag  # resampling correlates neighbours
    assert lattice_sd > 1.3 * affine_sd  # … and takes a third of the amplitude
    with pytest.raises(ValueError, match="slab augmentation"):
        RandomisedSlabs(heads, heads, augmentation="shear")


def test_elastic_augmentation_displaces_each_slab_smoothly_and_reproducibly():
    from bids_synth.nn.slabs import ELASTIC_SD_MAX, _displacement

    field = _displacement((3, 1, 96, 80), np.random.default_rng(4))
    voxels = field * torch.tensor([80 / 2.0, 96 / 2.0])  # back from grid units to voxels
    assert voxels.shape == (3, 96, 80, 2)
    assert 0.0 < float(voxels.abs().max()) < 5 * ELASTIC_SD_MAX
    steps = (voxels[:, 1:] - voxels[:, :-1]).abs()
    assert float(steps.max()) < 0.5  # smooth: no voxel moves half a voxel more than its neighbour
    assert not torch.allclose(voxels[0], voxels[1])  # a displacement of its own per slab
    torch.testing.assert_close(field, _displacement((3, 1, 96, 80), np.random.default_rng(4)))

    heads = [_shell_head()]

    def first_batch(augmentation):
        source = RandomisedSlabs(
            heads, heads, slices=3, size=48, batch_size=2, seed=5, augmentation=augmentation
        )
        return next(iter(source.epoch_batches(0, 1)))

    elastic, again, affine = first_batch("elastic"), first_batch("elastic"), first_batch("affine")
    torch.testing.assert_close(elastic["target"], again["target"])
    assert not torch.allclose(elastic["target"], affine["target"])
    assert torch.all(elastic["target"][:, :, 0, 0] == -1.0)  # air at the borders, as the affine


def test_a_noise_relative_loss_weighs_each_pair_by_its_noise():
    import copy

    from bids_synth.nn.factory import build_network
    from bids_synth.nn.trainers import NOISE_SD_FLOOR, RegressionTrainer, _content_loss

    heads = [_shell_head()]
    for level in (0.0, 0.1):
        noisy = Randomisation(noise_range=(level, level), rician_share=0.0, thick_share=0.0)
        source = RandomisedSlabs(
            heads, heads, slices=3, size=40, batch_size=2, target="clean", randomisation=noisy
        )
        batch = next(iter(source.epoch_batches(0, 1)))
        assert batch["noise_sd"].shape == (2,)
        assert (batch["noise_sd"] < 1e-6).all() if level == 0 else (batch["noise_sd"] > 0.05).all()
    error = torch.ones(2, 1, 4, 4)
    error[1] *= 4  # the second pair is four times as noisy and four times as wrong
    scale = torch.tensor([0.02, 0.08])
    relative = _content_loss(error, torch.zeros_like(error), None, "l1", scale=scale)
    assert float(relative) == pytest.approx(50.0)  # both at 1 / 0.02
    net = build_network("unet", in_channels=3, out_channels=1, channels=(4, 8), dims=2)
    quiet = {**batch, "noise_sd": torch.zeros(2)}  # a noise-free pair divides by the floor
    losses = [
        RegressionTrainer(
            {"generator": copy.deepcopy(net)},
            ssim_weight=0.0,
            lr=1e-3,
            device=torch.device("cpu"),
            amp="off",
            seed=0,
            **options,
        ).train_step(quiet)["content"]
        for options in ({}, {"noise_relative": True})
    ]
    assert losses[1] == pytest.approx(losses[0] / NOISE_SD_FLOOR, rel=1e-4)


def test_lattice_symmetries_move_every_voxel_onto_a_voxel():
    from bids_synth.nn.slabs import _lattice

    batch = torch.arange(2 * 3 * 4 * 4.0).view(2, 3, 4, 4)
    for seed in range(8):
        moved = _lattice(batch, np.random.default_rng(seed))
        assert torch.equal(moved.flatten(2).sort().values, batch.flatten(2).sort().values)
        assert torch.equal(
            moved[:, 1] - moved[:, 0], torch.full((2, 4, 4), 16.0)
        )  # channels move together


def test_the_denoise_fine_tune_names_the_clean_images_it_trains_on_instead():
    from bids_synth.training.recipes import RECIPES, _fine_tune_description

    sharp = RECIPES["denoise-slab"]  # 2.10.1: 2.10.0's network with four lattice symmetries
    assert sharp.version == "2.10.1" and sharp.symmetries == 4
    assert sharp.adaptation == sharp.parent().adaptation
    assert sharp.parent().run_settings()["clean_images"] != sharp.run_settings()["clean_images"]
    assert _fine_tune_description(sharp).endswith(
        "the real reference images mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz (6× each) "
        "instead of mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz, spm/avg152T1.nii.gz, "
        "spm/avg152T2.nii.gz, spm/avg152PD.nii.gz (3× each) and the learning rate annealed from "
        "0.0003 to 3e-05 (half cosine) over 15 epochs from epoch 130 on"
    )


def test_the_denoise_fine_tune_on_white_noise_records_its_augmentation():
    from bids_synth.training.recipes import RECIPES, _fine_tune_description

    white = RECIPES["denoise-slab"].parent()  # 2.5.1: 2.5.0's trajectory, adapted to each image
    assert white.version == "2.5.1" and white.adaptation is not None
    assert white.augmentation == "lattice"
    assert "augmentation" not in json.dumps(white.parent().run_settings())
    assert "lattice" in _fine_tune_description(white)


def test_identity_unet_starts_as_the_identity_of_its_centre_slice():
    from bids_synth.nn.factory import build_network

    net = build_network(
        "unet", in_channels=5, out_channels=1, channels=(4, 8), dims=2, identity_channel=2
    )
    x = torch.rand(2, 5, 16, 16)
    assert torch.equal(net(x), x[:, 2:3])
    with pytest.raises(ValueError, match="identity_channel"):
        build_network("unet", in_channels=3, channels=(4, 8), dims=2, identity_channel=3)


def test_denoise_recipe_trains_and_exports_an_input_scale_bundle(tmp_path):

    from bids_synth.training.recipes import RECIPES, export_bundle, run_recipe

    recipe = _tiny_recipe(
        "denoise-slab",
        clean_images=(),
    )
    _premade_heads(tmp_path)
    run_recipe(recipe, tmp_path, epochs=1)
    meta = export_bundle(recipe, tmp_path, tmp_path / "bundle").meta
    assert meta["input"]["channels"] == 1 and meta["input"]["suffixes"][0] == "T1w"
    assert meta["output"]["normalization"] == {"method": "input"}
    assert meta["input"]["grid"] == "acquired"  # a denoiser is never resampled
    assert meta["architecture"]["kwargs"]["identity_channel"] == 1
    assert "sct" not in meta["training"]["data"]["description"]
    sct = RECIPES["sct-t1w-slab"].run_settings()
    assert "identity" not in sct and "clean_images" not in sct  # older checkpoints still resume


def test_brain_slabs_are_one_on_the_brain_and_its_csf_only():
    """The shell head's brain is its CSF, GM and WM (radius < 13); a ball of fluid farther than
    8 mm from its tissue (an eye, CSF to the SPM TPM) is none: the brain target is 1 on the brain
    only."""
    head = _shell_head()
    axes = np.indices(head.labels.shape) - 2
    head.labels[(axes**2).sum(0) < 4] = Tissue.CSF  # in a corner, ≥ 10 voxels from the GM
    brain = head.brain_mask()
    radius = np.sqrt(((np.indices(brain.shape) - 19.5) ** 2).sum(0))
    assert np.array_equal(brain, radius < 13)
    source = RandomisedSlabs([head], [head], slices=3, size=48, batch_size=4, seed=0,
                             target="brain")  # fmt: skip
    batch = source.validation_batches(2)[0]
    assert set(torch.unique(batch["target"]).tolist()) <= {0.0, 1.0}
    share = float(batch["target"].sum()) / float(batch["mask"].sum())
    assert 0.1 < share < 0.5  # (13 / 18)² of a central slice's head at most, less off centre
    assert batch["source"].shape[1] == 3  # one image of any contrast
    assert np.array_equal(head.band(0, 5, 9).brain, brain[5:9])  # a band has its head's


def test_brainmask_recipe_trains_and_exports_a_brain_share_bundle(tmp_path):
    from bids_synth.training.recipes import export_bundle, run_recipe

    recipe = _tiny_recipe("brainmask-slab", shell_stretch_sd=0.0, muscle_fat_share=0.0,
                          head_window=None)  # fmt: skip
    _premade_heads(tmp_path)
    history = run_recipe(recipe, tmp_path, epochs=1)
    assert 0.0 <= history[-1]["val_mae"] <= 1.0  # a share of the voxels
    meta = export_bundle(recipe, tmp_path, tmp_path / "bundle").meta
    assert meta["task"] == "brainmask" and meta["input"]["channels"] == 1
    assert meta["output"]["suffix"] == "mask" and meta["output"]["range"] == [0.0, 1.0]
    assert "the brain and its CSF" in meta["training"]["data"]["description"]
    card = (tmp_path / "bundle" / "MODEL_CARD.md").read_text()
    assert "T1w/T2w/FLAIR/PD → its brain" in card and "denoised" not in card


def test_translation_heads_round_trip_and_draw_inputs_of_the_input_contrast_only(tmp_path):
    head = _shell_head()
    head.physics[1] = 0.0  # the T2w physics image must never be drawn as an input
    head.targets = {"T2w": (head.labels * 0.2).astype(np.float16)}
    head.save(tmp_path / "head.npz")
    loaded = LabelHead.load(tmp_path / "head.npz")
    assert loaded.physics_names == ("T1w", "T2w") and np.array_equal(
        loaded.targets["T2w"], head.targets["T2w"]
    )
    t1w_only = Randomisation(physics_share=1.0, physics_inputs=("T1w",), noise_range=(0, 0))
    draws = [_draw(loaded, seed, t1w_only) for seed in range(8)]
    assert all(float(d.std()) > 0.05 for d in draws)
    source = RandomisedSlabs(
        [loaded], [loaded], slices=3, size=48, batch_size=2, seed=1, target="T2w",
        randomisation=t1w_only,
    )  # fmt: skip
    batch = source.validation_batches(1)[0]
    inside = batch["target"][batch["mask"] > 0]
    assert float(inside.min()) > -0.1 and 0.5 < float(inside.max()) < 1.1  # head percentiles
    with pytest.raises(ValueError, match="slab target"):
        RandomisedSlabs([loaded], [loaded], target="T3w")


def test_a_target_acquired_at_the_input_resolution_is_blurred_like_it():
    head = _shell_head()
    head.targets = {"T1w": head.physics[0].copy()}
    coarse = Randomisation(physics_share=1.0, physics_inputs=("T1w",), noise_range=(0, 0),
                           thick_share=0.0, coarse_share=1.0, coarse_fwhm_mm=(6.0, 6.0),
                           bias_sd=0.0, gamma_sd=0.0)  # fmt: skip

    def batch(params):
        source = RandomisedSlabs(
            [head], [head], slices=1, size=48, seed=3, target="T1w", randomisation=params
        )
        return source.validation_batches(1)[0]

    def edge(image):  # the steepest step between neighbours: sharp shells, a blurred image
        return float(image.diff(dim=-1).abs().max())

    sharp, blurred = batch(coarse), batch(replace(coarse, resolution_in_target=True))
    assert torch.equal(sharp["source"], blurred["source"])  # the same draws
    assert edge(blurred["target"]) < 0.5 * edge(sharp["target"])
    gap = {name: float((b["target"] - b["source"]).abs().mean()) for name, b in
           (("sharp", sharp), ("blurred", blurred))}  # fmt: skip
    assert gap["blurred"] < 0.5 * gap["sharp"]  # target and input now differ little


def test_heads_cached_before_targets_existed_still_load(tmp_path):
    head = _shell_head()
    np.savez(
        tmp_path / "old.npz", labels=head.labels, ct=head.ct, physics=head.physics[[0, 0, 1]],
        spacing_mm=np.float32(1.0),
    )  # fmt: skip
    old = LabelHead.load(tmp_path / "old.npz")
    assert old.physics_names == ("T1w", "T1w", "T2w") and old.targets == {}


@pytest.mark.parametrize("recipe_id", ["translate-t1w-t2w-slab", "harmonize-t1w-site0-slab"])
def test_mr_target_recipes_train_on_reference_style_targets_and_export(tmp_path, recipe_id):

    from bids_synth.training.recipes import (
        REFERENCE_STYLE_SCALE,
        export_bundle,
        run_recipe,
    )

    recipe = _tiny_recipe(
        recipe_id,
        physics_contrasts=("T1w", "T2w"),
    )
    (tmp_path / "heads").mkdir()
    head = _shell_head()
    head.targets = {recipe.target: (head.labels * 0.1).astype(np.float16)}
    for seed in (1, 2):
        name = head_file_name("phantom", seed, 1.0, ("T1w", "T2w"), (recipe.target,))
        head.save(tmp_path / "heads" / name)
    run_recipe(recipe, tmp_path, epochs=1)
    meta = export_bundle(recipe, tmp_path, tmp_path / "bundle").meta
    assert meta["output"]["suffix"] == recipe.target and meta["input"]["suffixes"] == ["T1w"]
    # one fixed output scale whatever the input's: two sites' images land on one scale
    assert meta["output"]["normalization"] == {
        "method": "scale",
        "offset": 0.0,
        "scale": REFERENCE_STYLE_SCALE,
    }
    assert ("harmonization" in meta) == (recipe.task == "harmonize")
    if recipe.task == "harmonize":
        assert meta["harmonization"]["target"] == "site0"


def test_an_adversarial_fine_tune_trains_pix2pix_on_slabs_and_exports_the_generator(tmp_path):
    import dataclasses

    from bids_synth.training.recipes import (
        export_bundle,
        run_recipe,
        write_seed_checkpoint,
    )

    parent = _tiny_recipe(
        "translate-t1w-t2w-slab",
        physics_contrasts=("T1w", "T2w"),
    )
    sharpened = dataclasses.replace(
        parent,
        id="translate-t1w-t2w-slab-pix2pix",
        parent_id=parent.id,
        adversarial=0.01,
        fine_tune_from=1,
    )
    assert sharpened.parent() == parent
    head = _shell_head()
    head.targets = {"T2w": (head.labels * 0.1).astype(np.float16)}
    for workdir in (tmp_path / "parent", tmp_path / "adversarial"):
        (workdir / "heads").mkdir(parents=True)
        for seed in (1, 2):
            head.save(
                workdir / "heads" / head_file_name("phantom", seed, 1.0, ("T1w", "T2w"), ("T2w",))
            )
    run_recipe(parent, tmp_path / "parent", epochs=1)
    seed = write_seed_checkpoint(parent, tmp_path / "parent", tmp_path / "seed")
    history = run_recipe(sharpened, tmp_path / "adversarial", epochs=2, seed_checkpoint=seed)
    assert "train_adversarial" in history[-1] and "train_adversarial" not in history[0]
    bundle = export_bundle(sharpened, tmp_path / "adversarial", tmp_path / "bundle")
    training = bundle.meta["training"]
    assert training["mode"] == "pix2pix" and training["adversarial_weight"] == 0.01
    assert "pix2pix adversarial loss" in training["data"]["description"]
    assert (tmp_path / "bundle" / "training_curves.png").stat().st_size > 0
    assert not any(key.startswith("discriminator") for key in bundle.load_network().state_dict())


def test_a_deeper_slab_fine_tune_starts_as_its_parent(tmp_path):
    import dataclasses

    from bids_synth.training.recipes import (
        _fine_tune_description,
    )

    parent = _tiny_recipe(
        "denoise-slab",
        clean_images=(),
        fine_tune_from=None,
        base=None,
        lr_anneal=None,
    )
    deeper = dataclasses.replace(parent, version="9.9.9", base=parent, fine_tune_from=1, slices=5)
    _, before, start = _started_from_parent(parent, deeper, tmp_path)
    slab = torch.rand(1, 5, 32, 32)
    with torch.no_grad():
        expected = before.generator(slab[:, 1:4])
        outer_changed = slab.clone()
        outer_changed[:, [0, 4]] = torch.rand(1, 2, 32, 32)
        got, got_changed = start.generator(slab), start.generator(outer_changed)
    assert torch.equal(got, got_changed)  # the outer slices weigh nothing yet
    torch.testing.assert_close(got, expected, rtol=0, atol=5e-3)  # half-precision seed
    assert _fine_tune_description(deeper).startswith("; slabs of 5 slices instead of 3")


def test_a_slab_that_cannot_hold_its_parents_slices_is_refused():
    import dataclasses

    from bids_synth.training.recipes import _continued, _widened

    parent = dataclasses.replace(
        _tiny_recipe("denoise-slab", fine_tune_from=None, base=None), slices=5
    )
    for slices in (3, 6):
        child = dataclasses.replace(parent, base=parent, fine_tune_from=1, slices=slices)
        with pytest.raises(ValueError, match="cannot start from 5-slice weights"):
            _widened({}, {}, child)
    with pytest.raises(ValueError, match="has no version 0.0.1"):
        _continued("denoise-slab", "9.9.9", 1, after="0.0.1")


#: (label source, seed) of the head-window tests
HEAD_SPECS = [("tpm", 100), ("tpm", 101), ("phantom", 100), ("phantom", 101), ("mni2009a", 100)]


def test_the_window_takes_turns_between_sources_and_wraps_around():
    assert window_order(HEAD_SPECS) == [
        ("mni2009a", 100),
        ("phantom", 100),
        ("tpm", 100),
        ("phantom", 101),
        ("tpm", 101),
    ]
    assert window_at(HEAD_SPECS, 3, 1, 0) == [("mni2009a", 100), ("phantom", 100), ("tpm", 100)]
    assert window_at(HEAD_SPECS, 3, 2, 1) == [("tpm", 100), ("phantom", 101), ("tpm", 101)]
    assert window_at(HEAD_SPECS, 3, 2, 2) == [("tpm", 101), ("mni2009a", 100), ("phantom", 100)]
    assert window_at(HEAD_SPECS, 9, 1, 4) == window_at(
        HEAD_SPECS, 5, 1, 4
    )  # never more than there are
    assert window_at(HEAD_SPECS, 3, 0, 7) == window_at(HEAD_SPECS, 3, 0, 0)
    with pytest.raises(ValueError, match="size ≥ 1"):
        window_at(HEAD_SPECS, 0, 1, 0)


def test_heads_seen_counts_each_head_once():
    assert heads_seen(HEAD_SPECS, 3, 1, 1) == 3
    assert heads_seen(HEAD_SPECS, 3, 1, 2) == 4
    assert heads_seen(HEAD_SPECS, 3, 1, 0) == 3  # the first window, before any epoch
    assert heads_seen(HEAD_SPECS, 3, 2, 10) == 5


def test_a_head_is_loaded_when_it_enters_and_dropped_when_it_leaves():
    loaded = []

    def load(specs):
        loaded.extend(specs)
        return [f"{source}-{seed}" for source, seed in specs]

    window = HeadWindow(HEAD_SPECS, 3, 1, load, start_epoch=10)
    assert window(5) == window(10) == ["mni2009a-100", "phantom-100", "tpm-100"]
    assert window(11) == ["phantom-100", "tpm-100", "phantom-101"]
    assert loaded == [*window_order(HEAD_SPECS)[:3], ("phantom", 101)]  # each head once
    assert window(10) == ["mni2009a-100", "phantom-100", "tpm-100"]  # dropped: loaded again
    assert loaded[-1] == ("mni2009a", 100)


def test_a_windowed_run_resumes_exactly_and_its_card_counts_the_heads(tmp_path):
    from bids_synth.training.recipes import export_bundle, run_recipe

    recipe = _tiny_recipe(
        "sct-t1w-slab", train_heads=(("phantom", 1), ("phantom", 3), ("phantom", 4))
    )
    windowed = replace(recipe, head_window=(2, 1), fine_tune_from=0)  # moves at once
    assert "head_window" not in recipe.run_settings()
    assert windowed.run_settings()["head_window"] == [2, 1]
    for workdir in ("once", "resumed"):
        (tmp_path / workdir / "heads").mkdir(parents=True)
        for seed in (1, 2, 3, 4):
            head = _shell_head(40 + seed)  # a head of its own per seed
            head.save(tmp_path / workdir / "heads" / head_file_name("phantom", seed))
    once = run_recipe(windowed, tmp_path / "once", epochs=2)
    run_recipe(windowed, tmp_path / "resumed", epochs=1)
    resumed = run_recipe(windowed, tmp_path / "resumed", epochs=2)
    assert [row["train_loss"] for row in resumed] == [row["train_loss"] for row in once]
    bundle = export_bundle(windowed, tmp_path / "once", tmp_path / "bundle")
    description = bundle.meta["training"]["data"]["description"]
    assert description.startswith("3 of 3 label heads")
    assert "a window of 2 of its 3 training heads at a time, moving on by 1 head" in description
    assert "more training heads" not in description  # listed, not yet all trained on
