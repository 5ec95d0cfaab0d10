"""A small participant + group run: bad participants are skipped, reruns resume identically."""

import csv
import hashlib
import json

import nibabel as nib
import numpy as np
from helpers import write_bids

from bids_synth.cli import main


def digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("sub-*/anat/*"))
    }


def test_participant_and_group_levels(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01": ["T1w", "T2w", "CT"], "sub-02": ["T1w"]})
    bad = bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    data = nib.load(bad).get_fdata()
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data.astype(np.float32), nib.load(bad).affine), str(bad))
    out, work = tmp_path / "out", tmp_path / "work"
    args = [
        str(bids),
        str(out),
        "participant",
        "-w",
        str(work),
        "--nprocs",
        "2",
        "--omp-nthreads",
        "1",
    ]

    assert main(args) == 5  # sub-02 has an invalid image, sub-01 still finishes
    assert not (out / "sub-02").exists()
    names = sorted(p.name for p in (out / "sub-01" / "anat").iterdir())
    assert names == sorted([
        "sub-01_desc-preproc_T1w.nii.gz", "sub-01_desc-preproc_T1w.json",
        "sub-01_desc-head_mask.nii.gz", "sub-01_desc-head_mask.json",
        "sub-01_desc-brain_mask.nii.gz", "sub-01_desc-brain_mask.json",
        "sub-01_from-T2w_to-T1w_mode-image_xfm.mat", "sub-01_from-T2w_to-T1w_mode-image_xfm.json",
        "sub-01_space-T1w_desc-preproc_T2w.nii.gz", "sub-01_space-T1w_desc-preproc_T2w.json",
        "sub-01_from-CT_to-T1w_mode-image_xfm.mat", "sub-01_from-CT_to-T1w_mode-image_xfm.json",
        "sub-01_space-T1w_desc-preproc_CT.nii.gz", "sub-01_space-T1w_desc-preproc_CT.json",
    ])  # fmt: skip
    sidecar = json.loads((out / "sub-01/anat/sub-01_space-T1w_desc-preproc_CT.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-01/anat/sub-01_CT.nii.gz",
                                  "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]  # fmt: skip
    assert sidecar["SoftwareName"] == "bids-synth" and "SoftwareVersion" in sidecar
    assert sidecar["SpatialReference"] == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    t1w_sidecar = json.loads((out / "sub-01/anat/sub-01_desc-preproc_T1w.json").read_text())
    assert t1w_sidecar["SkullStripped"] is False and "SpatialReference" not in t1w_sidecar
    head = json.loads((out / "sub-01/anat/sub-01_desc-head_mask.json").read_text())
    assert head["Type"] == "ROI"
    t1w = nib.load(out / "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz")
    assert t1w.header.get_xyzt_units()[0] == "mm"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert (out / "descriptions.tsv").read_text().startswith("desc_id\tdescription\ndesc-")
    mask = nib.load(out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz")
    assert mask.get_data_dtype() == np.uint8
    ct = nib.load(out / "sub-01/anat/sub-01_space-T1w_desc-preproc_CT.nii.gz")
    assert ct.shape == mask.shape and np.allclose(ct.affine, mask.affine)
    (config_file,) = (out / "sub-01" / "log").glob("*/config.toml")
    assert "random_seed = 0" in config_file.read_text()
    assert not list(out.rglob(".*.tmp"))  # no temporary files left behind
    first = digests(out)

    (out / "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz").unlink()
    assert main([*args, "--participant-label", "01"]) == 0  # resumes from the work folder
    assert digests(out) == first  # identical outputs, the deleted one restored

    assert main([str(bids), str(out), "group", "-w", str(work)]) == 0
    with open(out / "group" / "cohort.tsv") as handle:
        rows = {row["participant_id"]: row for row in csv.DictReader(handle, delimiter="\t")}
    assert rows["sub-01"]["status"] == "success" and rows["sub-01"]["n_outputs"] == "14"
    assert rows["sub-02"]["status"] == "invalid-input"
    assert "NaN" in rows["sub-02"]["message"]
