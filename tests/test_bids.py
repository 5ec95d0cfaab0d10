"""Input discovery through pybids and derivative names from pybids path patterns."""

import pytest
from bids import BIDSLayout
from bids_validator import BIDSValidator
from helpers import write_bids

from bids_synth.bids import (
    SOURCE_ENTITIES,
    build_derivative_path,
    build_raw_path,
    collect_sessions,
    load_layout,
    select_subjects,
    source_entities,
)
from bids_synth.derivatives import sidecar


def test_sessions_and_modalities_are_found(bids_dir):
    layout = load_layout(bids_dir)
    assert select_subjects(layout, []) == ["01", "02"]
    (unit,) = collect_sessions(layout, "01")
    assert unit.session is None and set(unit.others) == {"T2w", "CT"}
    ses_a, ses_b = collect_sessions(layout, "02")
    assert (ses_a.session, set(ses_a.others)) == ("a", {"T2w"})
    assert (ses_b.session, set(ses_b.others)) == ("b", {"CT"})
    assert [u.session for u in collect_sessions(layout, "02", sessions=["b"])] == ["b"]


def test_several_t1w_runs_choose_the_first_deterministically(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["run-2_T1w", "run-1_T1w", "ct"]})
    (unit,) = collect_sessions(load_layout(bids), "01")
    assert unit.t1w.endswith("sub-01_run-1_T1w.nii.gz")
    assert [p.split("/")[-1] for p in unit.ignored_t1w] == ["sub-01_run-2_T1w.nii.gz"]
    assert unit.others["CT"].endswith("_ct.nii.gz")  # lower-case CT suffix accepted


def test_filters_select_acquisitions(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["acq-fast_T1w", "acq-mprage_T1w"]})
    layout = load_layout(bids)
    (unit,) = collect_sessions(layout, "01", filters={"t1w": {"acquisition": "mprage"}})
    assert "acq-mprage" in unit.t1w and not unit.ignored_t1w


@pytest.mark.parametrize(
    ("entities", "expected"),
    [
        ({"desc": "preproc", "suffix": "T1w"}, "sub-01/ses-a/anat/sub-01_ses-a_desc-preproc_T1w.nii.gz"),
        ({"desc": "brain", "suffix": "mask"}, "sub-01/ses-a/anat/sub-01_ses-a_desc-brain_mask.nii.gz"),
        ({"space": "T1w", "desc": "preproc", "suffix": "T2w"},
         "sub-01/ses-a/anat/sub-01_ses-a_space-T1w_desc-preproc_T2w.nii.gz"),
        ({"space": "T1w", "desc": "synthetic", "suffix": "CT"},
         "sub-01/ses-a/anat/sub-01_ses-a_space-T1w_desc-synthetic_CT.nii.gz"),
        ({"res": "iso", "desc": "superres", "suffix": "T2w"},
         "sub-01/ses-a/anat/sub-01_ses-a_res-iso_desc-superres_T2w.nii.gz"),
        ({"acquisition": "highres", "run": "01", "desc": "brain", "suffix": "mask"},
         "sub-01/ses-a/anat/sub-01_ses-a_acq-highres_run-01_desc-brain_mask.nii.gz"),
        ({"task": "rest", "ceagent": "gad", "reconstruction": "norm", "echo": "2", "part": "mag",
          "chunk": "1", "space": "T1w", "desc": "preproc", "suffix": "T2w"},
         "sub-01/ses-a/anat/sub-01_ses-a_task-rest_ce-gad_rec-norm_echo-2_part-mag_space-T1w"
         "_chunk-1_desc-preproc_T2w.nii.gz"),
        ({"acquisition": "fast", "from": "CT", "to": "T1w", "mode": "image", "suffix": "xfm",
          "extension": ".mat"},
         "sub-01/ses-a/anat/sub-01_ses-a_acq-fast_from-CT_to-T1w_mode-image_xfm.mat"),
    ],
)  # fmt: skip
def test_derivative_names(entities, expected):
    path = build_derivative_path({"subject": "01", "session": "a", "datatype": "anat", **entities})
    assert path == expected


def test_source_entities_are_the_anat_entities_of_bids_in_its_order():
    """What derivative names keep of their source: the schema's entities of non-parametric
    anatomical images (subject and session aside), in the schema's order."""
    schema = pytest.importorskip("bidsschematools.schema").load_schema()
    allowed = schema.rules.files.raw.anat.nonparametric.entities
    in_order = [name for name in schema.rules.entities if name in allowed]
    assert SOURCE_ENTITIES == tuple(e for e in in_order if e not in ("subject", "session"))
    name = "sub-01_ses-a_task-x_acq-hi_rec-norm_run-01_chunk-2_T1w.nii.gz"
    assert source_entities(f"/data/sub-01/ses-a/anat/{name}") == {
        "task": "x", "acquisition": "hi", "reconstruction": "norm", "run": "01", "chunk": "2"
    }  # fmt: skip


def test_derivative_names_index_back_with_pybids(tmp_path):
    """Names written with our patterns parse back into the same entities with pybids."""
    root = tmp_path / "deriv"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        '{"Name": "d", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}'
    )
    written = {
        build_derivative_path({"subject": "01", "datatype": "anat", "desc": "preproc", "suffix": "T1w"}),
        build_derivative_path({"subject": "01", "datatype": "anat", "desc": "head", "suffix": "mask"}),
        build_derivative_path({"subject": "01", "datatype": "anat", "from": "T2w", "to": "T1w",
                               "mode": "image", "suffix": "xfm", "extension": ".mat"}),
    }  # fmt: skip
    for relative in written:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
    layout = BIDSLayout(root, validate=False, config=["bids", "derivatives"])
    (preproc,) = layout.get(desc="preproc", suffix="T1w")
    assert preproc.entities["subject"] == "01"
    assert layout.get(desc="head", suffix="mask")
    (xfm,) = layout.get(suffix="xfm", extension=".mat")
    assert xfm.filename == "sub-01_from-T2w_to-T1w_mode-image_xfm.mat"


def test_raw_names_pass_the_bids_validator():
    validator = BIDSValidator()
    for suffix in ("T1w", "T2w", "FLAIR", "PD"):
        path = build_raw_path(
            {"subject": "01", "session": "a", "datatype": "anat", "suffix": suffix}
        )
        assert validator.is_bids("/" + path)


def test_raw_ct_path():
    assert build_raw_path({"subject": "01", "datatype": "anat", "suffix": "CT"}) == (
        "sub-01/anat/sub-01_CT.nii.gz"
    )


def test_runs_are_sorted_by_number_not_as_text(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["run-10_T1w", "run-2_T1w", "run-1_T1w"]})
    (unit,) = collect_sessions(load_layout(bids), "01")
    assert unit.t1w.endswith("sub-01_run-1_T1w.nii.gz")
    assert [p.split("_")[-2] for p in unit.ignored_t1w] == ["run-2", "run-10"]


def test_processed_images_are_not_raw_inputs(tmp_path):
    bids = write_bids(
        tmp_path / "bids",
        {"sub-01": ["desc-preproc_T1w", "space-MNI152NLin2009cAsym_T1w", "T1w", "desc-x_T2w"]},
    )
    (unit,) = collect_sessions(load_layout(bids, validate=False), "01")
    assert unit.t1w.endswith("sub-01_T1w.nii.gz") and not unit.ignored_t1w
    assert "T2w" not in unit.others


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["acq-mprage_T1w", "rec-norm_T1w"], "choose one with --bids-filter-file"),
        (["chunk-1_T1w", "chunk-2_T1w"], "chunks of one image are not joined"),
    ],
)
def test_candidates_differing_beyond_run_are_ambiguous(tmp_path, names, message):
    bids = write_bids(tmp_path / "bids", {"sub-01": names, "sub-02": ["T1w"]})
    (unit,) = collect_sessions(load_layout(bids), "01")
    assert message in unit.problem and all(name in unit.problem for name in names)
    (other,) = collect_sessions(load_layout(bids), "02")
    assert not other.problem


def test_a_derivatives_dataset_is_refused(tmp_path):
    from bids_synth.errors import InputDatasetError

    bids = write_bids(tmp_path / "bids", {"sub-01": ["desc-preproc_T1w"]})
    (bids / "dataset_description.json").write_text(
        '{"Name": "fmriprep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}'
    )
    with pytest.raises(InputDatasetError, match="is a derivatives dataset"):
        load_layout(bids)


def test_a_sidecar_lists_each_source_once(tmp_path):
    t1w = str(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    content = sidecar(
        sources=[t1w, t1w],
        digests={t1w: "0" * 64},
        raw_root=str(tmp_path),
        entities={"subject": "01", "desc": "denoised", "suffix": "T1w"},
        reference=t1w,
    )
    assert content["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
