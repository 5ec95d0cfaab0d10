"""Group level of harmonization: learn a Nyul reference per MR contrast from the cohort."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_synth.bids import same_t1w_first
from bids_synth.derivatives import dataset_lock
from bids_synth.modalities import SESSION_MR_SUFFIXES
from bids_synth.synthesis.harmonization import image_landmarks, learn_nyul, masked_values
from bids_synth.synthesis.harmonization_reference import reference_path, write_reference

LOG = logging.getLogger("bids_synth")

MASK = "desc-brain_mask"


def cohort_images(output_dir: str | Path, participant_labels=()) -> dict[str, list[dict]]:
    """Preprocessed MR images and their brain masks in the derivatives, by contrast.

    T1w: ``desc-preproc_T1w``; other contrasts: ``space-T1w_desc-preproc_<suffix>``.
    """
    from bids import BIDSLayout
    from bids.layout import Query

    layout = BIDSLayout(str(output_dir), validate=False, config=["bids", "derivatives"])
    subjects = [label.removeprefix("sub-") for label in participant_labels] or Query.ANY
    found: dict[str, list[dict]] = {}
    for suffix in SESSION_MR_SUFFIXES:
        space = Query.NONE if suffix == "T1w" else "T1w"
        images = layout.get(subject=subjects, suffix=suffix, desc="preproc", space=space,
                            extension=[".nii", ".nii.gz"])  # fmt: skip
        for image in sorted(images, key=lambda f: f.path):
            entities = image.get_entities()
            session = entities.get("session", Query.NONE)
            masks = layout.get(subject=entities["subject"], session=session, desc="brain",
                               suffix="mask", extension=[".nii", ".nii.gz"])  # fmt: skip
            if not masks:
                LOG.warning("harmonize: no brain mask beside %s, left out", image.relpath)
                continue
            found.setdefault(suffix, []).append({
                "participant_id": f"sub-{entities['subject']}",
                "session_id": f"ses-{entities['session']}" if "session" in entities else "n/a",
                "image": image.relpath,
                "mask": same_t1w_first(masks, image)[0].relpath,
            })  # fmt: skip
    return found


def learn_cohort_references(output_dir: str | Path, participant_labels=()) -> dict[str, Path]:
    """Write ``group/harmonize/desc-nyul_<suffix>_reference.json`` for every contrast found."""
    output_dir = Path(output_dir)
    written = {}
    for suffix, images in cohort_images(output_dir, participant_labels).items():
        landmark_sets = []
        for record in images:
            data = nib.load(output_dir / record["image"]).get_fdata(dtype=np.float64)
            mask = np.asanyarray(nib.load(output_dir / record["mask"]).dataobj) > 0
            landmarks = image_landmarks(masked_values(data, mask))
            record["Landmarks"] = [round(float(x), 6) for x in landmarks]
            landmark_sets.append(landmarks)
        reference = learn_nyul(landmark_sets, images=images)
        path = reference_path(output_dir, suffix)
        with dataset_lock(output_dir):
            write_reference(path, reference, suffix=suffix, mask=MASK)
        LOG.info("harmonize: Nyul reference for %s from %d image(s): %s",
                 suffix, len(images), path.relative_to(output_dir))  # fmt: skip
        written[suffix] = path
    if not written:
        LOG.warning("harmonize: no preprocessed MR image in %s: no Nyul reference learned", output_dir)  # fmt: skip
    return written
