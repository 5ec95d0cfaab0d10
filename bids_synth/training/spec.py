"""Everything a ``bids-synth train`` run needs (:class:`TrainingSpec`), its checks and what follows
from it: the training plan, the bundle's input and output contracts and the network settings."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from bids_synth.errors import UsageError

MODES = ("regression", "pix2pix", "cyclegan", "wgan-gp", "noise2self")
ARCHITECTURES = ("unet", "resunet", "red")
NORMS = ("instance", "batch", "group", "none")

# settings that do not change the batches or updates of a given epoch: free to change on resume
_NOT_IN_TRAJECTORY = (
    "resume",
    "out",
    "work_dir",
    "device",
    "epochs",
    "steps",
    "steps_per_epoch",
    "val_every",
    "validation_draws",
    "bundle_id",
    "bundle_version",
    "inference_overlap",
    "command",
)


@dataclass(frozen=True)
class TrainingSpec:
    """A training run: data (``bids_dir`` or ``simulated``), network, optimisation and bundle.

    Data come from a BIDS dataset (source suffixes → target suffix of the same subject/session),
    from the generative head model (``simulated``; ``noise`` in percent, ``pool`` heads simulated
    once, 0: new heads all along), or from the sources alone (``mode="noise2self"``).
    ``target_site`` trains harmonization on simulated traveling subjects, the sources in
    ``source_sites`` styles ("random" or a site number). ``steps`` (if set) makes epochs of
    ``val_every`` steps. ``command`` holds the ``bids-synth train`` arguments recorded in the bundle.
    """

    task: str
    out: Path
    bids_dir: Path | None = None
    simulated: bool = False
    source: tuple[str, ...] = ("T1w",)
    label_sources: tuple[str, ...] = ("tpm", "phantom")
    noise: tuple[float, float] = (0.0, 5.0)
    spacing: float = 1.0
    pool: int = 0
    target_site: int | None = None
    source_sites: tuple[str, ...] = ("random",)
    validation_subjects: int = 2
    target: str = "CT"
    mode: str = "regression"
    arch: str = "unet"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    norm: str = "instance"
    red_width: int = 32
    red_depth: int = 4
    slices: int | None = None
    epochs: int = 10
    steps_per_epoch: int = 100
    steps: int | None = None
    val_every: int = 100
    validation_draws: int = 4
    patch: tuple[int, int, int] = (64, 64, 64)
    inference_overlap: float = 0.5
    batch_size: int = 2
    lr: float = 2e-4
    device: str = "auto"
    amp: str = "auto"
    seed: int = 0
    resume: bool = False
    work_dir: Path | None = None
    bundle_id: str | None = None
    bundle_version: str = "0.1.0"
    command: tuple[str, ...] = ()

    @property
    def harmonizing(self) -> bool:
        return self.target_site is not None

    @property
    def denoising(self) -> bool:
        """Noisy → clean: self-supervised, or target ``clean`` (or the first source) without
        a target site (harmonization)."""
        if self.harmonizing:
            return False
        return self.mode == "noise2self" or self.target in ("clean", self.source[0])

    @property
    def input_channels(self) -> int:
        """Simulated denoising takes the sources as alternatives (one channel), else as channels."""
        return 1 if self.simulated and self.denoising else len(self.source)

    @property
    def workdir(self) -> Path:
        return self.work_dir or self.out / "training"

    def plan(self) -> tuple[int, int]:
        """(epochs, steps per epoch); ``steps`` makes epochs of ``val_every`` steps (rounded up)."""
        if self.steps is None:
            return self.epochs, self.steps_per_epoch
        steps_per_epoch = min(self.val_every, self.steps)
        return math.ceil(self.steps / steps_per_epoch), steps_per_epoch

    def source_site_numbers(self) -> tuple[int | None, ...]:
        """``source_sites`` as TrainingPairs takes them (None: a random style)."""
        sites = []
        for token in self.source_sites:
            if token == "random":
                sites.append(None)
            elif token.isdigit():
                sites.append(int(token))
            else:
                raise UsageError(f"--source-sites {token!r}: 'random' or a site number")
        return tuple(sites)

    def run_settings(self) -> dict:
        """The settings that define the training trajectory (a resumed run must match them)."""
        settings = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(self).items()
            if key not in _NOT_IN_TRAJECTORY
        }
        settings["steps_per_epoch"] = self.plan()[1]
        return json.loads(json.dumps(settings))

    def network_kwargs(self) -> dict:
        kwargs = {"in_channels": self.input_channels, "out_channels": 1}
        if self.arch == "red":
            return {**kwargs, "width": self.red_width, "depth": self.red_depth}
        kwargs.update(channels=list(self.channels), norm=self.norm)
        if self.slices:
            kwargs["slices"] = self.slices
        return kwargs

    def contracts(self) -> tuple[dict, dict]:
        """The bundle's input and output contracts (suffixes, channels, grid, normalisation, units),
        normalised as the generative head model normalises, for every data source."""
        from bids_synth.modalities import CT_HU_RANGE
        from bids_synth.simulate.normalisation import CT_SCALE_HU, MR_PERCENTILE

        inputs = {
            "suffixes": list(self.source),
            "channels": self.input_channels,
            "spacing_mm": [float(self.spacing)] * 3 if self.simulated else [1.0, 1.0, 1.0],
            # a denoiser runs on the acquired voxels: interpolation would correlate the noise
            "grid": "acquired" if self.denoising else "spacing",
            "orientation": "RAS",
            "normalization": {"method": "percentile-scale", "percentile": MR_PERCENTILE},
        }
        target = self.source[0] if self.denoising else self.target
        if self.harmonizing:
            from bids_synth.simulate.training import harmonization_scale

            scale = harmonization_scale(self.target_site, target)
            output = {
                "suffix": target,
                "units": f"site{self.target_site} scanner units",
                "range": None,
                "normalization": {"method": "scale", "offset": 0.0, "scale": scale},
            }
        elif target.upper() == "CT":
            output = {
                "suffix": target,
                "units": "HU",
                "range": list(CT_HU_RANGE),
                "normalization": {"method": "scale", "offset": 0.0, "scale": CT_SCALE_HU},
            }
        else:
            output = {
                "suffix": target,
                "units": "a.u. (input scale)",
                "range": None,
                "normalization": {"method": "input"},
            }
        return inputs, output

    @property
    def resolved_bundle_id(self) -> str:
        """``--id``, by default ``<task>-<arch>``."""
        return self.bundle_id or f"{self.task}-{self.arch}".lower()

    def check(self) -> None:
        """Raise :class:`UsageError` (one line, naming the ``bids-synth train`` option) if the
        settings cannot train."""
        from bids_synth.models.bundle import identity_problem

        if problem := identity_problem(self.resolved_bundle_id, self.bundle_version):
            raise UsageError(f"--id / --version: {problem}")
        positive = {
            "--epochs": self.epochs,
            "--steps-per-epoch": self.steps_per_epoch,
            "--batch-size": self.batch_size,
            "--val-every": self.val_every,
            "--steps": self.steps if self.steps is not None else 1,
            "--validation-draws": self.validation_draws,
        }
        for flag, value in positive.items():
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {self.seed}")
        if not self.channels or min(self.channels) < 1:
            raise UsageError(f"--channels {list(self.channels)}: one or more widths, each >= 1")
        if self.slices is not None and (self.slices < 1 or self.slices % 2 == 0):
            raise UsageError(f"--slices must be an odd number >= 1, got {self.slices}")
        if self.slices is not None and self.arch == "red":
            raise UsageError("--slices makes a 2.5D U-Net: not with --arch red")
        if not 0 <= self.inference_overlap <= 0.9:
            raise UsageError(
                f"--inference-overlap must be in [0, 0.9], got {self.inference_overlap}"
            )
        patch = list(self.patch)
        multiple = 2 ** (len(self.channels) - 1) if self.arch != "red" else 1
        if any(p % multiple or p < 8 for p in patch):
            raise UsageError(
                f"--patch {patch}: each size must be a multiple of {multiple} and at least 8"
            )
        if self.arch == "red" and (
            self.red_depth < 2 or self.red_depth % 2 or self.red_width < 1
            or min(patch) <= 2 * self.red_depth
        ):  # fmt: skip
            raise UsageError(
                f"--red-depth {self.red_depth} / --red-width {self.red_width}: the depth must be "
                f"even and >= 2, the width >= 1, every --patch size > 2 x depth"
            )
        if self.simulated:
            self._check_simulation()
        if self.harmonizing:
            self._check_harmonization()

    def _check_simulation(self) -> None:
        from bids_synth.simulate import LABEL_SOURCES
        from bids_synth.simulate.anatomy import default_shape

        if self.mode == "noise2self":
            raise UsageError("--mode noise2self trains on real images: use --bids-dir")
        unknown = sorted(set(self.label_sources) - set(LABEL_SOURCES))
        if unknown:
            raise UsageError(f"--label-sources {unknown}: choose among {', '.join(LABEL_SOURCES)}")
        noise = list(self.noise)
        if not 0 <= noise[0] <= noise[1] < 100:
            raise UsageError(f"--noise {noise}: need 0 <= LOW <= HIGH < 100 (percent)")
        if self.pool < 0 or self.validation_subjects < 1 or self.spacing <= 0:
            raise UsageError("--pool must be >= 0, --validation-subjects >= 1, --spacing > 0")
        grid = default_shape(self.spacing)
        if any(p > g for p, g in zip(self.patch, grid)):
            raise UsageError(
                f"--patch {list(self.patch)} is larger than the {self.spacing:g} mm simulation "
                f"grid {grid}"
            )

    def _check_harmonization(self) -> None:
        from bids_synth.simulate.mri import CONTRASTS_MR

        if not self.simulated:
            raise UsageError(
                "--target-site trains on simulated traveling subjects: add --simulated"
            )
        if self.target_site < 0:
            raise UsageError(f"--target-site must be >= 0, got {self.target_site}")
        if any(c not in CONTRASTS_MR for c in (*self.source, self.target)):
            raise UsageError(
                f"--target-site: --source and --target must be MR contrasts "
                f"({', '.join(CONTRASTS_MR)})"
            )
        self.source_site_numbers()
