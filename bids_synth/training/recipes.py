"""Training recipes of the shipped 2.5D models: long, resumable runs on contrast-randomised heads.

A recipe fixes everything that defines a model's training trajectory (anatomies, randomisation,
network, optimisation); :func:`run_recipe` trains it in a work folder in epochs, checkpointing after
each, and resumes from the latest checkpoint there. Across machines a run continues from a
*seed checkpoint* (:func:`write_seed_checkpoint`: half-precision weights + progress, small enough
to commit), with a fresh optimizer. :func:`export_bundle` turns the latest weights into a bundle
whose card records steps, samples seen and CPU-hours.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bids_synth.modalities import CT_HU_RANGE
from bids_synth.nn.adaptation import SureAdaptation
from bids_synth.simulate.normalisation import CT_SCALE_HU
from bids_synth.simulate.randomise import (
    HEAD_MODEL_REVISION,
    PERCENTILE_NORMALISATION,
    PHYSICS_CONTRASTS,
    Randomisation,
)
from bids_synth.training.head_window import HeadWindow, heads_seen

LOG = logging.getLogger("bids_synth.training")


#: recipe settings recorded in a run's settings only when they differ from these values, so that
#: a setting added later does not orphan the checkpoints of recipes that leave it alone
_RECORDED_WHEN_SET = {
    "physics_contrasts": PHYSICS_CONTRASTS,
    "clean_images": (),
    "clean_image_copies": 1,
    "identity": False,
    "content": "l1",
    "randomisation.physics_inputs": None,
    "randomisation.texture_smoothing_mm": (0.0, 0.0),
    "randomisation.coarse_share": 0.0,
    "randomisation.coarse_fwhm_mm": (2.0, 8.0),
    "randomisation.resolution_in_target": False,
    "loss_emphasis": None,
    "adversarial": 0.0,
    "fine_tune_from": None,
    "parent_id": None,
    "widened_from": None,
    "base": None,
    "lr_anneal": None,
    "shell_stretch_sd": 0.0,
    "muscle_fat_share": 0.0,
    "symmetric_emphasis": False,
    "augmentation": "affine",
    "noise_relative_loss": False,
    "head_window": None,
    "weight_average": None,
}

#: recipe settings that are the bundle's, not the training trajectory's
_BUNDLE_SETTINGS = ("version", "epochs", "fusion", "symmetries", "mirror", "adaptation")

#: settings a fine-tune (``fine_tune_from``) may change against its parent trajectory
_FINE_TUNE_SETTINGS = ("loss_emphasis", "adversarial", "widened_from")


@dataclass(frozen=True)
class SlabRecipe:
    """A 2.5D model: label heads, contrast randomisation, network and optimisation settings.

    ``task`` ``sct`` learns the CT (HU) of the heads from one channel per suffix; ``translate`` and
    ``harmonize`` the heads' ``target`` MR contrast in the reference scanner style (site 0) from
    their ``suffixes`` (physics images in ``physics_contrasts``, each in a random style); ``denoise``
    the noise-free image from a noisy one of any of ``suffixes`` (one channel), on the label heads
    and on ``clean_images`` (real, nearly noise-free reference images, each ``clean_image_copies``
    times in the pool). ``identity`` adds the centre input slice to the output (residual learning);
    ``content`` is the loss (``l1`` or ``l2``). A fine-tune (``fine_tune_from``) may add input
    contrasts to its parent's (``widened_from``: the parent's ``suffixes``): it starts from the
    parent's weights with zero weights on the new contrasts' slices, so it starts as the parent.
    A fine-tune of a fine-tune names the recipe whose trajectory it continues (``base``) and may
    change anything against it, e.g. anneal the learning rate (``lr_anneal``). ``fusion`` is how
    the bundle fuses its three orientations at inference, ``symmetries`` how many in-plane
    lattice symmetries each orientation's prediction averages, ``mirror`` whether it also
    averages the image's left/right mirror image, and ``adaptation`` how a denoiser
    is fine-tuned on each image before it denoises it (:mod:`bids_synth.nn.adaptation`); none
    of them is part of the training trajectory.
    ``shell_stretch_sd`` varies the thickness of the training heads' skulls and scalps
    (:mod:`bids_synth.simulate.shell`; the validation heads keep their sources' own);
    ``muscle_fat_share`` turns up to that share of their muscle into fat compartments
    (:func:`bids_synth.simulate.anatomy.with_fat_compartments`; not the validation heads').
    ``symmetric_emphasis`` weighs the voxels that the prediction calls bone like those that are.
    ``augmentation`` is the slabs' in-plane augmentation (:data:`~bids_synth.nn.slabs.
    AUGMENTATIONS`). ``noise_relative_loss`` divides a denoiser's error by each pair's noise rms.
    ``head_window`` (heads held, heads moved on by each epoch) trains on a moving window of
    ``train_heads`` (:mod:`bids_synth.training.head_window`; from ``fine_tune_from`` on) instead
    of all of them at once. ``weight_average`` (a decay per step) exports, validates and seeds
    an exponential moving average of the generator's weights instead of its last step's.
    """

    id: str
    version: str
    task: str
    suffixes: tuple[str, ...]
    target: str
    train_heads: tuple[tuple[str, int], ...]
    validation_heads: tuple[tuple[str, int], ...]
    slices: int = 5
    size: int = 192
    batch_size: int = 4
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    lr: float = 2e-4
    steps_per_epoch: int = 200
    epochs: int = 400
    seed: int = 0
    amp: str = "bf16"
    spacing_mm: float = 1.0
    randomisation: Randomisation = field(default_factory=Randomisation)
    physics_contrasts: tuple[str, ...] = PHYSICS_CONTRASTS
    clean_images: tuple[str, ...] = ()
    clean_image_copies: int = 1
    identity: bool = False
    content: str = "l1"
    loss_emphasis: tuple[float, float] | None = None
    adversarial: float = 0.0
    fine_tune_from: int | None = None
    parent_id: str | None = None
    widened_from: tuple[str, ...] | None = None
    fusion: str = "mean"
    base: SlabRecipe | None = None
    lr_anneal: tuple[int, float] | None = None
    symmetries: int = 1
    mirror: bool = False
    adaptation: SureAdaptation | None = None
    shell_stretch_sd: float = 0.0
    muscle_fat_share: float = 0.0
    symmetric_emphasis: bool = False
    augmentation: str = "affine"
    noise_relative_loss: bool = False
    head_window: tuple[int, int] | None = None
    weight_average: float | None = None

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch``: ``lr``, or with ``lr_anneal`` (epochs, factor)
        a half cosine from ``lr`` at epoch ``fine_tune_from`` (or 0) down to ``lr × factor`` over
        those epochs, flat after them."""
        if self.lr_anneal is None:
            return self.lr
        length, factor = self.lr_anneal
        done = min(max(epoch - (self.fine_tune_from or 0), 0) / length, 1.0)
        return self.lr * (factor + (1 - factor) * 0.5 * (1 + math.cos(math.pi * done)))

    def parent(self) -> SlabRecipe:
        """The recipe whose trajectory a fine-tune continues (itself when it is none)."""
        if self.fine_tune_from is None:
            return self
        if self.base is not None:
            return self.base
        neutral = {key: _RECORDED_WHEN_SET[key] for key in _FINE_TUNE_SETTINGS}
        return replace(
            self,
            id=self.parent_id or self.id,
            fine_tune_from=None,
            parent_id=None,
            suffixes=self.widened_from or self.suffixes,
            **neutral,
        )

    @property
    def input_channels(self) -> int:
        """Channels per slice: one per suffix, but one for a denoiser and a brain mask (their
        suffixes are alternatives)."""
        return 1 if self.task in ("denoise", "brainmask") else len(self.suffixes)

    @property
    def slab_target(self) -> str:
        """What :class:`~bids_synth.nn.slabs.RandomisedSlabs` draws as the target."""
        return {"denoise": "clean", "sct": "ct", "brainmask": "brain"}.get(self.task, self.target)

    @property
    def target_contrasts(self) -> tuple[str, ...]:
        """MR contrasts the label heads must carry in the reference style (translation)."""
        return (self.target,) if self.task in ("translate", "harmonize") else ()

    @property
    def output_scale(self) -> float:
        """Model output units → reported units (HU for sct, the normalised input scale else)."""
        return CT_SCALE_HU if self.slab_target == "ct" else 1.0

    def run_settings(self) -> dict:
        """What defines the trajectory (a checkpoint of other settings is not resumed)."""
        settings = asdict(self)
        if self.base is not None:
            settings["base"] = self.base.run_settings()
        for key in _BUNDLE_SETTINGS:
            settings.pop(key)
        for dotted, neutral in _RECORDED_WHEN_SET.items():
            *parents, key = dotted.split(".")
            holder = settings
            for parent in parents:
                holder = holder[parent]
            if holder[key] == neutral:
                holder.pop(key)
        return json.loads(json.dumps(settings))

    def architecture(self) -> dict:
        kwargs = {
            "in_channels": self.slices * self.input_channels,
            "out_channels": 1,
            "channels": list(self.channels),
            "norm": "instance",
            "dims": 2,
        }
        if self.identity:
            kwargs["identity_channel"] = self.slices // 2
        return {"name": "unet", "kwargs": kwargs}


def _heads(sources: dict[str, int], first_seed: int) -> tuple[tuple[str, int], ...]:
    return tuple(
        (source, first_seed + index) for source, count in sources.items() for index in range(count)
    )


#: Anatomies of the shipped models: the MNI 2009a and SPM TPM maps and the procedural phantom.
#: Colin27 and Neuromorphometrics are never trained on (benchmarks and tests use them).
RECIPES = {
    "sct-t1w-slab": SlabRecipe(
        id="sct-t1w-slab",
        task="sct",
        suffixes=("T1w",),
        target="CT",
        train_heads=_heads({"mni2009a": 6, "tpm": 6, "phantom": 6}, 100),
        validation_heads=(("phantom", 9001), ("tpm", 9002)),
        # 2.1.0's plain L1 blurred the skull to ~550 HU (truth 720–970) on held-out heads:
        # bone (≥ 300 HU, ~1/10 of the head) weighs 3× from epoch 98 on; 2.3.0 continues 2.2.0
        # from epoch 155 on heads of head model revision 2 (an individual skull with cortical
        # tables instead of the TPM's faint population skull: bone mean 865 HU, was 690); 2.4.0
        # is 2.3.0 with its orientations fused by the median (real Colin27: bone mean 746 HU and
        # a 9.2 mm skull over the vertex, against 692 HU and 10.0 mm by the mean; real CT: 864 HU,
        # 8.0 mm)
        version="2.4.0",
        loss_emphasis=(300 / CT_SCALE_HU, 3.0),
        fine_tune_from=98,
        fusion="median",
    ),
    **{
        f"translate-t1w-{target.lower()}-slab": SlabRecipe(
            id=f"translate-t1w-{target.lower()}-slab",
            version="2.0.0",
            task="translate",
            suffixes=("T1w",),
            target=target,
            train_heads=_heads({"mni2009a": 6, "tpm": 6, "phantom": 6}, 100),
            validation_heads=(("phantom", 9001), ("tpm", 9002)),
            randomisation=Randomisation(physics_share=0.6, physics_inputs=("T1w",)),
            # the FLAIR's sagittal slabs disagree (streaks in the coronal plane): the median
            # drops the odd one out; for T2w and PD it measured no better than the mean
            fusion="median" if target == "FLAIR" else "mean",
        )
        for target in ("T2w", "FLAIR", "PD")
    },
    "harmonize-t1w-site0-slab": SlabRecipe(
        id="harmonize-t1w-site0-slab",
        # 2.1.0: 2.0.0's weights with the Nyul reference of its outputs at site 0
        # (bids_synth.training.output_reference), applied after it in the pipeline
        version="2.1.0",
        task="harmonize",
        suffixes=("T1w",),
        target="T1w",
        train_heads=_heads({"mni2009a": 6, "tpm": 6, "phantom": 6}, 100),
        validation_heads=(("phantom", 9001), ("tpm", 9002)),
        physics_contrasts=("T1w",) * 4,
        randomisation=Randomisation(physics_share=0.8, physics_inputs=("T1w",)),
    ),
    "denoise-slab": SlabRecipe(
        id="denoise-slab",
        version="2.1.0",
        task="denoise",
        suffixes=("T1w", "T2w", "FLAIR", "PD"),
        target="T1w",
        train_heads=_heads({"mni2009a": 6, "tpm": 6, "phantom": 6}, 100),
        validation_heads=(("phantom", 9001), ("tpm", 9002)),
        size=128,
        batch_size=6,
        channels=(32, 64, 128, 256),
        lr=3e-4,
        randomisation=Randomisation(
            physics_share=0.4, thick_share=0.15, noise_range=(0.0, 0.12), rician_share=0.7
        ),
        clean_images=(
            "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
            "spm/avg152T1.nii.gz",
            "spm/avg152T2.nii.gz",
            "spm/avg152PD.nii.gz",
        ),
        clean_image_copies=3,
        identity=True,
    ),
    # the morphological brain mask (bids_synth.preproc.masks) holds on Colin27 (Dice 0.963) but
    # takes in avg152T1's neck and temporal scalp (0.765) and, on simulated 2 mm T1w of random
    # scanner styles, reaches a median Dice of 0.75 (BENCHMARKS.md): a brain and its CSF learned
    # from heads of any contrast, as SynthStrip does; the heads of the sct trajectories (cached),
    # 48 at a time, two new ones each epoch. At epoch 64 (its seed): held-out median Dice 0.945 on
    # the Colin27 heads (morphology 0.961, but 0.231 at worst), 0.948 on the ct0051 heads (0.661);
    # real Colin27 0.903 (0.963; it takes in the upper neck), avg152T1 0.970 (0.765): not yet
    # shipped (BENCHMARKS.md)
    "brainmask-slab": SlabRecipe(
        id="brainmask-slab",
        version="1.0.0",
        task="brainmask",
        suffixes=("T1w", "T2w", "FLAIR", "PD"),
        target="mask",
        train_heads=_heads({"mni2009a": 49, "tpm": 49, "phantom": 49}, 100),
        validation_heads=(("phantom", 9001), ("tpm", 9002)),
        shell_stretch_sd=0.25,
        muscle_fat_share=0.5,
        head_window=(48, 2),
        lr=1e-3,
        weight_average=0.999,
    ),
}


#: T1w+T2w → CT: CSF, dark like bone in a T1w, is bright in a T2w. The plain T1w trajectory at
#: epoch 98 widened to a T2w input, with the bone emphasis of sct-t1w-slab 2.2.0
RECIPES["sct-t1w-t2w-slab"] = replace(
    RECIPES["sct-t1w-slab"],
    id="sct-t1w-t2w-slab",
    version="1.1.0",
    suffixes=("T1w", "T2w"),
    parent_id="sct-t1w-slab",
    widened_from=("T1w",),
)


def _continued(
    recipe_id: str, version: str, epoch: int, *, after: str | None = None, **changes
) -> SlabRecipe:
    """The trajectory of ``RECIPES[recipe_id]`` (or of its earlier version ``after``) continued
    from ``epoch`` as ``version``, with ``changes`` (a fine-tune of a fine-tune: its ``base`` is
    the recipe it continues)."""
    recipe = RECIPES[recipe_id] if after is None else _version_of(recipe_id, after)
    return replace(recipe, version=version, base=recipe, fine_tune_from=epoch, **changes)


def _version_of(recipe_id: str, version: str) -> SlabRecipe:
    """The recipe of an earlier ``version`` in the chain of ``RECIPES[recipe_id]``."""
    recipe = RECIPES[recipe_id]
    while recipe.version != version:
        if recipe.base is None:
            raise ValueError(f"recipe {recipe_id} has no version {version} to continue")
        recipe = recipe.base
    return recipe


#: 2.6.0 continues 2.4.0 from epoch 182 with its learning rate annealed (half cosine to a tenth
#: over 50 epochs; it had been constant): held-out MAE 183 → 179 HU, but a skull 0.8–1.5 mm
#: thicker on the real scans, so not shipped. 2.5.0, the same start with the real head CT's skull
#: (``ct0051`` heads) added, did not beat 2.4.0 after 48 epochs (its seed is in the history)
RECIPES["sct-t1w-slab"] = _continued("sct-t1w-slab", "2.6.0", 182, lr_anneal=(50, 0.1))


#: an experiment on the same start: training heads whose skulls and scalps are stretched per draw
#: (``shell_stretch_sd``). Held-out heads that share the training heads' TPM skull are at 77 HU
#: MAE (new Neuromorphometrics brains), the Colin27 heads with a skull of their own at 183
RECIPES["sct-t1w-slab-shell"] = replace(
    RECIPES["sct-t1w-slab"],
    id="sct-t1w-slab-shell",
    version="2.7.0",
    lr_anneal=None,
    shell_stretch_sd=0.25,
)


#: 2.8.0 continues the shell run from epoch 257 with a symmetric bone emphasis: the shell
#: candidate lowered the Colin27 MAE (183 → 171 HU) but thickened Colin27's thinner skull
#: (truth 7.4 mm → 9.0; 2.4.0: 8.3), and weighing only the target's bone makes "bone" the
#: cheaper error at the skull's edges
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell", "2.8.0", 257, symmetric_emphasis=True
)

#: 2.9.0 continues 2.8.0 from epoch 352 with its learning rate annealed to a tenth over 30 epochs
#: (at a constant rate its validation MAE still fell slowly, 99 → 87 HU over epochs 200–352): the
#: validation MAE fell to 83 HU at epoch 382, but the held-out Colin27 heads rose from 166.5 to
#: 174.0 HU and their skull thickened (as 2.6.0's did), so not shipped (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued("sct-t1w-slab-shell", "2.9.0", 352, lr_anneal=(30, 0.1))

#: 2.10.0 continues 2.8.0 from epoch 352, as it was, on head model revision 4: cortical tables of
#: 1.5 mm, with which a training head's vault has the real head CT's HU against depth (with 2 mm
#: its tables peaked 135–410 HU above the real CT's). At epoch 372 it predicted less dense bone
#: than 2.8.0 (real Colin27 656 HU against 740; held-out MAE 167.7 against 159.4): not shipped
RECIPES["sct-t1w-slab-shell"] = _continued("sct-t1w-slab-shell", "2.10.0", 352, after="2.8.0")

#: 2.11.0 continues 2.8.0 from epoch 352 with physics-based T1w images as 60 % of its inputs (was
#: a quarter, of any contrast): on the held-out Colin27 heads 2.8.0 reads fat as −2 HU (truth
#: −73) and errs by 169 HU in muscle, whose mean it has right — 55 of its 154 HU of MAE at 1 mm. A
#: T1w's fat is bright and its muscle grey in every T1w; in a Gaussian-mixture draw they are any
#: two intensities, so the network mostly learned where they lie, and Colin27's lie elsewhere.
#: Shipped at epoch 390: held-out MAE 150.8 → 141.0 HU, mostly in muscle, bone and marrow (fat
#: still reads +44 HU); real scans' goals met (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell",
    "2.11.0",
    352,
    after="2.8.0",
    randomisation=replace(
        RECIPES["sct-t1w-slab-shell"].randomisation, physics_share=0.6, physics_inputs=("T1w",)
    ),
)

#: 2.12.0 continues 2.11.0 from epoch 390 with up to half of the training heads' muscle turned
#: into fat compartments: in every training anatomy fat is only a subcutaneous layer (0–11 % of it
#: deeper than 8 mm) and deep soft tissue is muscle, while the held-out Colin27 heads hold 23 % of
#: their fat deep (orbits, face, neck); 2.11.0 reads their fat as +44 HU (truth −70). At epoch 460
#: their fat reads +3 HU and the Neuromorphometrics heads improve (57.0 → 53.8 HU), but muscle,
#: skin and sinus err more and the held-out Colin27 MAE is 142.4 HU (2.11.0: 141.0): not shipped
#: (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell", "2.12.0", 390, muscle_fat_share=0.5
)

#: 2.13.0 continues 2.12.0 from epoch 486 with the ``elastic`` augmentation: a smooth random
#: in-plane displacement of each slab on top of the affine. Its 18 training heads hold three
#: anatomies (two of them MNI space), and at 1 mm its MAE on their validation draws is ~75 HU
#: against ~141 on the held-out Colin27 heads, most of it bone placed where those anatomies hold
#: it (skull base, face) — new local shapes per slab, as SynthSeg deforms every draw. At epoch
#: 580: 143.1 HU on the Colin27 heads, 151.3 on the ct0051 heads (2.11.0: 141.0, 148.4) and a
#: skull 1.5 mm thicker on the real Colin27: not shipped (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell", "2.13.0", 486, augmentation="elastic"
)

#: 2.14.0 continues 2.13.0 from epoch 580 on twice the training heads (six more deformed draws of
#: each anatomy, seeds 106–111) and without the elastic slabs: each cached head holds one random
#: 3D deformation of its anatomy, and on new draws of those anatomies 2.11.0 errs 55 HU against
#: 141 on the held-out Colin27 heads — more shapes per anatomy, as SynthSeg draws a new
#: deformation for every sample. At epoch 660 the held-out Colin27 heads read 138.1 HU (2.11.0:
#: 141.0) and the real-scan check passes: shipped (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell",
    "2.14.0",
    580,
    augmentation="affine",
    train_heads=_heads({"mni2009a": 12, "tpm": 12, "phantom": 12}, 100),
)

#: 2.15.0 continues 2.14.0 from epoch 660 on twice its training heads again (twelve more deformed
#: draws of each anatomy, seeds 112–123): doubling them took the held-out Colin27 heads from
#: 143.1 to 138.1 HU. At epoch 746 they read 139.6 HU: not shipped (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell",
    "2.15.0",
    660,
    train_heads=_heads({"mni2009a": 24, "tpm": 24, "phantom": 24}, 100),
)

#: 2.16.0 continues 2.15.0 from epoch 746 on a moving window over 240 training heads (80 deformed
#: draws of each anatomy, seeds 100–179): 72 held at a time, as 2.15.0 held them, one new head
#: entering each epoch (~10 s to simulate). 2.15.0's twice-as-many draws took the ct0051 heads (a
#: real skull) from 149.6 to 141.6 HU and left the Colin27 heads level (139.6 against 138.1):
#: more draws than memory holds, as SynthSeg deforms every sample. At epoch 820 the Colin27 heads
#: read 130.8 HU, the ct0051 heads 163.3 (denser bone, also where the real skull holds muscle and
#: CSF): a mean of 147.1 against 2.14.0's 143.9, not shipped (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell",
    "2.16.0",
    746,
    train_heads=_heads({"mni2009a": 80, "tpm": 80, "phantom": 80}, 100),
    head_window=(72, 1),
)

#: 2.0.0 widens the T1w trajectory (2.12.0 at epoch 486) to a T2w input: CSF and the inner table,
#: both dark in a T1w, part in a T2w. 1.1.0 (widened from sct-t1w-slab at epoch 98) read the
#: held-out Colin27 head 900000 at 201.6 HU MAE, the T1w bundle of its day 198.2. At epoch 536
#: the three held-out Colin27 heads read 132.7 HU (1.1.0: 172.7; the T1w 2.11.0: 141.0): shipped
RECIPES["sct-t1w-t2w-slab"] = _continued(
    "sct-t1w-slab-shell",
    "2.0.0",
    486,
    after="2.12.0",
    id="sct-t1w-t2w-slab",
    suffixes=("T1w", "T2w"),
    widened_from=("T1w",),
)

#: 2.1.0 continues 2.0.0 from epoch 536, nothing changed: its 50 epochs took the held-out
#: Colin27 heads from the T1w trajectory's 142 HU to 132.7, the fastest fall of any sct recipe.
#: At epoch 610 they read 136.9 HU while its validation heads (the training anatomies) improved:
#: not shipped (BENCHMARKS.md)
RECIPES["sct-t1w-t2w-slab"] = _continued("sct-t1w-t2w-slab", "2.1.0", 536)

#: 2.2.0 continues 2.0.0 from epoch 536 on twice its training heads (six more deformed draws of
#: each anatomy, seeds 106–111), as 2.14.0 did for the T1w trajectory: 2.1.0 fitted the 18
#: training heads' anatomies while the held-out heads got worse. At epoch 600 they read 134.8 HU
#: (2.0.0: 132.7): not shipped (BENCHMARKS.md)
RECIPES["sct-t1w-t2w-slab"] = _continued(
    "sct-t1w-t2w-slab",
    "2.2.0",
    536,
    after="2.0.0",
    train_heads=_heads({"mni2009a": 12, "tpm": 12, "phantom": 12}, 100),
)

#: 2.3.0 continues 2.2.0 from epoch 600 on the moving window of the T1w 2.16.0: 240 training heads
#: (80 deformed draws of each anatomy, seeds 100–179), 72 held, one new head each epoch. 2.2.0's
#: twice-as-many draws took the ct0051 heads from 149.0 to 144.7 HU and left the Colin27 heads
#: level (134.8 against 132.7). At epoch 664 the Colin27 heads read 127.8 HU and the ct0051 heads
#: 145.8 (2.0.0: 132.7 and 149.0) and the real avg152 pair check passes: shipped (BENCHMARKS.md)
_WINDOWED = _version_of("sct-t1w-slab-shell", "2.16.0")
RECIPES["sct-t1w-t2w-slab"] = _continued(
    "sct-t1w-t2w-slab",
    "2.3.0",
    600,
    train_heads=_WINDOWED.train_heads,
    head_window=_WINDOWED.head_window,
)


#: 2.17.0 and 2.4.0 continue the last checkpoints of the T1w and T1w+T2w trajectories (2.16.0 at
#: epoch 820, 2.3.0 at epoch 664) on their moving window, and export a moving average of the
#: weights (decay 0.999 per step, ~5 epochs): at a constant learning rate the validation MAE of
#: consecutive epochs wanders by up to 12 % (2.16.0: 67 HU at epoch 819, 75 at 820), and a bundle
#: was the last step's weights wherever the wander had left them. At epochs 880 / 716 the held-out
#: Colin27 and ct0051 heads read 134.0 / 152.6 HU (T1w; 2.14.0: 138.1 / 149.6) and 127.8 / 143.1
#: (T1w+T2w; 2.3.0: 127.8 / 145.8), both means below the shipped ones', the real-scan checks
#: pass: both shipped (BENCHMARKS.md)
_AVERAGED = 0.999
RECIPES["sct-t1w-slab-shell"] = _continued(
    "sct-t1w-slab-shell", "2.17.0", 820, weight_average=_AVERAGED
)
RECIPES["sct-t1w-t2w-slab"] = _continued("sct-t1w-t2w-slab", "2.4.0", 664, weight_average=_AVERAGED)

#: 2.17.1 and 2.4.1 are 2.17.0's and 2.4.0's networks (the same weights) with each orientation's
#: prediction averaged with that of the left/right mirror image (``mirror``, the flip they trained
#: with): held-out means 143.3 → 143.2 and 135.4 → 135.2 HU, the real-scan checks pass, 22 s for a
#: 1 mm head on one thread (11 without): shipped by the rule written first (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = replace(
    RECIPES["sct-t1w-slab-shell"], version="2.17.1", mirror=True
)
RECIPES["sct-t1w-t2w-slab"] = replace(RECIPES["sct-t1w-t2w-slab"], version="2.4.1", mirror=True)

#: 2.18.0 and 2.5.0 continue 2.17.0 (epoch 880) and 2.4.0 (epoch 716) on heads they have not
#: trained on: a window restarts at its first head with every continuation, so 2.17.0 and 2.4.0
#: re-trained on the heads of 2.16.0's and 2.3.0's windows (seeds 100–148). Now the window starts
#: at seed 125 (the last heads held) and takes in two new heads per epoch (was one), up to 160
#: deformed draws of each anatomy: new draws are what moved the held-out heads (2.15.0, 2.16.0).
#: 2.5.0 at epoch 755: Colin27 heads 126.3 HU, ct0051 heads 146.1 (2.4.0: 127.8 / 143.1), a mean
#: of 136.2 against 135.4: not shipped. 2.18.0 stopped at epoch 883 (its thread went to the
#: brain-mask training) (BENCHMARKS.md)
_NEW_DRAWS = dict(
    train_heads=_heads({"mni2009a": 160, "tpm": 160, "phantom": 160}, 125), head_window=(72, 2)
)
RECIPES["sct-t1w-slab-shell"] = _continued("sct-t1w-slab-shell", "2.18.0", 880, **_NEW_DRAWS)
RECIPES["sct-t1w-t2w-slab"] = _continued("sct-t1w-t2w-slab", "2.5.0", 716, **_NEW_DRAWS)

#: 2.19.0 continues 2.17.0 from epoch 880, as it was, on head model revision 5: the TPM and MNI
#: heads' sinuses were a haze of 10–40 % air (their sinus voxels −352 HU at 2 mm, the held-out
#: heads' −788 to −838), so the network never learned to call a T1w's dark cavities air (it reads
#: the held-out heads' sinuses as −159 to +129 HU); 2.6.0 continues 2.4.0 from epoch 716 the same
#: way. At epochs 935 / 761 the held-out Colin27 and ct0051 heads read 133.2 / 147.1 HU (T1w;
#: 2.17.1: 133.7 / 152.6) and 126.1 / 140.2 (T1w+T2w; 2.4.1: 127.6 / 142.8), the real-scan checks
#: pass: both shipped (BENCHMARKS.md)
RECIPES["sct-t1w-slab-shell"] = _continued("sct-t1w-slab-shell", "2.19.0", 880, after="2.17.1")
RECIPES["sct-t1w-t2w-slab"] = _continued("sct-t1w-t2w-slab", "2.6.0", 716, after="2.4.1")


#: 2.2.0 continues 2.1.0 from epoch 33 with smooth within-tissue texture in its Gaussian-mixture
#: contrasts: with voxel-wise texture (sd up to 0.08) in the clean targets, 2.1.0 leaves 36–48 % of
#: the noise amplitude in the real Colin27 and 27–45 % in simulated heads (BENCHMARKS.md)
RECIPES["denoise-slab"] = _continued(
    "denoise-slab",
    "2.2.0",
    33,
    randomisation=replace(RECIPES["denoise-slab"].randomisation, texture_smoothing_mm=(1.5, 4.0)),
)

#: 2.3.0 continues 2.2.0 from epoch 46 with its learning rate annealed to a tenth over 15 epochs:
#: at a constant rate its checkpoints scattered by ±0.4 dB on the real Colin27 at 9 %
RECIPES["denoise-slab"] = _continued("denoise-slab", "2.3.0", 46, lr_anneal=(15, 0.1))

#: 2.4.0 continues 2.3.0 from epoch 60 with a warm restart (the full learning rate again, annealed
#: to a tenth over 40 epochs): 2.2.0/2.3.0 had only 27 epochs on the smooth-texture targets, and
#: they left 28–34 % of the noise in the brain of the real Colin27 (BM4D: 13–26 %). At epoch 100
#: it is within 0.04 dB of 2.3.0 there and leaves as much noise: not shipped (BENCHMARKS.md)
RECIPES["denoise-slab"] = _continued("denoise-slab", "2.4.0", 60, lr_anneal=(40, 0.1))

#: 2.5.0 continues 2.4.0 from epoch 100 on pairs whose noise stays white: the in-plane affine
#: augmentation resampled the noisy slabs after the noise was drawn, so every earlier version
#: learned to remove noise at about 0.67 of the drawn amplitude, correlated between neighbours
#: (lag-one correlation 0.2–0.35), not the white noise of a scan; now quarter turns and transposes
RECIPES["denoise-slab"] = _continued(
    "denoise-slab", "2.5.0", 100, augmentation="lattice", lr_anneal=(30, 0.1)
)

#: 2.6.0 continues 2.5.0 from epoch 130 with each pair's error divided by its noise rms: under a
#: plain L1 the pairs of little noise weigh little, and mid-way 2.5.0 had left 45 % of 3 % noise
#: in the real Colin27. At epoch 155 it is +0.05 dB over 2.5.0 at 3 % and 0.13–0.25 dB below it
#: at 5–9 % in the brain of the real Colin27: not shipped (BENCHMARKS.md)
RECIPES["denoise-slab"] = _continued(
    "denoise-slab", "2.6.0", 130, noise_relative_loss=True, lr_anneal=(25, 0.1)
)

#: 2.7.0 continues 2.5.0 from epoch 130 on slabs of 9 slices instead of 5 (the outer slices'
#: weights starting at zero, so it starts as 2.5.0): one orientation alone is 0.4 dB below the
#: three fused in the real Colin27. At epoch 170 it is 0.05–0.14 dB below 2.5.0 there (its
#: simulated validation +0.5 dB): not shipped (BENCHMARKS.md)
RECIPES["denoise-slab"] = _continued(
    "denoise-slab", "2.7.0", 130, after="2.5.0", slices=9, lr_anneal=(40, 0.1)
)


#: 2.8.0 continues 2.5.0 from epoch 130 on whole slices (192² in-plane, 4 per batch, instead of
#: 6 crops of 128²): run on the whole real Colin27, 2.5.0 scores 0.5 dB higher in its brain
#: centre than run on that centre alone — what a slice's context holds counts, and inference
#: always sees whole slices. At epoch 150 it is 0.5–0.85 dB below 2.5.0 in the brain of the
#: whole real Colin27 and smooths structure away: not shipped (BENCHMARKS.md)
RECIPES["denoise-slab"] = _continued(
    "denoise-slab", "2.8.0", 130, after="2.5.0", size=192, batch_size=4, lr_anneal=(20, 0.1)
)

#: 2.5.1 is 2.5.0's network (epoch 130) adapted to each image before it denoises it: 100 steps of
#: Stein's unbiased risk estimate over the image's own slabs, tuning the normalisation gains
#: (:mod:`bids_synth.nn.adaptation`). Tuning every weight instead added 0.2–0.5 dB in the brain of
#: the noisy real Colin27 but fine texture of its own to the clean one (estimated σ 1.05 → 1.22;
#: 2.5.0: 0.65); the gains alone keep the clean image (0.75) and add 0.16 dB on the noisy MNI
#: 2009a T1 at 5 % (100 steps at 3e-3 as much as 200 at 1e-3, in half the time; BENCHMARKS.md)
RECIPES["denoise-slab"] = replace(
    _version_of("denoise-slab", "2.5.0"),
    version="2.5.1",
    adaptation=SureAdaptation(),
)

#: 2.10.0 continues 2.5.1 from epoch 130 with the MNI 2009a T1 as its only real clean image (6×
#: instead of the four images 3× each): the SPM avg152 templates are 2 mm averages, clean
#: targets smoother than a real scan, and the network smooths the real Colin27's cerebellar
#: folia more than BM4D does. Shipped at epoch 180: +0.08–0.15 dB over 2.5.1 in the brain of the
#: noisy real Colin27, the head within 0.07 dB (BENCHMARKS.md)
RECIPES["denoise-slab"] = _continued(
    "denoise-slab",
    "2.10.0",
    130,
    clean_images=("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",),
    clean_image_copies=6,
    lr_anneal=(15, 0.1),
)

#: 2.10.1 is 2.10.0's network (epoch 180) averaging each orientation's prediction over four
#: in-plane lattice symmetries: on the noisy MNI 2009a T1 (the decision image) +0.15 / +0.11 /
#: +0.12 dB in the head and +0.07 / +0.04 / +0.03 dB in the brain at 3 / 5 / 9 %, the adaptation
#: kept, for about 1.5× the time (BENCHMARKS.md)
RECIPES["denoise-slab"] = replace(RECIPES["denoise-slab"], version="2.10.1", symmetries=4)


#: 2.2.0 continues 2.1.0's weights (epoch 44) on pairs whose input noise stays white (quarter
#: turns and transposes instead of a resampled affine, as the denoiser's 2.5.0): on the real scans
#: 2.1.0 mottles the white matter, and it never saw a scan's noise at its full amplitude. At
#: epoch 59 Colin27 keeps more of its grey/white separability (0.74 → 0.83), the KmeansTest T1
#: and the blurred avg152T1 less (0.85 → 0.81, 0.25 → 0.20): not shipped (BENCHMARKS.md)
RECIPES["harmonize-t1w-site0-slab"] = _continued(
    "harmonize-t1w-site0-slab", "2.2.0", 44, augmentation="lattice", lr_anneal=(15, 0.1)
)

#: 2.3.0 continues 2.2.0 from epoch 59 with a quarter of its inputs a coarse isotropic acquisition
#: (FWHM 2–8 mm along all three axes): the head model blurred thick slices along one axis only,
#: and the smoothed 2 mm avg152T1 came out of 2.1.0/2.2.0 with white matter as dark as grey. At
#: epoch 79 Colin27 and the KmeansTest T1 keep more separability than ever (0.87, 0.89), avg152T1
#: still 0.22 (2.1.0: 0.25): not shipped (BENCHMARKS.md)
RECIPES["harmonize-t1w-site0-slab"] = _continued(
    "harmonize-t1w-site0-slab",
    "2.3.0",
    59,
    randomisation=replace(
        RECIPES["harmonize-t1w-site0-slab"].randomisation, thick_share=0.35, coarse_share=0.25
    ),
    lr_anneal=(20, 0.1),
)

#: 2.4.0 continues 2.3.0 from epoch 79 with its targets acquired at the input's resolution: 2.3.0
#: still took avg152T1's white matter down to its grey (separability kept 0.22): trained to map
#: a blurred input to a sharp target, it sharpens the template into structure of its own. At
#: epoch 94 the template stays blurred but every scan keeps less separability (0.18, 0.81,
#: 0.74): not shipped (BENCHMARKS.md)
RECIPES["harmonize-t1w-site0-slab"] = _continued(
    "harmonize-t1w-site0-slab",
    "2.4.0",
    79,
    randomisation=replace(
        RECIPES["harmonize-t1w-site0-slab"].randomisation, resolution_in_target=True
    ),
    lr_anneal=(15, 0.1),
)

#: the adversarial option, tried as a fine-tune: can a PatchGAN sharpen T1w → T2w without
#: inventing structure? (pix2pix's λ_L1 = 100)
RECIPES["translate-t1w-t2w-slab-pix2pix"] = replace(
    RECIPES["translate-t1w-t2w-slab"],
    id="translate-t1w-t2w-slab-pix2pix",
    parent_id="translate-t1w-t2w-slab",
    adversarial=0.01,
    fine_tune_from=71,
)


def build_trainer(recipe: SlabRecipe, device: str = "cpu"):
    import torch

    from bids_synth.nn.factory import build_network
    from bids_synth.nn.trainers import Pix2PixTrainer, RegressionTrainer

    torch.manual_seed(recipe.seed)
    architecture = recipe.architecture()
    networks = {"generator": build_network(architecture["name"], **architecture["kwargs"])}
    common = dict(
        lr=recipe.lr,
        device=torch.device(device),
        amp=recipe.amp,
        seed=recipe.seed,
        average_decay=recipe.weight_average,
    )
    if recipe.adversarial:
        networks["discriminator"] = build_network(
            "patchgan", in_channels=architecture["kwargs"]["in_channels"] + 1, dims=2
        )
        return Pix2PixTrainer(networks, l1_weight=1 / recipe.adversarial, **common)
    return RegressionTrainer(
        networks,
        content=recipe.content,
        ssim_weight=0.0,
        emphasis=recipe.loss_emphasis,
        symmetric_emphasis=recipe.symmetric_emphasis,
        noise_relative=recipe.noise_relative_loss,
        **common,
    )


def data_source(recipe: SlabRecipe, workdir: Path):
    from bids_synth.nn.slabs import RandomisedSlabs
    from bids_synth.refdata import reference_file
    from bids_synth.simulate.randomise import load_clean_image, load_or_simulate_heads

    pool = workdir / "heads"
    clean = [load_clean_image(reference_file(name)) for name in recipe.clean_images]
    clean *= recipe.clean_image_copies
    options = dict(
        spacing=recipe.spacing_mm,
        physics_contrasts=recipe.physics_contrasts,
        target_contrasts=recipe.target_contrasts,
        log=LOG.info,
    )

    def training_heads(specs: list[tuple[str, int]]) -> list:
        return load_or_simulate_heads(
            pool,
            specs,
            shell_stretch_sd=recipe.shell_stretch_sd,
            muscle_fat_share=recipe.muscle_fat_share,
            **options,
        )

    if recipe.head_window:
        window = HeadWindow(
            recipe.train_heads,
            *recipe.head_window,
            training_heads,
            start_epoch=recipe.fine_tune_from or 0,
        )

        def heads(epoch: int) -> list:
            return window(epoch) + clean

    else:
        heads = training_heads(list(recipe.train_heads)) + clean
    return RandomisedSlabs(
        heads,
        load_or_simulate_heads(pool, list(recipe.validation_heads), **options),
        slices=recipe.slices,
        size=recipe.size,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        randomisation=recipe.randomisation,
        ct_scale=CT_SCALE_HU,
        target=recipe.slab_target,
        inputs=recipe.suffixes if recipe.input_channels > 1 else (),
        augmentation=recipe.augmentation,
    )


SEED_WEIGHTS, SEED_PROGRESS = "seed.safetensors", "seed.json"


def write_seed_checkpoint(recipe: SlabRecipe, workdir: Path, folder: Path) -> Path:
    """Half-precision generator weights and the progress so far (epochs, history), for resuming
    on another machine; a few MB, meant to be committed."""
    from safetensors.torch import save as save_safetensors

    from bids_synth.fileio import atomic_write, atomic_write_json
    from bids_synth.nn.checkpoint import load_checkpoint, read_latest

    trainer = build_trainer(recipe)
    latest = load_checkpoint(workdir / "checkpoints", trainer)
    weights = trainer.inference_generator.state_dict()
    tensors = {k: v.detach().half().contiguous() for k, v in weights.items()}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / SEED_WEIGHTS) as handle:
        handle.write(save_safetensors(tensors))
    atomic_write_json(
        folder / SEED_PROGRESS,
        {
            "recipe": recipe.id,
            "run": recipe.run_settings(),
            "epoch": latest["epoch"],
            "history": latest["history"],
            "checkpoint": read_latest(workdir / "checkpoints")["folder"],
        },
    )
    return folder


def _start_from_seed(recipe: SlabRecipe, trainer, seed: Path) -> tuple[int, list[dict]]:
    """Load a seed checkpoint's weights into ``trainer``; return its epoch and history. The seed
    is of ``recipe`` itself, or — for a fine-tune — of its parent at epoch ``fine_tune_from``."""
    from safetensors.torch import load as load_safetensors

    progress = json.loads((seed / SEED_PROGRESS).read_text())
    fine_tune_start = (
        recipe.fine_tune_from is not None
        and progress["run"] == recipe.parent().run_settings()
        and progress["epoch"] == recipe.fine_tune_from
    )
    if progress["run"] != recipe.run_settings() and not fine_tune_start:
        raise ValueError(f"seed checkpoint {seed} was written by other recipe settings")
    weights = {
        k: v.float() for k, v in load_safetensors((seed / SEED_WEIGHTS).read_bytes()).items()
    }
    if fine_tune_start and (recipe.widened_from or recipe.slices != recipe.parent().slices):
        weights = _widened(weights, trainer.generator.state_dict(), recipe)
    trainer.generator.load_state_dict(weights)
    return int(progress["epoch"]), list(progress["history"])


def _widened(weights: dict, target: dict, recipe: SlabRecipe) -> dict:
    """The parent's ``weights`` for the wider input layer of ``target``: each parent contrast's
    slice weights where that contrast's slices are now (suffix-major slabs), centred in a deeper
    slab; zero on new contrasts and on the added outer slices, so the network starts as the
    parent."""
    import torch

    parent = recipe.parent()
    depth, added = parent.slices, recipe.slices - parent.slices
    if added < 0 or added % 2:
        raise ValueError(
            f"recipe {recipe.id} {recipe.version}: slabs of {recipe.slices} slices cannot start "
            f"from {depth}-slice weights (only an even number of slices may be added)"
        )
    offset = added // 2
    widened = dict(weights)
    for key, tensor in weights.items():
        if tensor.shape == target[key].shape:
            continue
        grown = torch.zeros_like(target[key])
        for index in range(parent.input_channels):
            new = recipe.suffixes.index(parent.suffixes[index]) if recipe.input_channels > 1 else 0
            start = new * recipe.slices + offset
            grown[:, start : start + depth] = tensor[:, index * depth : (index + 1) * depth]
        widened[key] = grown
    return widened


def run_recipe(
    recipe: SlabRecipe,
    workdir: Path,
    *,
    epochs: int | None = None,
    seed_checkpoint: Path | None = None,
) -> list[dict]:
    """Train ``recipe`` in ``workdir`` up to ``epochs`` (default: the recipe's), resuming from the
    latest checkpoint there, else from ``seed_checkpoint`` when given. Returns the history."""
    import torch

    from bids_synth.nn.checkpoint import read_latest, save_checkpoint
    from bids_synth.nn.loop import fit

    workdir.mkdir(parents=True, exist_ok=True)
    checkpoints = workdir / "checkpoints"
    trainer = build_trainer(recipe)
    if read_latest(checkpoints) is None and seed_checkpoint is not None:
        epoch, history = _start_from_seed(recipe, trainer, seed_checkpoint)
        save_checkpoint(
            checkpoints, trainer, epoch=epoch, run=recipe.run_settings(), history=history
        )
        LOG.info("continuing from seed checkpoint %s at epoch %d", seed_checkpoint, epoch)
    started = time.perf_counter()
    history = fit(
        trainer,
        data_source(recipe, workdir),
        epochs=epochs or recipe.epochs,
        steps_per_epoch=recipe.steps_per_epoch,
        workdir=workdir,
        run=recipe.run_settings(),
        resume=True,
        validation_draws=16,
        output_scale=recipe.output_scale,
        tags={"head_model_revision": HEAD_MODEL_REVISION},
        lr_at=recipe.lr_at if recipe.lr_anneal else None,
    )
    LOG.info(
        "trained for %.0f s on %d thread(s)", time.perf_counter() - started, torch.get_num_threads()
    )
    return history


def _trained_by(recipe: SlabRecipe, epoch: int) -> SlabRecipe:
    """The recipe of the trajectory that trained 1-based ``epoch`` (a continuation's own epochs
    come after its ``fine_tune_from``; the earlier ones are its base's or parent's)."""
    while recipe.fine_tune_from is not None and epoch <= recipe.fine_tune_from:
        recipe = recipe.parent()
    return recipe


def training_summary(recipe: SlabRecipe, history: list[dict], threads: int = 1) -> dict:
    """Steps, samples (slices) seen, output voxels and CPU-hours of a history (``threads`` per
    process), each epoch counted with the batch and slab size it trained with."""
    trained_by = [_trained_by(recipe, int(row["epoch"])) for row in history]
    steps = sum(r.steps_per_epoch for r in trained_by)
    seconds = sum(float(row["seconds"]) for row in history)
    return {
        "epochs": len(history),
        "steps": steps,
        "samples": sum(r.steps_per_epoch * r.batch_size for r in trained_by),
        "output_voxels": sum(r.steps_per_epoch * r.batch_size * r.size**2 for r in trained_by),
        "cpu_hours": round(seconds * threads / 3600, 2),
    }


#: translated and harmonized images come out on one fixed scale whatever their input's scale:
#: the reference style's 0.5th–99.5th head percentiles (the training targets' 0–1) → 0–1000
REFERENCE_STYLE_SCALE = 1000.0


def _output_contract(recipe: SlabRecipe) -> dict:
    if recipe.slab_target == "ct":
        return {
            "suffix": recipe.target,
            "units": "HU",
            "range": list(CT_HU_RANGE),
            "normalization": {"method": "scale", "offset": 0.0, "scale": CT_SCALE_HU},
        }
    if recipe.slab_target == "brain":
        return {
            "suffix": recipe.target,
            "units": "brain share of the voxel (0–1)",
            "range": [0.0, 1.0],
            "normalization": {"method": "scale", "offset": 0.0, "scale": 1.0},
        }
    if recipe.task in ("translate", "harmonize"):
        return {
            "suffix": recipe.target,
            "units": "a.u. (reference style: 0.5th–99.5th head percentiles → 0–1000)",
            "range": None,
            "normalization": {"method": "scale", "offset": 0.0, "scale": REFERENCE_STYLE_SCALE},
        }
    return {
        "suffix": recipe.target,
        "units": "a.u. (input scale)",
        "range": None,
        "normalization": {"method": "input"},
    }


def _listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b, and c``."""
    if len(items) < 3:
        return " and ".join(items)
    return f"{', '.join(items[:-1])}, and {items[-1]}"


def _fine_tune_description(recipe: SlabRecipe) -> str:
    """What a fine-tune changes (loss emphasis, added inputs, adversarial term, added heads), and
    from when; a fine-tune of a fine-tune adds its own changes to its base's."""
    from bids_synth.nn.slabs import AUGMENTATIONS

    if recipe.base is not None:
        added = set(recipe.train_heads) - set(recipe.base.train_heads)
        sources = ", ".join(sorted({source for source, _ in added}))
        heads = "head" if len(added) == 1 else "heads"
        # a window lists heads it has not trained on yet: the window names them instead
        listed = added and not recipe.head_window
        changes = [f"{len(added)} more training {heads} ({sources})"] if listed else []
        if recipe.shell_stretch_sd != recipe.base.shell_stretch_sd:
            changes.append(
                "the training heads' skulls and scalps stretched per draw (log-normal, sd "
                f"{recipe.shell_stretch_sd:g})"
            )
        if recipe.muscle_fat_share != recipe.base.muscle_fat_share:
            changes.append(
                f"up to {recipe.muscle_fat_share:.0%} of each training head's muscle turned into "
                "fat compartments"
            )
        if recipe.symmetric_emphasis != recipe.base.symmetric_emphasis:
            changes.append("the voxels the prediction calls bone weighing as much as bone")
        smoothing = recipe.randomisation.texture_smoothing_mm
        if smoothing != recipe.base.randomisation.texture_smoothing_mm:
            changes.append(
                "the Gaussian-mixture contrasts' within-tissue texture a smooth field (σ "
                f"{smoothing[0]:g}–{smoothing[1]:g} mm) instead of voxel-wise"
            )
        drawn, before = recipe.randomisation, recipe.base.randomisation
        if drawn.coarse_share != before.coarse_share:
            changes.append(
                f"{drawn.coarse_share:.0%} of the inputs a coarse isotropic acquisition (FWHM "
                f"{drawn.coarse_fwhm_mm[0]:g}–{drawn.coarse_fwhm_mm[1]:g} mm along all three "
                f"axes; thick slices {drawn.thick_share:.0%})"
            )
        if (drawn.physics_share, drawn.physics_inputs) != (
            before.physics_share,
            before.physics_inputs,
        ):
            contrasts = " or ".join(drawn.physics_inputs or recipe.physics_contrasts)
            changes.append(
                f"{drawn.physics_share:.0%} of the inputs physics-based ({contrasts}; was "
                f"{before.physics_share:.0%})"
            )
        if drawn.resolution_in_target != before.resolution_in_target:
            changes.append("the target acquired at its input's resolution (no deblurring)")
        if recipe.augmentation != recipe.base.augmentation:
            changes.append(
                f"the in-plane augmentation {recipe.augmentation} "
                f"({AUGMENTATIONS[recipe.augmentation]}) instead of "
                f"{AUGMENTATIONS[recipe.base.augmentation]}"
            )
        if recipe.suffixes != recipe.base.suffixes:
            changes.append(
                f"{'+'.join(recipe.suffixes)} inputs instead of {'+'.join(recipe.base.suffixes)} "
                "(the new contrasts' weights starting at zero)"
            )
        if recipe.slices != recipe.base.slices:
            changes.append(
                f"slabs of {recipe.slices} slices instead of {recipe.base.slices} (the added "
                "outer slices' weights starting at zero)"
            )
        if (recipe.size, recipe.batch_size) != (recipe.base.size, recipe.base.batch_size):
            changes.append(
                f"batches of {recipe.batch_size} slabs of {recipe.size}² voxels instead of "
                f"{recipe.base.batch_size} of {recipe.base.size}²"
            )
        if recipe.clean_images != recipe.base.clean_images:
            changes.append(
                f"the real reference images {', '.join(recipe.clean_images)} "
                f"({recipe.clean_image_copies}× each) instead of "
                f"{', '.join(recipe.base.clean_images)} ({recipe.base.clean_image_copies}× each)"
            )
        if recipe.noise_relative_loss != recipe.base.noise_relative_loss:
            changes.append("each pair's error divided by its noise rms (every level alike)")
        if recipe.head_window and recipe.head_window != recipe.base.head_window:
            held, step = recipe.head_window
            changes.append(
                f"a window of {held} of its {len(recipe.train_heads)} training heads at a time, "
                f"moving on by {step} {'head' if step == 1 else 'heads'} each epoch"
            )
        if recipe.weight_average and recipe.weight_average != recipe.base.weight_average:
            horizon = 1 / (1 - recipe.weight_average)
            changes.append(
                f"the bundle's weights an exponential moving average of the trained ones (decay "
                f"{recipe.weight_average:g} per step, ~{horizon:.0f} steps)"
            )
        if recipe.lr_anneal:  # it restarts at every continuation
            length, factor = recipe.lr_anneal
            changes.append(
                f"the learning rate annealed from {recipe.lr:g} to {recipe.lr * factor:g} "
                f"(half cosine) over {length} epochs"
            )
        if not changes:
            return _fine_tune_description(recipe.base)
        since = f" from epoch {recipe.fine_tune_from} on"
        return f"{_fine_tune_description(recipe.base)}; {_listed(changes)}{since}"
    terms = []
    if recipe.loss_emphasis:
        threshold, factor = recipe.loss_emphasis
        unit = (
            f"{threshold * CT_SCALE_HU:.0f} HU" if recipe.slab_target == "ct" else f"{threshold:g}"
        )
        terms.append(f"the voxels of target ≥ {unit} weighing {factor:g}× in the L1 loss")
    if recipe.widened_from:
        terms.append(
            f"{'+'.join(recipe.suffixes)} inputs, started from the "
            f"{'+'.join(recipe.widened_from)} weights (zero on the new contrasts)"
        )
    if recipe.adversarial:
        terms.append(
            f"a pix2pix adversarial loss (2D PatchGAN, weight {recipe.adversarial:g} against L1)"
        )
    if not terms:
        return ""
    since = f" from epoch {recipe.fine_tune_from} on" if recipe.fine_tune_from else ""
    return f"; {' and '.join(terms)}{since}"


def _head_model_revisions(history: list[dict]) -> str:
    """Which head model revision the epochs of ``history`` trained on, e.g. "revision 1 for
    epochs 1–155, revision 2 for epochs 156–190" (rows without the tag predate it: revision 1)."""
    spans: list[list[int]] = []  # [revision, first epoch, last epoch]
    for row in history:
        revision = int(row.get("head_model_revision", 1))
        if spans and spans[-1][0] == revision:
            spans[-1][2] = row["epoch"]
        else:
            spans.append([revision, row["epoch"], row["epoch"]])
    if len(spans) == 1:
        return f"revision {spans[0][0]}"
    return ", ".join(f"revision {r} for epochs {first}–{last}" for r, first, last in spans)


def _heads_trained_on(recipe: SlabRecipe, history: list[dict]) -> str:
    """How many training heads ``history`` trained on: all of them, or as many as the window
    held by its last epoch (e.g. "100 of 240")."""
    if not recipe.head_window:
        return str(len(recipe.train_heads))
    start = recipe.fine_tune_from or 0
    epochs = sum(1 for row in history if int(row["epoch"]) > start)
    seen = heads_seen(recipe.train_heads, *recipe.head_window, epochs)
    return f"{seen} of {len(recipe.train_heads)}"


def _data_description(recipe: SlabRecipe, history: list[dict]) -> str:
    sources = ", ".join(sorted({source for source, _ in recipe.train_heads}))
    noise = recipe.randomisation.noise_range
    text = (
        f"{_heads_trained_on(recipe, history)} label heads from the bids-synth head model "
        f"({_head_model_revisions(history)}; {sources} "
        "anatomies, random affine and nonlinear deformation), re-randomised for every batch: "
        "Gaussian-mixture contrasts per tissue "
        f"({recipe.randomisation.physics_share:.0%} physics-based T1w/T2w), bias field, thick "
        "slices, gamma"
    )
    if recipe.slab_target == "ct":
        return (
            f"{text}, Rician/Gaussian noise, in-plane affine, flips; slabs of {recipe.slices} "
            f"slices along all three axes → CT (HU){_fine_tune_description(recipe)}"
        )
    if recipe.slab_target == "brain":
        return (
            f"{text}, Rician/Gaussian noise, in-plane affine, flips; slabs of {recipe.slices} "
            "slices of any contrast along all three axes → the brain and its CSF (labels of the "
            f"head model){_fine_tune_description(recipe)}"
        )
    if recipe.task in ("translate", "harmonize"):
        return (
            f"{text}, Rician/Gaussian noise, in-plane affine, flips; the physics-based images "
            f"are {'/'.join(recipe.randomisation.physics_inputs or ('MR',))} only; slabs of "
            f"{recipe.slices} slices along all three axes → the head's noise-free "
            f"{recipe.target} in the reference scanner style (site 0), percentile-normalised"
            f"{_fine_tune_description(recipe)}"
        )
    return (
        f"{text}; and the real reference images {', '.join(recipe.clean_images)} under a random "
        f"bias field and gamma; Rician/Gaussian noise of σ {noise[0]:.0%}–{noise[1]:.0%} of the "
        f"99th head percentile, in-plane affine, flips; slabs of {recipe.slices} noisy slices "
        f"along all three axes → the noise-free centre slice{_fine_tune_description(recipe)}"
    )


def export_bundle(recipe: SlabRecipe, workdir: Path, folder: Path, *, threads: int = 1):
    """A model bundle from the latest checkpoint in ``workdir``, with card and training log."""
    import torch

    from bids_synth import __version__
    from bids_synth.models.bundle import save_bundle
    from bids_synth.models.card import render_model_card
    from bids_synth.nn.checkpoint import load_checkpoint
    from bids_synth.nn.history import plot_history, write_history_csv

    trainer = build_trainer(recipe)
    latest = load_checkpoint(workdir / "checkpoints", trainer)
    history = latest["history"]
    summary = training_summary(recipe, history, threads)
    meta = {
        "id": recipe.id,
        "version": recipe.version,
        "task": recipe.task,
        "architecture": recipe.architecture(),
        # inference under the autocast the network trained under (bf16: 2.4× faster on a CPU,
        # mean difference to fp32 ~1 HU)
        "inference": {
            "mode": "slabs",
            "slices": recipe.slices,
            "axes": [0, 1, 2],
            "amp": recipe.amp,
            "fusion": recipe.fusion,
            "symmetries": recipe.symmetries,
            "mirror": recipe.mirror,
            **({"adaptation": recipe.adaptation.as_dict()} if recipe.adaptation else {}),
        },
        "input": {
            "suffixes": list(recipe.suffixes),
            "channels": recipe.input_channels,
            "spacing_mm": [recipe.spacing_mm] * 3,
            # a denoiser runs on the acquired voxels, whose noise is what it learned to remove
            "grid": "acquired" if recipe.task == "denoise" else "spacing",
            "orientation": "RAS",
            "normalization": PERCENTILE_NORMALISATION,
        },
        "output": _output_contract(recipe),
        "training": {
            "mode": "pix2pix" if recipe.adversarial else "regression",
            "loss": recipe.content,
            **({"adversarial_weight": recipe.adversarial} if recipe.adversarial else {}),
            **(
                {
                    "loss_emphasis": {
                        "threshold": recipe.loss_emphasis[0],
                        "factor": recipe.loss_emphasis[1],
                        **({"where": "target or prediction"} if recipe.symmetric_emphasis else {}),
                    }
                }
                if recipe.loss_emphasis
                else {}
            ),
            **(
                {"fine_tuned_from_epoch": recipe.fine_tune_from}
                if recipe.fine_tune_from is not None
                else {}
            ),
            **({"weight_average_decay": recipe.weight_average} if recipe.weight_average else {}),
            "recipe": recipe.id,
            "seed": recipe.seed,
            "steps": summary["steps"],
            "epochs": summary["epochs"],
            "batch_size": recipe.batch_size,
            "patch": [recipe.slices, recipe.size, recipe.size],
            "samples": summary["samples"],
            "output_voxels": summary["output_voxels"],
            "cpu_hours": summary["cpu_hours"],
            "device": "cpu",
            "amp": recipe.amp,
            "lr": recipe.lr,
            "data": {
                "kind": "simulated",
                "description": _data_description(recipe, history),
                "randomisation": recipe.randomisation.to_json(),
                "validation": ", ".join(f"{s} seed {n}" for s, n in recipe.validation_heads),
            },
            "command": f"python -m bids_synth.training {recipe.id} --workdir WORKDIR "
            f"--epochs {summary['epochs']}",
        },
        "software": {"bids_synth": __version__, "torch": torch.__version__},
    }
    if recipe.task == "harmonize":
        from bids_synth.training.run import site_harmonization_meta

        meta["harmonization"] = site_harmonization_meta(0)
    bundle = save_bundle(
        folder, trainer.inference_generator, meta=meta, card=render_model_card(meta, history)
    )
    write_history_csv(folder / "training_log.csv", history)
    plot_history(folder / "training_curves.png", history)
    if recipe.task == "harmonize":
        from bids_synth.training.output_reference import add_output_reference

        sources = {source for source, _ in recipe.train_heads}
        bundle = add_output_reference(
            folder, sources, spacing_mm=recipe.spacing_mm, history=history
        )
    return bundle
