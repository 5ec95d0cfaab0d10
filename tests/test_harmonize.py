"""Harmonization: Nyul/WhiteStripe/z-score on analytic distributions, the reference file, the
group → participant flow end to end."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from helpers import write_bids

from bids_synth.errors import UsageError
from bids_synth.synthesis import harmonization as hz
from bids_synth.synthesis.harmonization_reference import (
    find_references,
    read_reference,
    sha256,
    write_reference,
)


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


def _volume(values):
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1), np.ones((len(values), 1, 1))


# --- Nyul --------------------------------------------------------------------------------------


def test_nyul_maps_affinely_related_images_onto_the_same_standard_histogram():
    rng = np.random.default_rng(0)
    base = rng.gamma(4.0, 10.0, 20000)
    sites = [base, 3.0 * base + 50.0, 0.5 * rng.gamma(4.0, 10.0, 20000) + 7.0]
    landmarks = [hz.image_landmarks(v) for v in sites]
    reference = hz.learn_nyul(landmarks)
    assert reference.landmarks[0] == 0 and reference.landmarks[-1] == 100
    outputs = [hz.apply_nyul(*_volume(v), reference).ravel() for v in sites]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-3)  # affine invariance
    for out in outputs:  # every image's landmarks land on the standard ones
        np.testing.assert_allclose(hz.image_landmarks(out), reference.landmarks, atol=0.5)


def test_nyul_standard_landmarks_of_a_uniform_distribution_are_evenly_spaced():
    values = np.linspace(0.0, 1.0, 100001)
    reference = hz.learn_nyul([hz.image_landmarks(values)])
    expected = [(p - 1) / 98 * 100 for p in hz.NYUL_PERCENTILES]
    np.testing.assert_allclose(reference.landmarks, expected, atol=1e-3)


def test_nyul_is_monotone_and_continuous_beyond_the_outer_landmarks():
    rng = np.random.default_rng(1)
    values = rng.normal(100, 15, 5000)
    reference = hz.learn_nyul([hz.image_landmarks(values)])
    ramp = np.linspace(-100, 400, 5001)
    image = np.concatenate([values, ramp]).reshape(-1, 1, 1)
    mask = np.concatenate([np.ones_like(values), np.zeros_like(ramp)]).reshape(-1, 1, 1)
    out = hz.apply_nyul(image, mask, reference).ravel()[values.size :]
    assert np.all(np.diff(out) > 0)
    assert np.max(np.abs(np.diff(out))) < 5 * np.median(np.diff(out))  # no jump at the ends


def test_nyul_reference_rejects_unordered_landmarks():
    with pytest.raises(ValueError, match="increasing"):
        hz.NyulReference((1, 50, 99), (0, 60, 40))


# --- z-score and WhiteStripe ---------------------------------------------------------------------


def test_zscore_gives_mean_zero_sd_one_inside_the_mask_only():
    rng = np.random.default_rng(2)
    image = np.concatenate([rng.normal(5.0, 2.0, 10000), np.full(500, 1000.0)]).reshape(-1, 1, 1)
    mask = np.concatenate([np.ones(10000), np.zeros(500)]).reshape(-1, 1, 1)
    out = hz.zscore(image, mask).ravel()
    assert abs(out[:10000].mean()) < 1e-5 and abs(out[:10000].std() - 1) < 1e-5
    assert np.allclose(out[10000:], (1000 - image[:10000].mean()) / image[:10000].std(), rtol=1e-5)


def _brain(rng, means, weights, sd=4.0, n=60000):
    counts = (np.asarray(weights) * n).astype(int)
    return np.concatenate([rng.normal(m, sd, c) for m, c in zip(means, counts, strict=True)])


def test_whitestripe_finds_the_white_matter_mode_of_a_t1w_and_of_a_t2w():
    rng = np.random.default_rng(3)
    t1w = _brain(rng, means=(30, 60, 100), weights=(0.15, 0.5, 0.35))  # WM brightest, not tallest
    stripe = hz.white_stripe(t1w, last_mode=True)
    assert abs(stripe.mode - 100) < 2 and abs(stripe.mean - 100) < 1.5 and stripe.sd < 4
    out, _ = hz.apply_whitestripe(*_volume(t1w), last_mode=True)
    wm = out.ravel()[-int(0.35 * 60000) :]
    assert abs(np.median(wm)) < 0.5
    t2w = _brain(rng, means=(40, 70, 150), weights=(0.5, 0.35, 0.15))  # WM darkest and tallest
    assert abs(hz.white_stripe(t2w, last_mode=False).mode - 40) < 2


def test_whitestripe_is_invariant_to_a_scanner_gain_and_offset():
    rng = np.random.default_rng(4)
    t1w = _brain(rng, means=(30, 60, 100), weights=(0.15, 0.5, 0.35))
    a, _ = hz.apply_whitestripe(*_volume(t1w), last_mode=True)
    b, _ = hz.apply_whitestripe(*_volume(2.5 * t1w + 40), last_mode=True)
    np.testing.assert_allclose(a, b, atol=0.05)


# --- reference file ----------------------------------------------------------------------------


def test_reference_file_round_trip_and_errors(tmp_path):
    images = [{"participant_id": "sub-01", "session_id": "n/a", "image": "sub-01/anat/x.nii.gz"}]
    reference = hz.learn_nyul([np.linspace(0, 10, 11), np.linspace(5, 30, 11)], images=images)
    path = write_reference(tmp_path / "desc-nyul_T1w_reference.json", reference, suffix="T1w",
                           mask="desc-brain_mask")  # fmt: skip
    loaded, content = read_reference(path)
    assert loaded == reference
    assert content["Suffix"] == "T1w" and content["SoftwareName"] == "bids-synth"
    assert "SoftwareVersion" in content and content["Images"] == images
    assert find_references(tmp_path) == {"T1w": path} == find_references(path)
    (tmp_path / "desc-nyul_T2w_reference.json").write_text('{"Method": "nyul"}')
    with pytest.raises(UsageError, match="desc-nyul_T2w_reference.json"):
        find_references(tmp_path)
    with pytest.raises(UsageError, match="not found"):
        read_reference(tmp_path / "missing.json")


def test_nyul_without_a_reference_is_a_clear_usage_error(tmp_path):
    from bids_synth.bids import SessionInputs
    from bids_synth.workflows.synthesis.harmonize import TASK

    unit = SessionInputs("01", None, str(tmp_path / "sub-01_T1w.nii.gz"))
    with pytest.raises(UsageError, match="run `bids-synth BIDS OUT group --tasks harmonize`"):
        TASK.build(unit=unit, options={"method": "nyul"}, omp_nthreads=1, seed=0, device="cpu",
                   name="harmonize_wf")  # fmt: skip


def test_the_method_defaults_to_nyul_with_a_reference_else_whitestripe(tmp_path):
    from bids_synth.bids import SessionInputs
    from bids_synth.workflows.synthesis.harmonize import TASK

    unit = SessionInputs("01", None, "sub-01_T1w.nii.gz", {"T2w": "t2.nii.gz", "CT": "ct.nii.gz"})
    build = dict(unit=unit, omp_nthreads=1, seed=0, device="cpu", name="harmonize_wf")
    branch = TASK.build(options={}, **build)
    assert sorted(branch.outputs) == ["t1w", "t2w"]  # MR only, CT left alone
    assert branch.outputs["t2w"]["entities"] == {
        "space": "T1w",
        "desc": "harmonized",
        "suffix": "T2w",
    }
    assert branch.outputs["t1w"]["metadata"]["Method"] == "whitestripe"
    assert branch.inputs == {"brain_mask": "brain_mask", "t1w_preproc": "t1w_preproc",
                             "T2w_registered": "T2w_registered"}  # fmt: skip

    reference = hz.learn_nyul([np.linspace(0, 10, 11)])
    path = write_reference(tmp_path / "desc-nyul_T1w_reference.json", reference, suffix="T1w",
                           mask="desc-brain_mask")  # fmt: skip
    branch = TASK.build(options={"reference": str(tmp_path)}, **build)
    assert sorted(branch.outputs) == ["t1w"]  # no T2w reference: T2w is not harmonized
    metadata = branch.outputs["t1w"]["metadata"]
    assert metadata["Method"] == "nyul" and metadata["Reference"]["Path"] == str(path)
    assert len(metadata["Reference"]["Sha256"]) == 64


# --- group → participant, end to end ----------------------------------------------------------


def _scale_site(bids, subject, gain, offset):
    """Make a participant look like another scanner: a gain and an offset on every image."""
    for path in (bids / subject / "anat").glob("*.nii.gz"):
        image = nib.load(path)
        data = image.get_fdata() * gain + offset
        nib.save(nib.Nifti1Image(data.astype(np.float32), image.affine), str(path))


def _run(bids, out, work, *extra):
    from bids_synth.cli import main

    args = [str(bids), str(out), *extra, "-w", str(work), "--nprocs", "2", "--omp-nthreads", "1"]
    assert main(args) == 0


def _brain_landmarks(out, subject, name):
    image = nib.load(out / subject / "anat" / f"{subject}_{name}.nii.gz").get_fdata()
    mask = nib.load(out / subject / "anat" / f"{subject}_desc-brain_mask.nii.gz").get_fdata()
    return hz.image_landmarks(image[mask > 0])


def _derivatives(root, scales):
    """A derivatives dataset with a preprocessed T1w and brain mask per participant."""
    from helpers import affine, contrast, phantom_labels, save

    labels, aff = phantom_labels(), affine()
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "d", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    rng = np.random.default_rng(0)
    for subject, (gain, offset) in scales.items():
        image = contrast(labels, "T1w") * gain + offset + rng.normal(0, 5, labels.shape)
        save(root / subject / "anat" / f"{subject}_desc-preproc_T1w.nii.gz", image, aff)
        mask = np.isin(labels, (3, 4, 5)).astype(np.float32)  # CSF, GM, WM of the phantom
        save(root / subject / "anat" / f"{subject}_desc-brain_mask.nii.gz", mask, aff)
    return root


def test_cohort_reference_applied_to_a_new_participant_gives_the_cohort_result(tmp_path):
    from nipype.pipeline import engine as pe

    from bids_synth.interfaces.harmonize import HarmonizeIntensity
    from bids_synth.synthesis.harmonization_cohort import learn_cohort_references

    out = _derivatives(
        tmp_path / "out", {"sub-01": (1, 0), "sub-02": (2.5, 30), "sub-03": (0.7, 5)}
    )
    written = learn_cohort_references(out, ["sub-01", "02"])  # sub-03 is new data
    reference, content = read_reference(written["T1w"])
    assert [i["participant_id"] for i in content["Images"]] == ["sub-01", "sub-02"]

    def harmonized(subject, reference_file, where):
        anat = out / subject / "anat"
        node = pe.Node(HarmonizeIntensity(method="nyul", suffix="T1w"), name="h", base_dir=where)
        node.inputs.in_file = str(anat / f"{subject}_desc-preproc_T1w.nii.gz")
        node.inputs.mask_file = str(anat / f"{subject}_desc-brain_mask.nii.gz")
        node.inputs.reference = str(reference_file)
        return nib.load(node.run().outputs.out_file).get_fdata()

    saved = shutil.copy(written["T1w"], tmp_path / "saved.json")
    for subject in ("sub-02", "sub-03"):
        np.testing.assert_array_equal(
            harmonized(subject, written["T1w"], tmp_path / f"cohort_{subject}"),
            harmonized(subject, saved, tmp_path / f"new_{subject}"),
        )
    mask = nib.load(out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz").get_fdata() > 0
    landmarks = [hz.image_landmarks(harmonized(s, saved, tmp_path / s)[mask]) for s in
                 ("sub-01", "sub-02", "sub-03")]  # fmt: skip
    for found in landmarks:  # every site lands on the reference's standard landmarks
        np.testing.assert_allclose(found, reference.landmarks, atol=1.0)


@pytest.mark.slow
def test_group_reference_then_participant_pass_and_a_new_participant(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w"], "sub-02": ["T1w"]})
    _scale_site(bids, "sub-02", gain=2.5, offset=30.0)
    out, work = tmp_path / "out", tmp_path / "work"
    _run(bids, out, work, "participant")
    _run(bids, out, work, "group", "--tasks", "harmonize")

    references = out / "group" / "harmonize"
    assert sorted(p.name for p in references.iterdir()) == [
        "desc-nyul_T1w_reference.json", "desc-nyul_T2w_reference.json"
    ]  # fmt: skip
    t1w_reference = json.loads((references / "desc-nyul_T1w_reference.json").read_text())
    assert [i["participant_id"] for i in t1w_reference["Images"]] == ["sub-01", "sub-02"]
    assert t1w_reference["Images"][0]["image"] == "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz"

    _run(bids, out, work, "participant", "--tasks", "harmonize",
         "--harmonize-reference", str(references))  # fmt: skip
    sidecar = json.loads((out / "sub-02/anat/sub-02_desc-harmonized_T1w.json").read_text())
    assert sidecar["Method"] == "nyul"
    assert sidecar["Reference"]["Path"] == str(references / "desc-nyul_T1w_reference.json")
    assert sidecar["Landmarks"]["Standard"] == t1w_reference["StandardLandmarks"]
    assert (out / "sub-01/anat/sub-01_space-T1w_desc-harmonized_T2w.nii.gz").is_file()
    before = [_brain_landmarks(out, s, "desc-preproc_T1w") for s in ("sub-01", "sub-02")]
    after = [_brain_landmarks(out, s, "desc-harmonized_T1w") for s in ("sub-01", "sub-02")]
    assert np.abs(before[0] - before[1]).max() > 50  # the second site differs...
    assert np.abs(after[0] - after[1]).max() < 1.0  # ...and no longer after harmonization

    # new data, harmonized with a copy of the saved reference file: the cohort run's result
    saved = tmp_path / "saved_reference.json"
    shutil.copy(references / "desc-nyul_T1w_reference.json", saved)
    new_bids = tmp_path / "new"
    shutil.copytree(bids / "sub-02", new_bids / "sub-02")
    shutil.copy(bids / "dataset_description.json", new_bids)
    new_out = tmp_path / "new_out"
    _run(new_bids, new_out, tmp_path / "new_work", "participant", "--tasks", "harmonize",
         "--harmonize-method", "nyul", "--harmonize-reference", str(saved))  # fmt: skip
    name = "sub-02/anat/sub-02_desc-harmonized_T1w.nii.gz"
    np.testing.assert_array_equal(
        nib.load(new_out / name).get_fdata(), nib.load(out / name).get_fdata()
    )
    assert json.loads((new_out / name.replace(".nii.gz", ".json")).read_text())["Reference"] == {
        "Path": str(saved), "Sha256": sidecar["Reference"]["Sha256"]
    }  # fmt: skip


# --- learned harmonization: traveling-subject pairs, training, bundle lookup, the task ---------


def test_traveling_subject_pairs_target_the_same_anatomy_at_the_target_site():
    from bids_synth.simulate.normalisation import mr_scale
    from bids_synth.simulate.scanner import ScannerStyle
    from bids_synth.simulate.tissues import Tissue
    from bids_synth.simulate.training import TrainingPairs, harmonization_scale

    common = dict(source=("T1w", "T2w"), target="T1w", spacing=6.0, patch=(16, 16, 16),
                  target_site=0, seed=3)  # fmt: skip
    from_site1 = TrainingPairs(source_sites=(1,), **common)
    from_site2 = TrainingPairs(source_sites=(2,), **common)
    a, b = from_site1.volumes(0), from_site2.volumes(0)
    assert a["source"].shape[0] == 2  # T1w and T2w channels
    assert not torch_equal(a["source"], b["source"])  # other scanner, other input...
    assert torch_equal(a["target"], b["target"])  # ...same anatomy, same site-0 target
    draw = from_site1.draw(0)
    assert draw.site == 1 and draw.params["style"]["name"] == "site1"
    labels = draw.labels.numpy()
    target = a["target"][0].numpy()
    medians = {t: np.median(target[labels == t]) for t in (Tissue.CSF, Tissue.GM, Tissue.WM)}
    assert 0.8 < max(medians.values()) < 1.1  # divided by site 0's gain: reference tissue ≈ 1
    assert medians[Tissue.WM] > medians[Tissue.GM] > medians[Tissue.CSF]  # site 0's T1w contrast
    gain = ScannerStyle.for_site(0).mr["T1w"].gain
    assert harmonization_scale(0, "T1w") == gain
    raw = TrainingPairs(source_sites=(1,), normalise=False, **common).volumes(0)
    np.testing.assert_allclose(raw["target"].numpy(), a["target"].numpy() * gain, rtol=1e-5)
    # the source is the acquired (noisy, biased) image, normalised as the head model does
    scale = mr_scale(draw.images["T1w"], draw.head_mask)
    np.testing.assert_allclose(a["source"][0].numpy(), (draw.images["T1w"] / scale).numpy(),
                               rtol=1e-5)  # fmt: skip
    random_styles = TrainingPairs(**common)  # default: a random style per head
    assert random_styles.draw(0).params["style"]["name"].startswith("style")
    with pytest.raises(ValueError, match="MR to MR"):
        TrainingPairs(source="T1w", target="CT", target_site=0)


def torch_equal(x, y) -> bool:
    return bool((x == y).all())


TINY_TRAIN = ["--simulated", "--label-sources", "phantom", "--spacing", "6", "--pool", "2",
              "--validation-subjects", "1", "--channels", "4", "8", "--patch", "16", "16", "16",
              "--batch-size", "2", "--steps", "3", "--val-every", "3", "--validation-draws", "1",
              "--device", "cpu"]  # fmt: skip


def _train_harmonizer(out, site, sources=("T1w",), bundle_id=None):
    from bids_synth.cli import main

    args = ["train", "--task", "harmonize", "--out", str(out), "--source", *sources,
            "--target", "T1w", "--target-site", str(site), *TINY_TRAIN,
            "--id", bundle_id or f"harmonize-test-site{site}-{len(sources)}"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def harmonizers(tmp_path_factory):
    """Tiny harmonization bundles: T1w → site 0, T1w+T2w → site 0, T1w → site 1."""
    root = tmp_path_factory.mktemp("harmonizers")
    return {
        "t1w-site0": _train_harmonizer(root / "a", 0),
        "t1w-t2w-site0": _train_harmonizer(root / "b", 0, ("T1w", "T2w")),
        "t1w-site1": _train_harmonizer(root / "c", 1),
    }


def test_training_with_a_target_site_writes_the_target_into_the_bundle(harmonizers):
    from bids_synth.models import Bundle
    from bids_synth.simulate.scanner import ScannerStyle

    meta = Bundle.read(harmonizers["t1w-site0"]).meta
    assert meta["task"] == "harmonize" and meta["input"]["suffixes"] == ["T1w"]
    assert meta["input"]["channels"] == 1 and meta["input"]["spacing_mm"] == [6.0] * 3
    gain = ScannerStyle.for_site(0).mr["T1w"].gain
    assert meta["output"] == {"suffix": "T1w", "units": "site0 scanner units", "range": None,
                              "normalization": {"method": "scale", "offset": 0.0, "scale": gain}}  # fmt: skip
    harmonization = meta["harmonization"]
    assert harmonization["target"] == "site0" and harmonization["target_site"] == 0
    assert harmonization["target_style"] == json.loads(
        json.dumps(ScannerStyle.for_site(0).to_json())
    )
    assert harmonization["source_styles"] == ["random"]
    assert "at site 0 (traveling subjects" in meta["training"]["data"]["description"]
    assert "--target-site 0" in meta["training"]["command"]
    # the Nyul reference of its own outputs at the target site travels with it, in the card too
    entry = harmonization["output_reference"]
    assert entry["method"] == "nyul" and "acquired at site0" in entry["learned_from"]
    reference, content = read_reference(harmonizers["t1w-site0"] / entry["file"])
    assert content["Suffix"] == "T1w" and content["Mask"] == "desc-head_mask"
    assert len(content["Images"]) == 6
    assert reference.landmarks[0] == 0 and reference.landmarks[-1] == 100
    assert entry["file"] in (harmonizers["t1w-site0"] / "MODEL_CARD.md").read_text()
    both = Bundle.read(harmonizers["t1w-t2w-site0"]).meta
    assert both["input"]["channels"] == 2 and both["architecture"]["kwargs"]["in_channels"] == 2


def test_target_site_usage_errors(tmp_path, capsys):
    from bids_synth.cli import main

    base = ["train", "--task", "harmonize", "--out", str(tmp_path / "x"), *TINY_TRAIN]
    assert main([*base, "--target", "CT", "--target-site", "0"]) == 2
    assert "must be MR contrasts" in capsys.readouterr().err
    assert main([*base, "--target", "T1w", "--target-site", "0", "--source-sites", "x"]) == 2
    assert "'random' or a site number" in capsys.readouterr().err
    base[base.index("--simulated")] = "--bids-dir=."
    assert main([*base, "--target", "T1w", "--target-site", "0"]) == 2
    assert "add --simulated" in capsys.readouterr().err


def _installed(monkeypatch, tmp_path, harmonizers, *names):
    from bids_synth.models import registry

    home = tmp_path / "home"
    for name in names:
        shutil.copytree(harmonizers[name], home / "models" / name)
    monkeypatch.setenv("BIDS_SYNTH_HOME", str(home))
    monkeypatch.setattr(registry, "SHIPPED", tmp_path / "no-shipped-bundles")


def test_harmonization_bundles_are_chosen_by_target_and_contrasts(tmp_path, monkeypatch,
                                                                   harmonizers):  # fmt: skip
    from bids_synth.errors import ModelBundleError
    from bids_synth.models.selection import (
        bundle_target,
        choose_bundle,
        harmonization_bundles,
    )

    _installed(monkeypatch, tmp_path, harmonizers, "t1w-site0", "t1w-t2w-site0", "t1w-site1")
    assert {bundle_target(b) for b in harmonization_bundles("1")} == {"site1"}
    site0 = harmonization_bundles("site0")
    assert len(site0) == 2
    assert choose_bundle(site0, "T1w", ["T1w"]).meta["input"]["suffixes"] == ["T1w"]
    assert choose_bundle(site0, "T1w", ["T1w", "T2w"]).meta["input"]["suffixes"] == ["T1w", "T2w"]
    assert choose_bundle(site0, "T2w", ["T1w", "T2w"]) is None
    with pytest.raises(UsageError, match="several targets"):
        harmonization_bundles()
    with pytest.raises(ModelBundleError, match="no harmonization model bundle for target site7"):
        harmonization_bundles("7")
    with pytest.raises(ModelBundleError, match="harmonizes to site1, not site0"):
        harmonization_bundles("0", str(harmonizers["t1w-site1"]))


def test_without_a_reference_the_default_is_learned_once_its_bundle_passed_the_real_scan_check(
    tmp_path, monkeypatch, harmonizers
):
    from bids_synth.models.card import record_evaluation
    from bids_synth.workflows.synthesis.harmonize import default_method

    _installed(monkeypatch, tmp_path, harmonizers, "t1w-site0", "t1w-t2w-site0")
    home = tmp_path / "home" / "models"
    assert default_method(["T1w"]) == "whitestripe"  # no check recorded
    for name, passed in (("t1w-site0", True), ("t1w-t2w-site0", False)):
        record_evaluation(
            home / name, [], checks={"real_scans": {"passed": passed, "summary": "x"}}
        )
    assert default_method(["T1w"]) == "learned"
    assert default_method(["T1w", "T2w"]) == "whitestripe"  # this session's bundle failed it
    _installed(monkeypatch, tmp_path / "two", harmonizers, "t1w-site0", "t1w-site1")
    for name in ("t1w-site0", "t1w-site1"):
        record_evaluation(tmp_path / "two" / "home" / "models" / name, [],
                          checks={"real_scans": {"passed": True, "summary": "x"}})  # fmt: skip
    assert default_method(["T1w"]) == "whitestripe"  # several targets: the user chooses


def test_learned_harmonization_end_to_end(tmp_path, monkeypatch, harmonizers):
    from bids_synth.bids import SessionInputs
    from bids_synth.models import Bundle
    from bids_synth.simulate import simulate_subject
    from bids_synth.simulate.tissues import Tissue
    from bids_synth.workflows.synthesis.harmonize import TASK

    _installed(monkeypatch, tmp_path, harmonizers, "t1w-site0", "t1w-t2w-site0", "t1w-site1")
    draw = simulate_subject(5, spacing=6.0, site=2, contrasts=("T1w", "T2w"))
    files = {
        "t1w_preproc": draw.images["T1w"].numpy(),
        "T2w_registered": draw.images["T2w"].numpy(),
        "head_mask": draw.head_mask.numpy().astype(np.float32),
        "brain_mask": (draw.labels.numpy() >= Tissue.CSF).astype(np.float32),
    }
    paths = {k: str(save_nifti(tmp_path / f"{k}.nii.gz", v, draw.affine)) for k, v in files.items()}
    unit = SessionInputs("01", None, "sub-01_T1w.nii.gz", {"T2w": "sub-01_T2w.nii.gz"})
    build = dict(unit=unit, omp_nthreads=1, seed=0, device="cpu", name="harmonize_wf")
    branch = TASK.build(options={"method": "learned", "target": "site0"}, **build)
    assert sorted(branch.inputs) == ["T2w_registered", "brain_mask", "head_mask", "t1w_preproc"]
    meta = branch.outputs["t1w"]["metadata"]
    chosen = Bundle.read(harmonizers["t1w-t2w-site0"])  # the session has a T2w: both contrasts
    assert meta["Method"] == "learned" and meta["Target"] == "site0"
    assert meta["Inputs"] == ["T1w", "T2w"] and meta["Units"].startswith("a.u. (Nyul standard")
    reference_file = chosen.path / chosen.meta["harmonization"]["output_reference"]["file"]
    standardisation = meta["Standardisation"]
    assert standardisation["Method"] == "nyul" and standardisation["Mask"] == "desc-head_mask"
    assert standardisation["Reference"]["Sha256"] == sha256(reference_file)
    assert meta["Model"] == {"Id": chosen.id, "Version": chosen.version, "Sha256": chosen.sha256,
                             "Digest": chosen.digest}  # fmt: skip
    assert (
        meta["TargetStyle"]["Protocol"]["gain"] == chosen.meta["output"]["normalization"]["scale"]
    )
    assert branch.outputs["t1w"]["sources"] == ["sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz"]

    workflow = branch.workflow
    workflow.base_dir = str(tmp_path / "work")
    for field, path in paths.items():
        setattr(workflow.get_node("inputnode").inputs, field, path)
    result = workflow.run()
    nodes = {n.name: n for n in result.nodes()}
    node = nodes["harmonize_t1w"]
    harmonized = nib.load(node.result.outputs.out_file).get_fdata()
    head = files["head_mask"] > 0.5
    assert harmonized.shape == files["t1w_preproc"].shape
    assert np.all(harmonized[~head] == 0) and np.all(harmonized >= 0)
    assert np.isfinite(harmonized).all() and harmonized[head].max() > 0
    assert node.result.outputs.metadata["Device"] == "cpu"
    # then the bundle's reference standardises it in the head: its outer landmarks at 0 and 100
    standardised = nib.load(nodes["standardise_t1w"].result.outputs.out_file).get_fdata()
    np.testing.assert_allclose(np.percentile(standardised[head], [1, 99]), [0, 100], atol=0.5)

    # the bundles learned whole heads: a skull-stripped image is refused in one line
    from bids_synth.errors import InvalidImageError
    from bids_synth.interfaces.bundle import BundleMRPrediction
    from bids_synth.models import Bundle
    from bids_synth.models.selection import bundle_inputs

    stripped = {"sources": [paths["t1w_preproc"]], "head_mask": paths["brain_mask"]}
    with pytest.raises(InvalidImageError, match="needs a whole-head image"):
        BundleMRPrediction(**bundle_inputs(Bundle.read(harmonizers["t1w-site0"])),
                           brain_mask=paths["brain_mask"], **stripped).run(cwd=str(tmp_path))  # fmt: skip

    # a bundle whose reference file went missing: one clear error, before anything runs
    from bids_synth.errors import ModelBundleError

    installed = tmp_path / "home" / "models" / "t1w-t2w-site0" / "nyul_reference.json"
    installed.rename(tmp_path / "moved.json")
    with pytest.raises(ModelBundleError, match="its Nyul reference .* is missing"):
        TASK.build(options={"method": "learned", "target": "site0"}, **build)
    (tmp_path / "moved.json").rename(installed)

    # without T2w the T1w-only bundle; --harmonize-target alone selects the learned method
    t1w_only = SessionInputs("01", None, "sub-01_T1w.nii.gz")
    branch = TASK.build(options={"target": "1"}, **{**build, "unit": t1w_only})
    assert branch.outputs["t1w"]["metadata"]["Model"]["Id"] == "harmonize-test-site1-1"
    assert sorted(branch.inputs) == ["brain_mask", "head_mask", "t1w_preproc"]


def save_nifti(path, data, aff):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), aff), str(path))
    return path


def test_the_participant_pass_finds_the_group_reference_in_the_output_dataset(tmp_path):
    from bids_synth.bids import SessionInputs
    from bids_synth.synthesis.harmonization_reference import reference_path
    from bids_synth.workflows.synthesis.harmonize import TASK

    unit = SessionInputs("01", None, "sub-01_T1w.nii.gz")
    build = dict(unit=unit, omp_nthreads=1, seed=0, device="cpu", name="harmonize_wf")
    out = tmp_path / "out"
    branch = TASK.build(options={"output_dir": str(out)}, **build)
    assert branch.outputs["t1w"]["metadata"]["Method"] == "whitestripe"  # no group level yet
    path = write_reference(reference_path(out, "T1w"), hz.learn_nyul([np.linspace(0, 10, 11)]),
                           suffix="T1w", mask="desc-brain_mask")  # fmt: skip
    default = TASK.build(options={"output_dir": str(out)}, **build)
    assert default.outputs["t1w"]["metadata"]["Method"] == "whitestripe"  # a rerun keeps its method
    branch = TASK.build(options={"output_dir": str(out), "method": "nyul"}, **build)
    assert branch.outputs["t1w"]["metadata"]["Reference"]["Path"] == str(path.resolve())
    explicit = TASK.build(options={"output_dir": str(out), "method": "zscore"}, **build)
    assert explicit.outputs["t1w"]["metadata"]["Method"] == "zscore"


def test_head_box_grows_the_bounding_box_by_the_margin_within_the_grid():
    from bids_synth.models.prediction import head_box

    head = np.zeros((20, 30, 40), bool)
    head[2:10, 12:15, 30:39] = True
    assert head_box(head, margin=4) == (slice(0, 14), slice(8, 19), slice(26, 40))
    assert head_box(np.zeros((3, 4, 5), bool)) == (slice(0, 3), slice(0, 4), slice(0, 5))
