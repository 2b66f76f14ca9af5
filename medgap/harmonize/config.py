"""Typed configuration of blind harmonisation, with the ``cpu-small`` and ``paper`` presets."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from medgap.config import MedgapConfig

__all__ = ["FlowConfig", "DataConfig", "TrainConfig", "OptimizerConfig", "RestoreConfig", "HarmonizeConfig"]


class FlowConfig(MedgapConfig):
    """The target flow. Paper: 1x144x176, 4 levels x 7 steps, 96 hidden, 3 blocks, 8 bins, tail 3."""

    image_size: tuple[int, int] = (64, 80)
    levels: int = Field(3, ge=1, le=6)
    steps: int = Field(3, ge=1, le=64)
    hidden: int = Field(32, ge=1, le=4096)
    blocks: int = Field(1, ge=1, le=64)
    bins: int = Field(8, ge=2, le=256)
    bound: float = Field(3.0, gt=0)
    min_slope: float = Field(1e-3, gt=0, lt=1)
    num_bits: int = Field(12, ge=1, le=16)
    batch_norm: bool = True

    @field_validator("image_size")
    @classmethod
    def _divisible(cls, v, info):
        if v[0] < 4 or v[1] < 4:
            raise ValueError("image_size must be at least 4x4")
        return v


class DataConfig(MedgapConfig):
    """Slices: per-slice min-max (reference) or percentile normalisation; augmentation for small sets."""

    # targets used when none are given: the real T1 cohort of medgap.data.cohort (four brains in one
    # look; Colin 27 is held out) or the ICBM152 2009a template alone (with its WM labels)
    cohort: Literal["real-t1", "icbm152"] = "real-t1"
    normalization: Literal["minmax", "percentile"] = "minmax"
    percentiles: tuple[float, float] = (0.5, 99.5)
    min_foreground: float = Field(0.05, ge=0, le=1)
    template_bins: int = Field(16, ge=1, le=1024)
    aug_rotate_deg: float = Field(6.0, ge=0)
    aug_scale: float = Field(0.06, ge=0, lt=1)
    aug_translate: float = Field(0.04, ge=0, lt=1)
    aug_gamma: float = Field(0.0, ge=0, lt=1)  # off by default: it would teach the flow that contrast shifts are normal
    holdout_every: int = Field(0, ge=0)  # keep every k-th slice out of training (evaluation); 0 = use all


class TrainConfig(MedgapConfig):
    steps: int = Field(300, ge=1, le=10_000_000)
    # bf16: the flow's conditioner convolutions in bfloat16 (medgap.training.precision); the
    # invertible path, log-determinants and the loss stay float32
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_size: int = Field(16, ge=1, le=4096)  # global batch, split over ranks
    lr: float = Field(5e-4, gt=0, le=1)
    warmup: int = Field(20, ge=0, le=10_000_000)
    grad_clip: float = Field(10.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class OptimizerConfig(MedgapConfig):
    """The Eq. 1-2 optimiser of BlindHarmony (:func:`medgap.harmonize.optimize.harmonize_batch`)."""

    iterations: int = Field(10, ge=0, le=10_000)
    alpha: float = Field(1e-3, ge=0, le=1)
    b1: float = Field(1e3, ge=0)
    b2: float = Field(1e-3, ge=0)
    ncc: Literal["pearson", "cosine"] = "pearson"
    structure: Literal["ncc", "ngf", "local_ncc"] = "ncc"  # the structure term of Eq. 1 (optimize.py)
    edge_percentile: float = Field(30.0, gt=0, lt=100)
    foreground_threshold: float = Field(0.05, ge=0, lt=1)
    init: Literal["template", "source", "constant", "standardized"] = "template"
    mode: Literal["alternating", "autograd"] = "alternating"
    lr: float = Field(0.02, gt=0, le=1)
    batch_slices: int = Field(64, ge=1, le=4096)
    precision: Literal["fp32", "bf16"] = "fp32"  # the flow's conditioners while harmonising/scoring


class RestoreConfig(MedgapConfig):
    """The learned inverse of scanner changes (medgap.harmonize.restore); ``steps = 0`` trains none."""

    # None: 10 x train.steps (cpu-small: 3000, about 2 min on 2 cores). The gate and doubt below are in units
    # of the net's own r0 and were chosen for 3000 steps; at 9000 the doubt check shut on WM darker than GM
    # (bench_harmonize_restore_capacity): re-check them on validation data after changing this
    steps: int | None = Field(None, ge=0, le=10_000_000)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(2e-3, gt=0, le=1)
    channels: tuple[int, ...] = (16, 32, 64, 128)

    @field_validator("channels")
    @classmethod
    def _channel_widths(cls, v):
        if not 1 <= len(v) <= 8 or any(not 1 <= c <= 1024 for c in v):
            raise ValueError(f"channels must be 1 to 8 widths of 1..1024, got {v}")
        return v
    res_units: int = Field(1, ge=0, le=16)
    bias_strength: float = Field(0.5, ge=0)
    max_noise: float = Field(0.06, ge=0)
    sharpen: float = Field(1.0, ge=0)  # random unsharp masking of the clean targets (restore.random_sharpen)
    # fraction of training slices given residual non-brain tissue around the brain, which the net learns to
    # leave alone (augment.random_nonbrain_tissue); 0 = none. The longer-trained option: 0.3 with steps = 30 x
    # train.steps and doubt=null (bench_harmonize_out_of_family: more gain in family, below Nyul on some changes)
    nonbrain_p: float = Field(0.0, ge=0, le=1)
    standardize_inputs: bool = True  # train on changed slices standardised to their own histogram
    # neighbouring slices on each side the net sees as extra input channels (3D context); 0 = 2D
    context: int = Field(0, ge=0, le=4)
    # output: "gated" (default, see medgap.harmonize.restore), "network" (always the net's estimate),
    # "standardized" (Nyul only); gate in units of the net's correction on the target itself
    output: Literal["gated", "network", "standardized"] = "gated"
    # the gate: no weight up to the first, full weight from the second
    gate: tuple[float, float] = (2.0, 4.0)
    # back off where the net's corrections of the volume and of its mirror image disagree (units of r0):
    # full weight up to the first, none from the second on; null = no check (chosen on Colin 27, the
    # validation subject: in-family changes <= 2.8, residual dura and ghosting >= 3.6)
    doubt: tuple[float, float] | None = (3.0, 3.5)
    # volumes (harmonize apply, Harmonizer.harmonize_volume): "n4" first undoes a smooth bias field in 3D
    # (SimpleITK N4 over the volume's slices: a slice-wise net cannot see it vary along z), weighted by the
    # spread (sd over the brain) of N4's log field: none up to the first bias_gate value, all from the
    # second on (chosen on Colin 27: its own field 0.04, changes without a 3D field <= 0.06, 3D fields >= 0.16)
    bias_correction: Literal["none", "n4"] = "n4"
    # the 3D stage's weight: 0 up to this spread of N4's log field, 1 from that
    bias_gate: tuple[float, float] = (0.08, 0.12)
    # volumes: before that, gain jumps from slice to slice (interleaved 2D multi-slice acquisitions,
    # per-slice scaling) are divided out (harmonize.baselines.level_slices; chosen on Colin 27; false: off)
    level_slices: bool = True

    @field_validator("gate", "doubt", "bias_gate")
    @classmethod
    def _ordered_pair(cls, v):
        if v is not None and not 0 <= v[0] < v[1]:
            raise ValueError(f"needs 0 <= low < high, got {list(v)}")
        return v


class HarmonizeConfig(MedgapConfig):
    """The target flow (``flow``), its training slices (``data``) and run (``train``), the BlindHarmony
    optimiser (``harmonize``) and the default method's restoration net (``restore``)."""

    flow: FlowConfig = FlowConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    harmonize: OptimizerConfig = OptimizerConfig()
    restore: RestoreConfig = RestoreConfig()

    renamed: ClassVar[dict[str, str]] = {
        "flow.seed": "train.seed", "restore.seed": "train.seed",
        "restore.gate_low": "restore.gate[0]", "restore.gate_high": "restore.gate[1]",
        "restore.doubt_low": "restore.doubt[0]", "restore.doubt_high": "restore.doubt[1]",
        "restore.bias_gate_low": "restore.bias_gate[0]", "restore.bias_gate_high": "restore.bias_gate[1]",
    }
    presets: ClassVar[dict[str, dict]] = {
        "cpu-small": {},
        "paper": {
            "flow": {"image_size": [144, 176], "levels": 4, "steps": 7, "hidden": 96, "blocks": 3, "bins": 8,
                     "bound": 3.0},
            "data": {"aug_rotate_deg": 0.0, "aug_scale": 0.0, "aug_translate": 0.0},
            "train": {"steps": 10000, "batch_size": 256, "lr": 5e-4, "warmup": 0, "checkpoint_every": 500},
            "harmonize": {"batch_slices": 50},
            "restore": {"steps": 0},
        },
    }

    @property
    def restore_steps(self) -> int:
        """Training steps of the restoration net (``restore.steps``, default 10 x ``train.steps``)."""
        return 10 * self.train.steps if self.restore.steps is None else self.restore.steps

    def check(self) -> "HarmonizeConfig":
        """Cross-field checks pydantic cannot express per field."""
        from medgap.errors import ConfigError

        h, w = self.flow.image_size
        k = 2**self.flow.levels
        if h % k or w % k:
            raise ConfigError("flow.image_size", f"{h}x{w} must be divisible by 2**levels = {k}")
        u = 2 ** (len(self.restore.channels) - 1)
        if self.restore_steps and (h % u or w % u or len(self.restore.channels) < 2):
            raise ConfigError("restore.channels", f"{len(self.restore.channels)} levels need image sides "
                                                  f"divisible by {u} (and at least 2 levels)")
        return self
