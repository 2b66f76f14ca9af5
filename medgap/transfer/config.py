"""Typed configuration of the sim-to-real transfer methods, with ``cpu-small`` and ``paper`` presets.

One config holds the settings of both modalities (``hsi``: pixel spectra, ``pat``: images); the
modality of a run is chosen by ``modality``. ``paper`` reproduces the published networks and
training settings; ``cpu-small`` is a small network that learns in minutes on 2 CPU cores.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from medgap.config import MedgapConfig
from medgap.training.precision import Precision

__all__ = ["TransferConfig", "HSIConfig", "PATConfig", "TrainConfig", "BaselineConfig"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TrainConfig(_Section):
    """The run and the optimisation settings shared by every method and modality (per-modality values
    live in ``hsi`` and ``pat``)."""

    epochs: int = Field(5, ge=1, le=100_000, description="the run's length; from CORAL's starting point, more "
                                                          "epochs did not transfer better (bench_transfer_ablation)")

    ml_weight: float = Field(1.0, ge=0)
    gan_weight: float = Field(1.0, ge=0)
    transport_weight: float = Field(0.0, ge=0, description="cINN: weight of the mean squared distance a sample "
                                                           "moves in transfer (normalised units); paper: 0")
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="cINN, spectra: share of the real data (at most "
                                    "5,000) kept out of training to report its likelihood per epoch; 0 = none")
    real_labels: Literal["random", "mixture"] = Field(
        "random", description="cINN domain+label, spectra: the label condition of unlabelled real data: random "
                              "draws (publication) or the exact class-mixture likelihood")
    clip_value: float = Field(0.1, gt=0, description="gradient clipping by value")
    domain_noise: float = Field(0.1, ge=0, le=0.5, description="n ~ U(0, domain_noise) in the domain code")
    plateau_factor: float = Field(0.2, gt=0, lt=1)
    plateau_patience: int = Field(8, ge=0)
    plateau_threshold: float = Field(0.005, ge=0)
    plateau_cooldown: int = Field(2, ge=0)
    iterations_per_epoch: int | None = Field(None, ge=1, le=10_000_000, description="default: larger data set / batch size")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    keep_checkpoints: int = Field(2, ge=1)
    whiten: bool = Field(True, description="decorrelate the channels of each domain (ZCA) besides standardising "
                                           "them, so the untrained network is CORAL; paper: standardise only")
    whiten_ridge: float = Field(1e-3, gt=0, description="added to the channel correlation's eigenvalues")
    align: Literal["auto", "global", "class", "class+global"] = Field(
        "auto", description="spectra: class = standardise each class of the source onto the same class of the "
                            "target, whose labels are estimated (medgap.transfer.labels: EM, per subject when the "
                            "target has groups), so the untrained network is class-wise CORAL (every real spectrum "
                            "is used: none is held out); class+global = class, then the transferred set as a "
                            "whole re-matched to the target's global mean and covariance (medgap.transfer.labels."
                            "match_global); global = one map for all classes (publication); auto = class+global "
                            "for the cINN with a labelled source, else global")
    align_strength: float | None = Field(
        None, ge=0, le=1, description="class alignment: how far each source class moves from where the global "
                                      "alignment puts it to its estimated target class (0 = global, 1 = fully "
                                      "class-wise); None = chosen from 1, 0.5, 0 by reverse validation against "
                                      "the estimated labels of other target subjects (medgap.transfer.labels)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="training seed (initial weights, batches, held-out "
                                                          "split, class alignment)")
    precision: Precision = Field(
        "fp32", description="bf16: subnets and discriminators compute in bfloat16 mixed precision (the "
                            "invertible data path, losses and optimiser stay float32); fp32: all float32")


class HSIConfig(_Section):
    """Pixel-level network (spectra) and its training settings."""

    n_blocks: int = Field(12, ge=1, le=256)
    n_conditional: int = Field(3, ge=0, description="blocks (the first ones) that see the condition: they alone "
                                                    "carry the transfer, the rest is a density model both domains share")
    hidden: int = Field(128, ge=1, le=8192)
    clamp: float = Field(1.0, gt=0)
    affine_init: float = Field(1.0, gt=0, description="initial global scale per block (paper: 0.7)")
    label_noise: float = Field(0.5, ge=0)
    brightness: Literal["keep", "l2"] = Field(
        "keep", description="keep: spectra are standardised as measured, so each keeps its own level (on real skin "
                            "spectra the level tells body sites apart: bench_transfer_skin); l2: divided by their L2 "
                            "norm first and written with the target's mean norm (publication)")
    noise_std: float = Field(0.1, ge=0, description="N(0, noise_std) augmentation of standardised spectra")
    disc_hidden: int = Field(256, ge=1, le=8192)
    disc_dropout: float = Field(0.2, ge=0, lt=1)
    batch_size: int = Field(1000, ge=2, le=1_000_000, description="spectra per domain per iteration (global)")
    chunk: int = Field(0, ge=0, description="process each rank's batch in chunks of this many spectra "
                                            "(accumulated gradients, same result, less memory); 0 = whole")
    lr: float = Field(3e-4, gt=0, le=1, description="1e-3 diverged after ~90 iterations in the benchmark")
    compile: bool = Field(False, description="torch.compile the coupling blocks for training (fuses their "
                                             "elementwise work; first iteration pays the compile time; "
                                             "falls back to eager if compiling fails)")
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)


class PATConfig(_Section):
    """Image-level multi-scale network and its training settings."""

    blocks_per_scale: list[int] = Field(default_factory=lambda: [2, 1, 1], min_length=1)
    width: int = Field(32, ge=1, le=1024)
    adaptive_scales: list[int] = Field(default_factory=list)
    clamp: float = Field(1.0, gt=0)
    affine_init: float = Field(1.0, gt=0, description="initial global scale per block (paper: 0.7)")
    label_noise: float = Field(0.2, ge=0)
    noise_std: float = Field(0.05, ge=0)
    disc_dim: int = Field(16, ge=1, le=1024)
    disc_layers: int = Field(2, ge=1, le=16)
    disc_scales: int = Field(2, ge=1, le=8)
    disc_dropout: float = Field(0.2, ge=0, lt=1)
    batch_size: int = Field(2, ge=1, le=4096)
    chunk: int = Field(0, ge=0, description="images per chunk (accumulated gradients); 0 = whole batch")
    lr: float = Field(1e-3, gt=0, le=1, description="learning rate of CycleGAN and UNIT (and of the cINN where cinn_lr "
                                             "is unset)")
    cinn_lr: float | None = Field(1e-4, gt=0, le=1, description="the image cINN's learning rate; paper: 1e-3 (None: lr). "
                                  "At 1e-3 the cpu-small cINN trains away from its CORAL start to below it "
                                  "(bench_transfer_pat)")
    betas: tuple[float, float] = (0.4, 0.999)
    weight_decay: float = Field(1e-3, ge=0)


class BaselineConfig(_Section):
    """UNIT / CycleGAN baselines: MLPs for spectra, small conv nets for images."""

    hidden: int = Field(256, ge=1, le=8192, description="MLP width (spectra)")
    latent: int = Field(32, ge=1, le=4096, description="UNIT shared latent size (spectra)")
    conv_width: int = Field(32, ge=1, le=1024, description="first conv width (images)")
    n_res: int = Field(2, ge=0, le=64, description="residual blocks (images)")
    recon_weight: float = Field(10.0, ge=0)
    cycle_weight: float = Field(10.0, ge=0)
    kl_weight: float = Field(0.01, ge=0)
    identity_weight: float = Field(5.0, ge=0)


class TransferConfig(MedgapConfig):
    """Everything a transfer run needs besides the data."""

    modality: Literal["hsi", "pat"] = "hsi"
    method: Literal["cinn", "unit", "cyclegan", "standardise", "coral"] = "cinn"
    condition: Literal["domain", "domain+label"] = "domain"
    hsi: HSIConfig = Field(default_factory=HSIConfig)
    pat: PATConfig = Field(default_factory=PATConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)

    renamed: ClassVar[dict[str, str]] = {"seed": "train.seed", "hsi.epochs": "train.epochs",
                                         "pat.epochs": "train.epochs"}
    presets: ClassVar[dict[str, dict]] = {
        "cpu-small": {},
        "paper": {
            "condition": "domain+label",
            "hsi": {"n_blocks": 40, "n_conditional": 30, "hidden": 512, "affine_init": 0.7, "batch_size": 10000,
                    "brightness": "l2",
                    "chunk": 2500, "lr": 1e-4, "compile": True, "noise_std": 0.1, "label_noise": 0.5},
            "pat": {"blocks_per_scale": [4, 2, 1, 1, 2], "width": 256, "affine_init": 0.7, "adaptive_scales": [2, 3],
                    "disc_dim": 64, "disc_layers": 3, "disc_scales": 3, "batch_size": 2, "lr": 1e-3, "cinn_lr": None,
                    "noise_std": 0.05, "label_noise": 0.2},
            "train": {"epochs": 300, "whiten": False, "heldout_fraction": 0.0, "align": "global"},
            "baseline": {"hidden": 512, "latent": 64, "conv_width": 64, "n_res": 4},
        },
    }

    def class_aligned(self, labelled_source: bool) -> bool:
        """Whether spectra are aligned class by class (``train.align``; auto: the cINN with a labelled source)."""
        if self.modality != "hsi" or not labelled_source:
            return False
        return self.train.align in ("class", "class+global") or (self.train.align == "auto" and self.method == "cinn")

    def matches_global_moments(self) -> bool:
        """Whether a class-wise alignment is re-matched to the target's global moments (``train.align``
        class+global, or auto)."""
        return self.train.align in ("class+global", "auto")

    @property
    def learning_rate(self) -> float:
        """The chosen method's learning rate for this modality (PAT's image cINN has its own, ``cinn_lr``)."""
        if self.modality == "pat" and self.method == "cinn" and self.pat.cinn_lr is not None:
            return self.pat.cinn_lr
        return self.net.lr

    @property
    def net(self) -> HSIConfig | PATConfig:
        """The section of the chosen modality."""
        return self.hsi if self.modality == "hsi" else self.pat
