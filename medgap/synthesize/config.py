"""Configuration of HA-GAN training and preprocessing, with ``cpu-small`` and ``paper`` presets."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from medgap.config import ConfigSection, MedgapConfig
from medgap.training.precision import Precision
from medgap.synthesize.model import Architecture

__all__ = ["SynthesizeConfig", "ModelConfig", "DataConfig", "TrainConfig"]


class ModelConfig(ConfigSection):
    """The networks and where samples draw their latent codes."""

    size: int = Field(64, description="voxels per side of the generated cube (power of two, 32..512)")
    width: float = Field(0.25, gt=0, le=4, description="channel multiplier of every network (1 = the publication's)")
    latent_dim: int = Field(128, ge=1, le=4096, description="length of the latent code z")
    conditional: bool = Field(False, description="condition G and D on the class labels of the training volumes")
    minibatch_std: bool = Field(True, description="both discriminators see the spread of their batch")
    latent_prior: Literal["normal", "encoded", "encoded-diagonal"] = Field(
        "encoded", description="where samples draw z: N(0, I) (the publication), or a Gaussian fitted to E^G's "
                               "codes of augmented training volumes when the model is saved (full or diagonal "
                               "covariance)")

    @field_validator("size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 32 or v > 512 or v & (v - 1):
            raise ValueError(f"size must be a power of two from 32 to 512, got {v}")
        return v


class DataConfig(ConfigSection):
    """How training volumes become cubes in [-1, 1], and their augmentation."""

    modality: Literal["mr", "ct"] = Field("mr", description="ct: Hounsfield window; mr: percentile clip")
    ct_window: tuple[float, float] = Field((-1024.0, 600.0), description="CT: HU range mapped to [-1, 1]")
    mr_percentiles: tuple[float, float] = Field((0.5, 99.5), description="MR: percentiles mapped to [-1, 1]")
    spacing_mm: float | None = Field(None, gt=0, description="isotropic resampling target before the cube "
                                                              "(None: each volume's finest spacing)")
    cache_dtype: Literal["float16", "float32"] = Field("float16", description="storage of cached/pooled cubes")
    augment: bool = Field(True, description="random affine, elastic and intensity changes (MONAI; CT: spatial only)")
    augment_pool: int = Field(128, ge=0, le=100_000, description="augmented copies drawn once before training and "
                                                                 "sampled from (0: augment every batch on the fly, "
                                                                 "the publication's way; a pool over 2 GiB falls "
                                                                 "back to that)")

    @field_validator("ct_window", "mr_percentiles")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"needs low < high, got {v}")
        return v


class TrainConfig(ConfigSection):
    """The run: length, batch, optimiser, precision, seed, checkpoints; small-data GAN training."""

    steps: int = Field(750, ge=1, le=10_000_000, description="training iterations (D, G, E^H, E^G steps each)")
    batch_size: int = Field(4, ge=1, le=1024, description="global batch (split over DDP ranks)")
    lr_g: float = Field(4e-4, gt=0, le=1, description="Adam learning rate of G and both encoders")
    lr_d: float = Field(4e-4, gt=0, le=1, description="Adam learning rate of both discriminators")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas (the publication: 0, 0.999)")
    precision: Precision = Field("auto", description="bf16 mixed precision (convolutions in bfloat16; weights, "
                                                     "optimiser and losses float32), fp32, or auto (bf16 where the "
                                                     "device has native bfloat16 products, else fp32)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="training seed (initial weights, draws)")
    log_every: int = Field(10, ge=1, description="iterations between rows of metrics.csv")
    checkpoint_every: int = Field(100, ge=1, description="iterations between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept besides the best")
    recon_weight: float = Field(10.0, ge=0, description="weight of E^G's reconstruction loss on G (0: G frozen "
                                                        "there, the publication; docs/synthesize.md says why "
                                                        "cpu-small does not)")
    diff_augment: bool = Field(True, description="differentiable colour/translation/cutout before both "
                                                 "discriminators, real and generated (medgap.synthesize."
                                                 "diffaugment)")
    ema_decay: float = Field(0.99, ge=0, lt=1, description="sample from a moving average of G's weights "
                                                           "(0: G itself)")
    r1_gamma: float = Field(1.0, ge=0, le=1e4, description="R1 penalty on D's gradient at real inputs (gamma/2 x "
                                                           "squared gradient, every 4th D step; 0: off)")

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"Adam betas must lie in [0, 1), got {v}")
        return v


_SECTION_OF = {**{k: "model" for k in ModelConfig.model_fields},
               **{k: "data" for k in DataConfig.model_fields},
               **{k: "train" for k in TrainConfig.model_fields}}


class SynthesizeConfig(MedgapConfig):
    """Everything an HA-GAN training run needs; the class defaults are the ``cpu-small`` preset.

    ``model``: the networks (``size`` voxels per side, ``width`` channel multiplier, ``latent_dim``,
    ``conditional`` on class labels, ``minibatch_std``) and the sampling prior of z. ``data``: ``ct``
    (HU window) or ``mr`` (percentile clip) to [-1, 1], isotropic resampling, MONAI augmentation,
    optionally drawn once into a pool. ``train``: the run, with the small-data GAN training of
    cpu-small (DiffAugment, an EMA of G, R1; all off in ``paper``). Keys of the flat layout of earlier
    versions (``iterations``, ``size``, ``beta1``, ...) still load (``renamed``).
    """

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    renamed: ClassVar[dict[str, str]] = {
        **{k: f"{section}.{k}" for k, section in _SECTION_OF.items() if k not in ("steps", "betas",
                                                                                  "keep_checkpoints")},
        "iterations": "train.steps", "keep_last": "train.keep_checkpoints",
        "beta1": "train.betas[0]", "beta2": "train.betas[1]",
    }
    presets: ClassVar[dict[str, dict]] = {
        "cpu-small": {},
        "paper": {"model": {"size": 256, "width": 1.0, "latent_dim": 1024, "latent_prior": "normal",
                            "minibatch_std": False},
                  "data": {"augment_pool": 0},
                  "train": {"steps": 80000, "batch_size": 4, "checkpoint_every": 1000, "lr_g": 1e-4,
                            "betas": [0.0, 0.999], "precision": "fp32", "recon_weight": 0.0,
                            "diff_augment": False, "ema_decay": 0.0, "r1_gamma": 0.0}},
    }

    def architecture(self, num_classes: int = 0) -> Architecture:
        m = self.model
        return Architecture(m.size, m.width, m.latent_dim, num_classes if m.conditional else 0, m.minibatch_std)
