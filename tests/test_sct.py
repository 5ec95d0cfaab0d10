"""Synthetic CT: bulk, atlas and model methods on a small phantom, and the task in a real run."""

import json
import logging

import nibabel as nib
import numpy as np
import pytest
from helpers import affine, contrast, phantom_labels, save, write_bids

from bids_synth.cli import main
from bids_synth.errors import InvalidImageError, ModelBundleError, UsageError
from bids_synth.synthesis.sct_methods import BULK_HU


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("BIDS_SYNTH_HOME", str(tmp_path / "home"))  # no user bundles


def save_tiny_bundle(folder, *, task, sources, target, bundle_id=None):
    """A small untrained U-Net saved as a bundle with the given contract (runs in seconds)."""
    import torch

    from bids_synth.models import save_bundle
    from bids_synth.nn.factory import build_network

    torch.manual_seed(0)
    kwargs = {
        "in_channels": len(sources),
        "out_channels": 1,
        "channels": [4, 8],
        "norm": "instance",
    }
    ct = target == "CT"
    meta = {
        "id": bundle_id or f"{task}-tiny",
        "version": "0.0.1",
        "task": task,
        "architecture": {"name": "unet", "kwargs": kwargs},
        "input": {
            "suffixes": list(sources),
            "channels": len(sources),
            "spacing_mm": [3.0] * 3,
            "normalization": {"method": "percentile-scale", "percentile": 99.5},
        },
        "output": {
            "suffix": target,
            "units": "HU" if ct else "a.u.",
            "normalization": {"method": "scale", "offset": 0.0, "scale": 1000.0}
            if ct
            else {"method": "input"},
        },
        "inference": {"patch": [16, 16, 16], "overlap": 0.25},
    }
    return save_bundle(folder, build_network("unet", **kwargs), meta=meta, card="test bundle")


@pytest.fixture
def phantom(tmp_path):
    labels, aff = phantom_labels(), affine()
    rng = np.random.default_rng(0)
    t1w = contrast(labels, "T1w") + rng.normal(0, 10, labels.shape)
    return {
        "t1w": str(save(tmp_path / "t1w.nii.gz", t1w, aff)),
        "head_mask": str(save(tmp_path / "head.nii.gz", labels > 0, aff)),
        "brain_mask": str(save(tmp_path / "brain.nii.gz", labels >= 3, aff)),
        "labels": labels,
    }


def test_bulk_values_come_from_the_head_model_table():
    assert BULK_HU["air"] == -1000 and BULK_HU["csf"] == 8 and BULK_HU["wm"] == 27
    assert BULK_HU["bone"] == pytest.approx((1600 + 650) / 2)


@pytest.mark.parametrize("method", ["bulk", "atlas", "model"])
def test_every_method_writes_ct_mask_mumap_and_qc(tmp_path, phantom, method):
    from bids_synth.interfaces.sct import HeadModelAtlas, SyntheticCT

    inputs = {k: phantom[k] for k in ("t1w", "head_mask", "brain_mask")}
    if method == "atlas":
        atlas = HeadModelAtlas(seeds=[1], spacing=4.0).run(cwd=str(tmp_path))
        inputs.update(atlas_t1w=atlas.outputs.atlas_t1w, atlas_ct=atlas.outputs.atlas_ct)
    if method == "model":
        from bids_synth.models.selection import bundle_inputs

        bundle = save_tiny_bundle(tmp_path / "b", task="sct", sources=["T1w"], target="CT")
        inputs.update(bundle_inputs(bundle))
    result = SyntheticCT(method=method, **inputs).run(cwd=str(tmp_path))
    ct = nib.load(result.outputs.out_ct)
    hu = np.asanyarray(ct.dataobj)
    assert ct.get_data_dtype() == np.int16 and hu.shape == phantom["labels"].shape
    assert np.all(hu[phantom["labels"] == 0] == -1000)  # air outside the head
    mumap = nib.load(result.outputs.out_mumap).get_fdata()
    assert mumap.min() >= 0 and mumap.max() < 0.3 and mumap[phantom["labels"] == 0].max() == 0
    assert nib.load(result.outputs.out_mask).get_data_dtype() == np.uint8
    meta = json.loads(open(result.outputs.out_metadata).read())
    assert {"MeanHUBrain", "MeanHUBone", "FractionOutsideRange", "Device", "RuntimeSeconds"} <= set(
        meta
    )
    if method != "atlas":  # atlas: see the slow test below
        assert np.array_equal(_rerun(tmp_path, method, inputs), hu)  # reproducible
    if method == "bulk":  # the analytic phantom's classes: CSF/GM/WM in the brain, bone around it
        assert 8 <= meta["MeanHUBrain"] <= 40 and meta["MeanHUBone"] == pytest.approx(1125)
        skull = phantom["labels"] == 2
        assert np.mean(hu[skull] == 1125) > 0.9


def test_bulk_leaves_nothing_in_the_temp_folder(tmp_path, phantom, monkeypatch):
    """antspyx's Atropos writes its probability images into the temp folder and keeps them."""
    import tempfile

    import ants

    from bids_synth.synthesis.sct_methods import bulk_ct

    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    t1w, brain, head = (ants.image_read(phantom[k]) for k in ("t1w", "brain_mask", "head_mask"))
    bulk_ct(t1w, head, brain)
    assert not list(system_temp.iterdir())
    assert tempfile.tempdir == str(system_temp)


def _rerun(tmp_path, method, inputs) -> np.ndarray:
    from bids_synth.interfaces.sct import SyntheticCT

    (tmp_path / "again").mkdir(parents=True)
    result = SyntheticCT(method=method, **inputs).run(cwd=str(tmp_path / "again"))
    return np.asanyarray(nib.load(result.outputs.out_ct).dataobj)


@pytest.mark.slow
def test_atlas_propagation_is_reproducible(tmp_path, phantom):
    from bids_synth.interfaces.sct import HeadModelAtlas

    atlas = HeadModelAtlas(seeds=[1, 2], spacing=4.0).run(cwd=str(tmp_path))
    inputs = {k: phantom[k] for k in ("t1w", "head_mask", "brain_mask")}
    inputs.update(atlas_t1w=atlas.outputs.atlas_t1w, atlas_ct=atlas.outputs.atlas_ct)
    first = _rerun(tmp_path / "a", "atlas", inputs)
    assert np.array_equal(_rerun(tmp_path / "b", "atlas", inputs), first)


def test_model_without_a_bundle_fails_in_one_line_and_bulk_is_the_default(
    tmp_path, capsys, no_shipped_bundles
):
    from bids_synth.workflows.synthesis.sct import default_method

    assert default_method() == "bulk"
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    code = main(
        [
            str(bids),
            str(tmp_path / "out"),
            "participant",
            "-w",
            str(tmp_path / "w"),
            "--tasks",
            "sct",
            "--sct-method",
            "model",
        ]
    )
    assert code == ModelBundleError.exit_code
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no sct model bundle for T1w→CT" in line and "bids-synth train --task sct" in line


def test_atlas_method_uses_a_given_atlas_or_draws_head_model_atlases(tmp_path):
    from bids_synth.workflows.synthesis.sct import build

    unit = _unit(tmp_path, ["T1w"])
    kwargs = {"unit": unit, "omp_nthreads": 1, "seed": 0, "device": "cpu", "name": "sct_wf"}
    drawn = build(options={"method": "atlas", "atlas_seeds": [3, 4]}, **kwargs)
    assert drawn.workflow.get_node("head_model_atlas").inputs.seeds == [3, 4]
    given = build(
        options={"method": "atlas", "atlas_t1w": unit.t1w, "atlas_ct": unit.t1w}, **kwargs
    )
    assert given.workflow.get_node("head_model_atlas") is None
    assert given.outputs["ct"]["metadata"]["Parameters"]["Atlas"]["T1w"] == unit.t1w
    with pytest.raises(UsageError, match="--sct-atlas-ct nowhere.nii.gz: no such file"):
        build(options={"method": "atlas", "atlas_t1w": unit.t1w, "atlas_ct": "nowhere.nii.gz"},
              **kwargs)  # fmt: skip


def test_atlas_options_with_another_method_are_reported_as_ignored(tmp_path, caplog):
    from bids_synth.workflows.synthesis.sct import build

    kwargs = {"omp_nthreads": 1, "seed": 0, "device": "cpu", "name": "sct_wf"}
    with caplog.at_level(logging.WARNING, logger="bids_synth.sct"):
        build(
            unit=_unit(tmp_path, ["T1w"]), options={"method": "bulk", "atlas_seeds": [2]}, **kwargs
        )
    assert "--sct-atlas-seeds ignored: method bulk, not atlas" in caplog.text


def _unit(tmp_path, suffixes):
    from bids_synth.bids import collect_sessions, load_layout

    bids = write_bids(tmp_path / "bids", {"sub-01": suffixes})
    (unit,) = collect_sessions(load_layout(bids), "01")
    return unit


def test_a_two_channel_bundle_skips_a_session_without_t2w(tmp_path, caplog, no_shipped_bundles):
    from bids_synth.models import install_bundle
    from bids_synth.workflows.synthesis.sct import build

    install_bundle(
        save_tiny_bundle(tmp_path / "b", task="sct", sources=["T1w", "T2w"], target="CT").path,
        destination=tmp_path / "home" / "models",
    )
    kwargs = {"options": {"method": "model"}, "omp_nthreads": 1, "seed": 0, "device": "cpu",
              "name": "sct_wf"}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bids_synth"):
        assert build(unit=_unit(tmp_path / "a", ["T1w"]), **kwargs) is None
    assert "sct: skipping sub-01: the bundle sct-tiny@0.0.1 needs T2w" in caplog.text
    branch = build(unit=_unit(tmp_path / "b2", ["T1w", "T2w"]), **kwargs)
    assert branch.inputs["t2w"] == "T2w_registered"
    assert branch.outputs["ct"]["metadata"]["Model"]["Id"] == "sct-tiny"


def test_each_session_gets_the_sct_bundle_that_uses_the_most_of_its_contrasts(
    tmp_path, no_shipped_bundles
):
    from bids_synth.models import install_bundle
    from bids_synth.workflows.synthesis.sct import build

    for bundle_id, sources in (("sct-t1w", ["T1w"]), ("sct-t1w-t2w", ["T1w", "T2w"])):
        install_bundle(
            save_tiny_bundle(
                tmp_path / bundle_id, task="sct", sources=sources, target="CT", bundle_id=bundle_id
            ).path,
            destination=tmp_path / "home" / "models",
        )
    kwargs = {"options": {"method": "model"}, "omp_nthreads": 1, "seed": 0, "device": "cpu",
              "name": "sct_wf"}  # fmt: skip
    t1w_only = build(unit=_unit(tmp_path / "a", ["T1w"]), **kwargs)
    both = build(unit=_unit(tmp_path / "b", ["T1w", "T2w"]), **kwargs)
    assert t1w_only.outputs["ct"]["metadata"]["Model"]["Id"] == "sct-t1w"
    assert both.outputs["ct"]["metadata"]["Model"]["Id"] == "sct-t1w-t2w"
    named = build(unit=_unit(tmp_path / "c", ["T1w"]), **{**kwargs, "options": {
        "method": "model", "model": "sct-t1w-t2w"}})  # fmt: skip
    assert named is None  # the named bundle needs a T2w this session lacks


def test_a_session_defaults_to_the_model_when_its_own_bundle_passed_the_real_scan_check(
    tmp_path, no_shipped_bundles
):
    from bids_synth.models import install_bundle
    from bids_synth.models.card import record_evaluation
    from bids_synth.workflows.synthesis.sct import default_method

    home = tmp_path / "home" / "models"
    for bundle_id, sources, passed in (
        ("sct-t1w", ["T1w"], False),
        ("sct-t1w-t2w", ["T1w", "T2w"], True),
    ):
        bundle = save_tiny_bundle(
            tmp_path / bundle_id, task="sct", sources=sources, target="CT", bundle_id=bundle_id
        )
        record_evaluation(
            bundle.path, [], checks={"real_scans": {"passed": passed, "summary": "x"}}
        )
        install_bundle(bundle.path, destination=home)
    assert default_method(_unit(tmp_path / "a", ["T1w", "T2w"])) == "model"
    assert default_method(_unit(tmp_path / "b", ["T1w"])) == "bulk"


def test_sct_runs_in_the_app(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"]})
    out = tmp_path / "out"
    code = main(
        [
            str(bids),
            str(out),
            "participant",
            "-w",
            str(tmp_path / "w"),
            "--omp-nthreads",
            "1",
            "--tasks",
            "sct",
            "--sct-method",
            "bulk",
        ]
    )
    assert code == 0
    anat = out / "sub-01" / "anat"
    ct = nib.load(anat / "sub-01_space-T1w_desc-synthetic_CT.nii.gz")
    assert ct.get_data_dtype() == np.int16
    assert (anat / "sub-01_space-T1w_desc-synthetic_mumap.nii.gz").exists()
    assert (anat / "sub-01_space-T1w_label-body_desc-synthetic_mask.nii.gz").exists()
    sidecar = json.loads((anat / "sub-01_space-T1w_desc-synthetic_CT.json").read_text())
    assert sidecar["Method"] == "bulk" and sidecar["Parameters"]["BulkHU"]["bone"] == 1125
    assert sidecar["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert sidecar["Device"] == "cpu" and sidecar["RuntimeSeconds"] > 0  # known after the run
    assert 8 <= sidecar["MeanHUBrain"] <= 40 and sidecar["MeanHUBone"] == 1125
    assert 0 <= sidecar["FractionOutsideRange"] <= 1
    assert "desc-synthetic\t" in (out / "descriptions.tsv").read_text()


@pytest.mark.parametrize("passed", [True, False])
@pytest.mark.parametrize(
    ("task", "target", "fallback"), [("sct", "CT", "bulk"), ("denoise", "T1w", "nlm")]
)
def test_the_default_method_is_the_model_only_when_it_passed_the_real_scan_check(
    tmp_path, monkeypatch, passed, task, target, fallback
):
    import importlib

    from bids_synth.models.bundle import save_bundle
    from bids_synth.models.card import record_evaluation
    from bids_synth.nn.factory import build_network

    default_method = importlib.import_module(
        f"bids_synth.workflows.synthesis.{task}"
    ).default_method
    monkeypatch.setenv("BIDS_SYNTH_HOME", str(tmp_path))
    meta = {
        "id": f"{task}-newest", "version": "99.0.0", "task": task,
        "architecture": {"name": "unet", "kwargs": {"channels": [4, 8]}},
        "input": {"suffixes": ["T1w"]}, "output": {"suffix": target},
    }  # fmt: skip
    folder = tmp_path / "models" / f"{task}-newest"
    save_bundle(folder, build_network("unet", channels=[4, 8]), meta=meta)
    record_evaluation(folder, [], checks={"real_scans": {"passed": passed, "summary": "x"}})
    assert default_method() == ("model" if passed else fallback)
    assert ("passed" if passed else "failed") in (folder / "MODEL_CARD.md").read_text()


def test_shipped_model_predicts_bone_and_brain():
    from bids_synth.models.prediction import predict_on_grid
    from bids_synth.models.selection import find_task_bundle
    from bids_synth.simulate import simulate_subject

    bundle = find_task_bundle("sct", "T1w", "CT")
    # a whole head at 2 mm (a 2.5D model needs whole slices), resampled to the model's 1 mm grid
    draw = simulate_subject(43, spacing=2.0, contrasts=("T1w", "CT"))
    head = draw.head_mask.numpy() > 0
    truth = draw.clean["CT"].numpy()
    hu, info = predict_on_grid(bundle, [draw.images["T1w"].numpy()], draw.affine, device="cpu",
                               mask=head)  # fmt: skip
    assert hu.shape == truth.shape and info["device"] == "cpu"
    water = np.abs(truth[head]).mean()
    assert np.abs(hu - truth)[head].mean() < 0.7 * water  # clearly better than a water-only CT
    assert hu[head & (truth > 600)].mean() > 400  # bone (underestimated: see its model card)
    assert abs(np.median(hu[head & (np.abs(truth - 35) < 15)]) - 35) < 20  # brain


def test_a_skull_stripped_t1w_is_refused_and_the_others_finish(tmp_path, caplog):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w"], "sub-02": ["T1w"]})
    stripped = bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    image = nib.load(stripped)
    brain = phantom_labels() >= 3
    nib.save(nib.Nifti1Image(image.get_fdata() * brain, image.affine), stripped)
    out = tmp_path / "out"
    args = ["-w", str(tmp_path / "w"), "--omp-nthreads", "1", "--tasks", "sct"]
    code = main([str(bids), str(out), "participant", *args, "--sct-method", "bulk"])
    assert code == InvalidImageError.exit_code
    assert (out / "sub-01" / "anat" / "sub-01_space-T1w_desc-synthetic_CT.nii.gz").exists()
    assert not (out / "sub-02" / "anat").exists()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(e.startswith("sub-02:") and "synthetic CT needs a whole-head image" in e
               for e in errors)  # fmt: skip
