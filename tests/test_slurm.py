"""Slurm: nipype's SLURM and SLURMGraph plugins and the job-array recipe on a real cluster.

The tests marked ``slurm`` start a single-node Slurm cluster on localhost (``tests/slurm``; needs
Debian's ``slurm-wlm`` and ``munge``), run a small cohort through each route and check that the
derivatives are bitwise identical to a local MultiProc run: ``pytest -m slurm``. The other tests
check the recipe's participant selection and the per-node resource requests without Slurm.
"""

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_bids
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from slurm.cluster import local_slurm, missing_programs

from bids_synth.config import Config
from bids_synth.execution import plugin_settings, request_slurm_resources
from bids_synth.workflows import WORKFLOW_NAME, workflow_base_dir

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "workflows" / "plugins"
ARRAY = ROOT / "workflows" / "slurm" / "participants-array.sbatch"
SUBMIT = ROOT / "workflows" / "slurm" / "submit-cohort.sh"
BIDS_SYNTH = str(Path(sys.executable).with_name("bids-synth"))
COHORT = {"sub-01": ["T1w", "T2w"], "sub-02/ses-a": ["T1w", "CT"]}
# the same ITK thread count everywhere: N4's last bits depend on it (see execution.run_workflow)
COMMON = ["--omp-nthreads", "1"]
requires_slurm = pytest.mark.skipif(
    bool(missing_programs()), reason=f"Slurm/munge not installed: {missing_programs()}"
)


def derivative_digests(out: Path) -> dict[str, str]:
    """sha256 of every derivative (images, transforms, sidecars, dataset files).

    Left out: run logs and HTML reports, which name the run and its timings.
    """
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.name.endswith((".nii.gz", ".mat", ".json", ".tsv"))
        and not {"log", "logs", "group"} & set(path.relative_to(out).parts)
    }


def bids_synth(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIDS_SYNTH, *map(str, args)], env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def cluster():
    with local_slurm(cpus=2, memory_mb=4096) as running:
        yield running


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The cohort's BIDS folder and the digests of its derivatives from a local MultiProc run."""
    root = tmp_path_factory.mktemp("cohort")
    bids = write_bids(root / "bids", COHORT)
    local = bids_synth(
        bids, root / "out", "participant", "-w", root / "work", "--nprocs", 2, *COMMON
    )
    assert local.returncode == 0, local.stderr
    digests = derivative_digests(root / "out")
    assert "sub-02/ses-a/anat/sub-02_ses-a_space-T1w_desc-preproc_CT.nii.gz" in digests
    return bids, digests


@pytest.mark.slurm
@requires_slurm
@pytest.mark.parametrize("preset", ["slurm.yml", "slurm-graph.yml"])
def test_nipype_slurm_plugins_match_the_local_run(cluster, cohort, tmp_path, preset):
    bids, local = cohort
    out, work = tmp_path / "out", tmp_path / "work"
    done = bids_synth(
        bids, out, "participant", "-w", work, "--use-plugin", PLUGINS / preset, *COMMON,
        env=cluster.env,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stderr}\n{cluster.logs()}"
    batch = workflow_base_dir(work) / WORKFLOW_NAME / "batch"
    assert list(batch.glob("batchscript_*.sh")), "no job submitted"
    assert derivative_digests(out) == local
    assert not cluster.queue()  # bids-synth returned only once its jobs had finished


@pytest.mark.slurm
@requires_slurm
def test_job_array_recipe_matches_the_local_run(cluster, cohort, tmp_path):
    bids, local = cohort
    out, work = tmp_path / "out", tmp_path / "work"
    env = {
        **cluster.env,
        "BIDS_SYNTH": BIDS_SYNTH,
        "SBATCH_ARGS": "--cpus-per-task=1 --mem=1G",  # the recipe's defaults exceed this node
    }
    submitted = subprocess.run(
        ["bash", str(SUBMIT), str(bids), str(out), str(work), *COMMON],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert "(2 array tasks)" in submitted.stdout
    cluster.wait_idle(timeout=900)

    logs = sorted(work.glob("bids-synth-*.log"))
    assert len(logs) == 3, logs  # two array tasks and the group job
    assert (work / "01").is_dir() and (work / "02").is_dir()  # one work folder per participant
    assert derivative_digests(out) == local, "\n".join(log.read_text() for log in logs)
    with open(out / "group" / "cohort.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(row["participant_id"], row["status"]) for row in rows] == [
        ("sub-01", "success"),
        ("sub-02", "success"),
    ]


# --- without Slurm --------------------------------------------------------------------------


def run_array_task(bids: Path, task: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """The array script as Slurm would start task ``task``, with ``echo`` for bids-synth."""
    env = {
        **os.environ,
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_CPUS_PER_TASK": "4",
        "SLURM_MEM_PER_NODE": "16384",
        "BIDS_SYNTH": "echo",
        **(env or {}),
    }
    return subprocess.run(
        ["bash", str(ARRAY), str(bids), "/out", "/work", "--omp-nthreads", "2"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_array_recipe_selects_one_participant_per_task(tmp_path):
    bids = tmp_path / "bids"
    for label in ("03", "01", "10"):
        (bids / f"sub-{label}").mkdir(parents=True)
    listed = subprocess.run(
        ["bash", str(ARRAY), "--list", str(bids)], capture_output=True, text=True
    )
    assert listed.stdout.split() == ["01", "03", "10"]  # the sub-* folders, sorted

    (bids / "participants.tsv").write_text("age\tparticipant_id\n30\tsub-10\n41\tsub-03\n")
    task = run_array_task(bids, 2)
    assert task.returncode == 0, task.stderr
    assert task.stdout.splitlines()[-1] == (
        f"{bids} /out participant --participant-label 03 -w /work/03 --nprocs 4 --mem-gb 16 "
        "--omp-nthreads 2"
    )

    labels = tmp_path / "labels.txt"
    labels.write_text("sub-01\n\n10\n")
    command = run_array_task(bids, 2, {"PARTICIPANTS": str(labels)}).stdout.splitlines()[-1]
    assert command.split()[4] == "10"  # blank lines skipped, sub- prefix optional
    beyond = run_array_task(bids, 3, {"PARTICIPANTS": str(labels)})
    assert beyond.returncode == 2 and "no such participant" in beyond.stderr


def test_slurm_jobs_request_each_nodes_resources():
    workflow = pe.Workflow(name="wf")
    small = pe.Node(niu.IdentityInterface(fields=["x"]), name="small")
    big = pe.Node(niu.IdentityInterface(fields=["x"]), name="big", n_procs=4, mem_gb=2.5)
    own = pe.Node(niu.IdentityInterface(fields=["x"]), name="own", n_procs=8)
    own.plugin_args = {"sbatch_args": "--gres=gpu:1"}
    workflow.add_nodes([small, big, own])
    request_slurm_resources(workflow)
    assert big.plugin_args["sbatch_args"].split() == ["--cpus-per-task=4", "--mem=2560M"]
    assert small.plugin_args["sbatch_args"].split()[0] == "--cpus-per-task=1"
    assert own.plugin_args == {"sbatch_args": "--gres=gpu:1"}  # a node's own request wins


def test_slurm_graph_jobs_are_tagged_with_the_run():
    config = Config()
    config.nipype.plugin, config.nipype.plugin_args = "SLURMGraph", {"sbatch_args": "-p short"}
    config.execution.run_id = "20260101-000000_abcd1234"
    plugin, args = plugin_settings(config)
    assert plugin == "SLURMGraph"
    assert args["sbatch_args"].split() == [
        "-p", "short", "--comment=bids-synth:20260101-000000_abcd1234", "--kill-on-invalid-dep=yes",
    ]  # fmt: skip
