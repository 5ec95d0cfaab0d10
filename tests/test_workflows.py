"""Build-only tests: the workflow graph for several datasets and options, without running it."""

import pytest
from helpers import brainmask_bundle, write_bids

from bids_synth.bids import collect_sessions, load_layout
from bids_synth.config import Config
from bids_synth.workflows import WORKFLOW_NAME
from bids_synth.workflows.base import init_bids_synth_wf


def build_graph(tmp_path, layout_spec, **workflow_options):
    bids = write_bids(tmp_path / "bids", layout_spec)
    layout = load_layout(bids)
    units = [
        unit for subject in layout.get_subjects() for unit in collect_sessions(layout, subject)
    ]
    config = Config()
    config.execution.bids_dir = str(bids)
    config.execution.output_dir = str(tmp_path / "out")
    config.execution.work_dir = str(tmp_path / "work")
    config.execution.run_id = "test"
    config.nipype.omp_nthreads = 1
    for key, value in workflow_options.items():
        setattr(config.workflow, key, value)
    workflow = init_bids_synth_wf(config, units)
    graph = workflow._create_flat_graph()
    return {node.fullname.removeprefix(f"{WORKFLOW_NAME}.") for node in graph.nodes}, graph


@pytest.mark.parametrize("transform", ["rigid", "affine"])
@pytest.mark.parametrize(
    "spec",
    [
        {"sub-01": ["T1w"]},
        {"sub-01": ["T1w", "T2w", "FLAIR", "PD", "CT"]},
        {"sub-01/ses-a": ["T1w", "T2w"], "sub-01/ses-b": ["T1w", "CT"], "sub-02": ["T1w", "ct"]},
    ],
)
def test_graph_has_one_branch_per_session_and_modality(tmp_path, spec, transform):
    nodes, graph = build_graph(tmp_path, spec, coreg_transform=transform)
    for unit, suffixes in spec.items():
        subject, _, session = unit.partition("/")
        branch = f"{subject.replace('-', '_')}_wf." + (
            f"{session.replace('-', '_')}_wf" if session else "anat_wf"
        )
        assert f"{branch}.anat_preproc_wf.n4" in nodes
        assert f"{branch}.derivatives_wf.commit" in nodes
        for suffix in suffixes:
            if suffix == "T1w":
                continue
            name = "ct" if suffix.lower() == "ct" else suffix.lower()
            assert f"{branch}.coreg_{name}_wf.register" in nodes
            assert (f"{branch}.coreg_{name}_wf.n4" in nodes) == (name != "ct")  # no N4 for CT
            kind = "CT" if name == "ct" else suffix
            assert f"{branch}.derivatives_wf.ds_{kind}_xfm" in nodes
    registers = [n for n in graph.nodes if n.name == "register"]
    assert all(n.inputs.transform == transform for n in registers)


def test_every_sink_feeds_the_commit(tmp_path):
    _, graph = build_graph(tmp_path, {"sub-01": ["T1w", "T2w", "CT"]})
    commit = next(n for n in graph.nodes if n.name == "commit")
    merge = next(graph.predecessors(commit))
    sinks = {n.name for n in graph.predecessors(merge)}
    assert sinks == {
        "ds_t1w_preproc", "ds_head_mask", "ds_brain_mask",
        "ds_T2w_xfm", "ds_T2w_registered", "ds_CT_xfm", "ds_CT_registered",
    }  # fmt: skip


def test_a_registered_task_is_wired_between_preprocessing_and_the_sinks(tmp_path, monkeypatch):
    """A task's inputs come from the session's providers, its outputs reach the commit."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from bids_synth.workflows import base, synthesis

    def build(*, unit, options, omp_nthreads, seed, device, name):
        if "T2w" not in unit.others:
            return None
        workflow = pe.Workflow(name=name)
        inputnode = pe.Node(niu.IdentityInterface(fields=["image", "mask"]), name="inputnode")
        outputnode = pe.Node(niu.IdentityInterface(fields=["out"]), name="outputnode")
        workflow.connect(inputnode, "image", outputnode, "out")
        spec = {"entities": {"desc": "copied", "suffix": "T2w"}, "sources": [unit.others["T2w"]]}
        return synthesis.TaskBranch(
            workflow, {"image": "T2w_registered", "mask": "brain_mask"}, {"out": spec}
        )

    task = synthesis.Task(name="copy", help="test task", build=build)
    monkeypatch.setattr(base, "registered_tasks", lambda: {"copy": task})
    nodes, graph = build_graph(
        tmp_path, {"sub-01": ["T1w", "T2w"], "sub-02": ["T1w"]}, tasks=["copy"]
    )
    assert "sub_01_wf.anat_wf.copy_wf.inputnode" in nodes
    assert "sub_01_wf.anat_wf.derivatives_wf.ds_copy_out" in nodes
    assert not any(name.startswith("sub_02_wf.anat_wf.copy_wf") for name in nodes)  # no T2w
    sink = next(
        n
        for n in graph.nodes
        if n.fullname.endswith("sub_01_wf.anat_wf.derivatives_wf.ds_copy_out")
    )
    assert sink.inputs.entities["desc"] == "copied"


def test_run_time_metadata_of_a_task_reaches_its_sink(tmp_path, monkeypatch):
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from bids_synth.workflows import base, synthesis

    def build(*, unit, options, omp_nthreads, seed, device, name):
        workflow = pe.Workflow(name=name)
        inputnode = pe.Node(niu.IdentityInterface(fields=["image"]), name="inputnode")
        outputnode = pe.Node(
            niu.IdentityInterface(fields=["out", "out_metadata"]), name="outputnode"
        )
        workflow.connect(inputnode, "image", outputnode, "out")
        spec = {"entities": {"desc": "copied", "suffix": "T1w"}, "sources": [unit.t1w]}
        return synthesis.TaskBranch(workflow, {"image": "t1w_preproc"}, {"out": spec})

    task = synthesis.Task(name="copy", help="test task", build=build)
    monkeypatch.setattr(base, "registered_tasks", lambda: {"copy": task})
    _, graph = build_graph(tmp_path, {"sub-01": ["T1w"]}, tasks=["copy"])
    sink = next(n for n in graph.nodes if n.name == "ds_copy_out")
    feeding = {
        destination
        for _, _, data in graph.in_edges(sink, data=True)
        for _, destination in data["connect"]
    }
    assert "run_metadata" in feeding


def test_derivative_names_keep_the_entities_of_their_source(tmp_path):
    """Each output is named after the image it is made from (its first source): the T1w's
    acq/run for its own outputs and the synthetic CT, the T2w's and CT's for theirs."""
    from bids_synth.bids import build_derivative_path

    spec = {"sub-01": ["acq-highres_run-1_T1w", "rec-norm_run-02_T2w", "ce-gad_CT"]}
    _, graph = build_graph(tmp_path, spec, tasks=["sct"], task_options={"sct": {"method": "bulk"}})
    names = {
        build_derivative_path(node.inputs.entities).rsplit("/", 1)[-1]
        for node in graph.nodes
        if node.name.startswith("ds_")
    }
    t1w, t2w, ct = "sub-01_acq-highres_run-1", "sub-01_rec-norm_run-02", "sub-01_ce-gad"
    assert names == {
        f"{t1w}_desc-preproc_T1w.nii.gz", f"{t1w}_desc-head_mask.nii.gz",
        f"{t1w}_desc-brain_mask.nii.gz", f"{t1w}_space-T1w_desc-synthetic_CT.nii.gz",
        f"{t1w}_space-T1w_desc-synthetic_mumap.nii.gz",
        f"{t1w}_space-T1w_label-body_desc-synthetic_mask.nii.gz",
        f"{t2w}_space-T1w_desc-preproc_T2w.nii.gz", f"{t2w}_from-T2w_to-T1w_mode-image_xfm.mat",
        f"{ct}_space-T1w_desc-preproc_CT.nii.gz", f"{ct}_from-CT_to-T1w_mode-image_xfm.mat",
    }  # fmt: skip


def test_sidecar_parameters_known_at_build_and_at_run_time_are_both_kept():
    from bids_synth.interfaces.derivatives import merge_metadata

    built = {"Method": "nlm", "Parameters": {"implementation": "antspyx", "noise_model": "?"}}
    ran = {"Device": "cpu", "Parameters": {"noise_model": "Rician", "mask": "head"}}
    assert merge_metadata(built, ran) == {
        "Method": "nlm",
        "Device": "cpu",
        "Parameters": {"implementation": "antspyx", "noise_model": "Rician", "mask": "head"},
    }


def test_a_stopped_rerun_does_not_hide_an_earlier_outcome(tmp_path):
    from bids_synth.runlog import UnitOutcome, latest_outcomes, write_run_log

    def run(run_id, **statuses):
        outcomes = [UnitOutcome(f"sub-{s}", None, status=v) for s, v in statuses.items()]
        write_run_log(str(tmp_path), run_id, outcomes, started=0.0)

    run("20261206-000000_a", **{"01": "success", "02": "failed"})
    run("20261206-000100_b", **{"01": "interrupted", "02": "interrupted", "03": "interrupted"})
    latest = {o["participant_id"]: (o["status"], o["run_id"]) for o in latest_outcomes(tmp_path)}
    assert latest == {
        "sub-01": ("success", "20261206-000000_a"),
        "sub-02": ("failed", "20261206-000000_a"),
        "sub-03": ("interrupted", "20261206-000100_b"),
    }


def test_a_learned_brain_mask_is_a_node_option_and_its_sidecar_names_the_model(
    tmp_path, monkeypatch
):
    from bids_synth.models import install_bundle, registry

    monkeypatch.setenv("BIDS_SYNTH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "SHIPPED", tmp_path / "no-shipped-bundles")
    bundle = install_bundle(brainmask_bundle(tmp_path / "bundle").path)
    for method, expected in (("morphology", "morphology"), ("model", "model")):
        _, graph = build_graph(tmp_path / method, {"sub-01": ["T1w"]}, brain_mask_method=method)
        nodes = {n.name: n for n in graph.nodes}
        assert nodes["brain_mask"].inputs.method == expected
        sidecar = nodes["ds_brain_mask"].inputs.metadata
        assert sidecar["Method"] == expected
        assert ("Model" in sidecar) == (method == "model")
    assert sidecar["Model"]["Id"] == bundle.id
