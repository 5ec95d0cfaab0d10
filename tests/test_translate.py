"""Contrast translation: pair parsing, bundle lookup by contract, skipped sessions, a real run."""

import json
import logging

import nibabel as nib
import pytest
from helpers import write_bids
from test_sct import save_tiny_bundle

from bids_synth.cli import main
from bids_synth.errors import ModelBundleError, UsageError
from bids_synth.models import install_bundle


@pytest.fixture(autouse=True)
def home(monkeypatch, tmp_path, no_shipped_bundles):
    """Only the bundles a test installs (none of the user's, none shipped)."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("BIDS_SYNTH_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "models"


def _install(tmp_path, home, source, target):
    folder = tmp_path / f"{source}-{target}"
    return install_bundle(
        save_tiny_bundle(
            folder,
            task="translate",
            sources=[source],
            target=target,
            bundle_id=f"{source}-{target}".lower(),
        ).path,
        destination=home,
    )


def _build(tmp_path, suffixes, options):
    from bids_synth.bids import collect_sessions, load_layout
    from bids_synth.workflows.synthesis.translate import build

    bids = write_bids(tmp_path / "bids", {"sub-01": suffixes})
    (unit,) = collect_sessions(load_layout(bids), "01")
    return build(
        unit=unit, options=options, omp_nthreads=1, seed=0, device="cpu", name="translate_wf"
    )


def test_pairs_must_name_a_source_and_a_target(tmp_path):
    from bids_synth.workflows.synthesis.translate import parse_pairs

    assert parse_pairs(["T1w:T2w", "T2w:FLAIR"]) == [("T1w", "T2w"), ("T2w", "FLAIR")]
    for bad in ("T1w", "T1w:", "T1w:T1w"):
        with pytest.raises(UsageError):
            parse_pairs([bad])


def test_a_missing_bundle_is_one_clear_error(tmp_path, home, capsys):
    with pytest.raises(ModelBundleError, match="no translate model bundle for T1w→FLAIR"):
        _build(tmp_path, ["T1w"], {"pairs": ["T1w:FLAIR"]})
    bids = write_bids(tmp_path / "raw", {"sub-01": ["T1w"]})
    code = main(
        [
            str(bids),
            str(tmp_path / "out"),
            "participant",
            "-w",
            str(tmp_path / "w"),
            "--tasks",
            "translate",
            "--translate",
            "T1w:FLAIR",
        ]
    )
    assert code == 7
    assert "bids-synth train --task translate" in capsys.readouterr().err


def test_without_pairs_every_installed_bundle_runs_and_none_skips(tmp_path, home, caplog):
    with caplog.at_level(logging.INFO, logger="bids_synth"):
        assert _build(tmp_path / "a", ["T1w"], {}) is None
    assert "translate: skipping sub-01: no translate bundle installed" in caplog.text
    _install(tmp_path, home, "T1w", "T2w")
    assert set(_build(tmp_path / "b", ["T1w"], {}).outputs) == {"t1w_to_t2w"}


def test_a_named_bundle_replaces_the_newest_of_its_pair(tmp_path, home):
    _install(tmp_path, home, "T1w", "T2w")
    mine = save_tiny_bundle(
        tmp_path / "mine", task="translate", sources=["T1w"], target="T2w", bundle_id="mine"
    )
    for options in ({"model": [str(mine.path)]}, {"model": ["mine"], "pairs": ["T1w:T2w"]}):
        if options["model"] == ["mine"]:
            install_bundle(mine.path, destination=home)
        branch = _build(tmp_path / str(len(options)), ["T1w"], options)
        assert branch.outputs["t1w_to_t2w"]["metadata"]["Model"]["Id"] == "mine"
    with pytest.raises(UsageError, match="two bundles for T1w:T2w"):
        _build(tmp_path / "e", ["T1w"], {"model": ["mine", str(mine.path)]})
    with pytest.raises(UsageError, match="--translate-model serves T1w:T2w: not among"):
        _build(tmp_path / "c", ["T1w"], {"model": ["mine"], "pairs": ["T2w:FLAIR"]})
    sct = save_tiny_bundle(tmp_path / "sct", task="sct", sources=["T1w"], target="CT")
    with pytest.raises(ModelBundleError, match="serves task 'sct', not 'translate'"):
        _build(tmp_path / "d", ["T1w"], {"model": [str(sct.path)]})


def test_a_session_lacking_the_source_is_skipped_for_that_pair(tmp_path, home, caplog):
    _install(tmp_path, home, "T1w", "T2w")
    _install(tmp_path, home, "T2w", "FLAIR")
    options = {"pairs": ["T1w:T2w", "T2w:FLAIR"]}
    with caplog.at_level(logging.INFO, logger="bids_synth"):
        branch = _build(tmp_path / "a", ["T1w"], options)
        assert _build(tmp_path / "b", ["T1w"], {"pairs": ["T2w:FLAIR"]}) is None
    assert "translate T2w→FLAIR: skipping sub-01: no T2w image" in caplog.text
    assert set(branch.outputs) == {"t1w_to_t2w"}
    both = _build(tmp_path / "c", ["T1w", "T2w"], options)
    assert set(both.outputs) == {"t1w_to_t2w", "t2w_to_flair"}
    assert both.inputs == {
        "head_mask": "head_mask",
        "brain_mask": "brain_mask",
        "t1w": "t1w_preproc",
        "t2w": "T2w_registered",
    }
    assert both.outputs["t2w_to_flair"]["entities"] == {
        "space": "T1w",
        "desc": "synthetic",
        "suffix": "FLAIR",
    }


def test_translate_runs_in_the_app(tmp_path, home):
    _install(tmp_path, home, "T1w", "T2w")
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
            "translate",
            "--translate",
            "T1w:T2w",
        ]
    )
    assert code == 0
    anat = out / "sub-01" / "anat"
    image = nib.load(anat / "sub-01_space-T1w_desc-synthetic_T2w.nii.gz")
    assert image.shape == nib.load(anat / "sub-01_desc-preproc_T1w.nii.gz").shape
    sidecar = json.loads((anat / "sub-01_space-T1w_desc-synthetic_T2w.json").read_text())
    assert sidecar["Model"]["Id"] == "t1w-t2w" and sidecar["Method"] == "model"
    assert sidecar["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert sidecar["Device"] == "cpu" and sidecar["RuntimeSeconds"] > 0
    assert sidecar["Precision"] in ("off", "bf16")  # the autocast the prediction ran in
