"""Subject and group HTML reports on a small run, with stand-ins for every synthesis output."""

import base64
import io
import json
import re
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from helpers import affine, contrast, phantom_labels, write_bids
from PIL import Image
from scipy import ndimage

from bids_synth.cli import main
from bids_synth.metrics.registration import registration_quality
from bids_synth.reports import registration_metrics, write_group_report, write_subject_report
from bids_synth.reports import sections as report_sections
from bids_synth.reports.cohort import Unit, outliers, robust_z
from bids_synth.reports.volumes import AXIAL, Volume

SUBJECT_SECTIONS = ("summary", "anatomy", "registration", "provenance", "methods", "warnings")
WITHOUT_ALIGNED_IMAGES = ("summary", "anatomy", "provenance", "methods", "warnings")
SYNTHESIS_SECTIONS = ("sct", "translate", "denoise", "superres", "harmonize")
MODEL = {"Method": "model", "Device": "cpu", "RuntimeSeconds": 1.5,
         "Model": {"Id": "test-unet", "Version": "1.0.0", "Sha256": "0123456789abcdef" * 4}}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One participant and group run (sub-01: T1w, T2w; sub-02/ses-a: T1w); sub-01 then gets an
    aligned CT and a stand-in for every synthesis output (the run itself only preprocesses)."""
    root = tmp_path_factory.mktemp("reports")
    bids = write_bids(root / "bids", {"sub-01": ["T1w", "T2w"], "sub-02/ses-a": ["T1w"]})
    (bids / "participants.tsv").write_text("participant_id\tsite\nsub-01\tsiteA\nsub-02\tsiteB\n")
    out = root / "out"
    common = ["-w", str(root / "work"), "--nprocs", "2", "--omp-nthreads", "1"]
    assert main([str(bids), str(out), "participant", *common]) == 0
    assert main([str(bids), str(out), "group", *common]) == 0
    _add_synthesis_outputs(bids, out)
    return bids, out


def _add_synthesis_outputs(bids, out):
    anat, raw = out / "sub-01" / "anat", bids / "sub-01" / "anat"
    t1w = nib.load(raw / "sub-01_T1w.nii.gz")  # on the grid of the preprocessed T1w

    def save(name, data, *, grid=t1w.affine, source="sub-01_T1w.nii.gz", meta=MODEL):
        image = nib.Nifti1Image(np.asarray(data, np.float32), grid)
        nib.save(image, anat / f"sub-01_{name}.nii.gz")
        sidecar = {"Sources": [f"bids:raw:sub-01/anat/{source}"], **meta}
        (anat / f"sub-01_{name}.json").write_text(json.dumps(sidecar))

    ct = contrast(phantom_labels(), "CT")
    t2w = nib.load(anat / "sub-01_space-T1w_desc-preproc_T2w.nii.gz").get_fdata()
    warning = {"Warnings": ["fell back to the CPU after a CUDA out-of-memory error"]}
    save("space-T1w_desc-preproc_CT", ct, source="sub-01_CT.nii.gz", meta={})
    save("space-T1w_desc-synthetic_CT", ndimage.gaussian_filter(ct, 1) + 30)
    save("space-T1w_desc-synthetic_mumap", np.clip(0.096 * (1 + ct / 1000), 0, None))
    save("space-T1w_desc-synthetic_T2w", ndimage.gaussian_filter(t2w, 1), meta=MODEL | warning)
    save("desc-denoised_T1w", ndimage.gaussian_filter(t1w.get_fdata(), 1))
    save("desc-harmonized_T1w", t1w.get_fdata() * 2 + 50, meta={"Method": "nyul"})
    # a thick-slice T2w (4 slices averaged along z) and its "super-resolved" version, named after
    # the run's T2w input (reports show the derivatives named after the inputs of the latest run)
    t2w_raw = nib.load(raw / "sub-01_T2w.nii.gz")
    data = t2w_raw.get_fdata()
    thick = data.reshape(*data.shape[:2], -1, 4).mean(axis=3)
    thick_affine = t2w_raw.affine @ np.diag([1, 1, 4, 1])
    thick_affine[:3, 3] += t2w_raw.affine[:3, 2] * 1.5
    thick_image = nib.Nifti1Image(thick.astype(np.float32), thick_affine)
    nib.save(thick_image, raw / "sub-01_acq-thick_T2w.nii.gz")
    save("res-iso_desc-superres_T2w", ndimage.zoom(thick, (1, 1, 4), order=1),
         source="sub-01_acq-thick_T2w.nii.gz", meta={"Method": "bspline"})  # fmt: skip
    truth = bids / "derivatives" / "ground-truth" / "sub-01" / "anat"
    truth.mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(contrast(phantom_labels(), "T1w"), affine()),
        truth / "sub-01_desc-clean_T1w.nii.gz",
    )


@pytest.fixture(scope="module")
def subject_reports(run):
    _, out = run
    return {label: write_subject_report(out, label) for label in ("01", "02")}


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', html)


def embedded_pngs(html: str) -> list[bytes]:
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    return [base64.b64decode(src.split(",", 1)[1], validate=True) for src in sources]


def test_subject_report_shows_every_section_with_valid_images(run, subject_reports):
    _, out = run
    path = subject_reports["01"]
    assert path == out / "sub-01.html"
    html = path.read_text()
    assert section_ids(html) == [*SUBJECT_SECTIONS[:3], *SYNTHESIS_SECTIONS, *SUBJECT_SECTIONS[3:]]
    images = embedded_pngs(html)
    # anatomy, registration ×2, sCT ×2, translate, denoise, superres, harmonize ×2
    assert len(images) == 10
    for png in images:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        Image.open(io.BytesIO(png)).verify()
    assert "test-unet@1.0.0" in html and "0123456789ab…" in html  # model and weights' sha256
    assert "fell back to the CPU" in html  # sidecar warning listed
    assert "MAE vs real CT" in html and "PSNR vs ground truth" in html
    assert "[execution]" in html  # the run's config.toml
    assert "could not be drawn" not in html
    assert re.search(r"brain mask by.{0,80}morphology", html)  # the brain mask's sidecar Method


def test_subject_report_is_self_contained(subject_reports):
    html = subject_reports["01"].read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    assert "<style>" in html


def test_sections_without_outputs_are_left_out(subject_reports):
    html = subject_reports["02"].read_text()
    assert section_ids(html) == list(WITHOUT_ALIGNED_IMAGES)
    assert '<h3 class="session">ses-a</h3>' in html
    for png in embedded_pngs(html):
        Image.open(io.BytesIO(png)).verify()


def test_a_failing_section_becomes_a_warning(run, monkeypatch):
    _, out = run

    def broken(files):
        raise RuntimeError("no such volume")

    failing = report_sections.Section("broken", "Broken", 15, broken)
    monkeypatch.setitem(report_sections._REGISTRY, "broken", failing)
    html = write_subject_report(out, "sub-02").read_text()
    assert "broken" not in section_ids(html)
    assert "section “Broken” could not be drawn: no such volume" in html


def test_registration_metrics_of_a_participant_and_a_session(run):
    _, out = run
    scores = registration_metrics(out, "sub-01", "n/a")
    assert sorted(scores) == ["registration_nmi_CT", "registration_nmi_T2w"]
    assert all(0.2 < value <= 1 for value in scores.values())
    assert registration_metrics(out, "sub-02", "ses-a") == {}  # nothing aligned to its T1w


def test_group_report_links_subject_reports_and_plots_metrics(run, subject_reports):
    _, out = run
    evaluation = out / "evaluation" / "metrics.tsv"
    evaluation.parent.mkdir(exist_ok=True)
    evaluation.write_text(
        "subject\tsession\ttask\tprediction\treference\tmask\treference_resampling\tmae\n"
        "01\tn/a\tsct\tsub-01/anat/sub-01_space-T1w_desc-synthetic_CT.nii.gz\tx\tx\tnone\t30.5\n"
    )
    path = write_group_report(out)
    assert path == out / "group" / "report.html"
    html = path.read_text()
    for report in subject_reports.values():
        assert f'href="../{report.name}"' in html
    assert section_ids(html) == ["summary", "cohort", "distributions", "sites", "outliers"]
    assert "registration NMI T2w→T1w" in html and "sct CT mae" in html
    assert html.count('class="badge ok">success') == 3  # summary line and both rows
    assert "siteA" in html and "siteB" in html
    for png in embedded_pngs(html):
        Image.open(io.BytesIO(png)).verify()


def test_outliers_are_flagged_by_robust_z_score():
    assert robust_z([1.0, 1.0, 1.0]).tolist() == [0.0, 0.0, 0.0]  # no spread: nothing to judge
    z = robust_z([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, MAD 1
    assert z[-1] == pytest.approx(97 / 1.4826)
    units = [
        Unit({"participant_id": f"sub-{i}"}, metrics={"runtime_s": v})
        for i, v in enumerate([10, 11, 12, 13, 90])
    ]
    assert list(outliers(units)) == [("sub-4", "runtime_s")]


def test_registration_quality_drops_with_misalignment():
    image = contrast(phantom_labels(), "T1w") + np.random.default_rng(0).normal(0, 10, (44, 52, 44))
    mask = phantom_labels() > 0
    assert registration_quality(image, image, mask) == pytest.approx(1.0)
    inverted = 1000 - image  # another contrast, same anatomy
    assert registration_quality(image, inverted, mask) == pytest.approx(1.0)
    shifted = registration_quality(image, np.roll(image, 3, axis=0), mask)
    noise = registration_quality(image, np.random.default_rng(1).normal(size=image.shape), mask)
    assert noise < 0.05 < shifted < 0.8


def test_views_are_in_ras_whatever_the_storage_order(tmp_path):
    data = np.zeros((6, 7, 8), np.float32)
    data[5, 6, 7] = 1  # the right-anterior-superior corner
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    lps = ras @ np.array([[-1, 0, 0, 5], [0, -1, 0, 6], [0, 0, 1, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, ras), tmp_path / "ras.nii.gz")
    nib.save(nib.Nifti1Image(data[::-1, ::-1], lps), tmp_path / "lps.nii.gz")
    views = [Volume.load(tmp_path / name) for name in ("ras.nii.gz", "lps.nii.gz")]
    assert np.array_equal(views[0].data, views[1].data)
    axial = views[1].plane(AXIAL, views[1].world(AXIAL, 7))
    assert axial[-1, -1] == 1  # with origin="lower": top right = anterior right (neurological)


def test_a_mosaic_of_the_same_content_is_drawn_once(tmp_path, monkeypatch):
    from bids_synth.reports import mosaics

    volume = Volume(np.arange(8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10), np.eye(4))
    rows = [mosaics.Row("T1w", (mosaics.Layer(volume),))]
    cuts = {AXIAL: [3.0, 5.0]}
    drawn = mosaics.mosaic(rows, cuts, planes=(AXIAL,))
    with mosaics.mosaics_kept_in(tmp_path):
        assert mosaics.mosaic(rows, cuts, planes=(AXIAL,)) == drawn  # drawn and kept
        monkeypatch.setattr(mosaics, "_draw", lambda *args: pytest.fail("drawn again"))
        assert mosaics.mosaic(rows, cuts, planes=(AXIAL,)) == drawn  # read back
        changed = [mosaics.Row("T1w", (mosaics.Layer(volume.with_data(volume.data + 1)),))]
        for other in (changed, rows):  # other voxels; other cuts
            with pytest.raises(pytest.fail.Exception, match="drawn again"):
                mosaics.mosaic(other, {AXIAL: [3.0, 5.0] if other is changed else [4.0]}, (AXIAL,))
    assert len(list(tmp_path.glob("mosaic-*.png"))) == 1
    with pytest.raises(pytest.fail.Exception, match="drawn again"):  # outside the block: drawn
        mosaics.mosaic(rows, cuts, planes=(AXIAL,))


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_reports_render_in_headless_chromium(run, subject_reports, tmp_path):
    _, out = run
    for page in (subject_reports["01"], write_group_report(out)):
        screenshot = tmp_path / f"{page.stem}.png"
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1280,3000",
             page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        pixels = np.asarray(Image.open(screenshot).convert("L"))
        assert pixels.shape == (3000, 1280)
        assert (pixels < 40).mean() > 0.01  # navigation bar and black slice panels were drawn
