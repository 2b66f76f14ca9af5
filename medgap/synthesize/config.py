"""Configuration of HA-GAN training and preprocessing, with ``cpu-small`` and ``paper`` presets."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from medgap.config import MedgapConfig
from medgap.training.precision import Precision
from medgap.synthesize.model import Architecture

__all__ = ["SynthesizeConfig"]


class SynthesizeConfig(MedgapConfig):
    """Everything a training run needs; the class defaults are the ``cpu-small`` preset.

    Architecture: ``size`` (voxels per side, power of two >= 32), ``width`` (channel
    multiplier), ``latent_dim``, ``conditional`` (class labels from the data).
    Data: ``modality`` ``ct`` (HU window ``ct_window`` -> [-1, 1]) or ``mr``
    (percentile clip ``mr_percentiles`` -> [-1, 1]); ``spacing_mm`` isotropic
    resampling target (None: the finest spacing of each volume); ``augment`` (random affine, elastic and
    intensity changes, MONAI); ``augment_pool`` > 0 draws that many augmented copies once before
    training and samples batches from them (0: augments every batch on the fly, the publication's way;
    a pool larger than 2 GiB falls back to that).
    Small-data GAN training (all off in ``paper``): ``diff_augment`` applies differentiable colour,
    translation and cutout to what both discriminators see, real and generated alike
    (:mod:`medgap.synthesize.diffaugment`); ``minibatch_std`` gives both discriminators the batch's
    spread; ``ema_decay`` > 0 samples from an exponential moving average of G's weights;
    ``r1_gamma`` > 0 adds an R1 penalty (gamma/2 x squared gradient of D on real inputs, every 4th
    D step).
    Optimisation: Adam(``beta1``, ``beta2``), ``lr_g`` (G and both encoders),
    ``lr_d``; ``recon_weight`` > 0 lets G learn from the E^G reconstruction loss as well (the
    publication freezes G there: ``paper`` sets 0; see docs/synthesize.md for why cpu-small does
    not); ``latent_prior`` ``normal`` samples z ~ N(0, I) (the publication), ``encoded`` from a
    Gaussian with the mean and full covariance of E^G's codes of augmented training volumes (fitted
    when the model is saved), ``encoded-diagonal`` from one with their per-dimension spread only; ``batch_size`` is the global batch (split over DDP ranks); ``precision`` ``bf16``
    trains with bfloat16 mixed precision (convolutions in bfloat16, weights, optimiser and losses in
    float32; :mod:`medgap.training.precision`), ``fp32`` all in float32, ``auto`` (cpu-small) bf16 where
    the device has native bfloat16 products, else fp32; ``seed`` the training seed (recorded in the
    model folder with the rest of the configuration).
    """

    size: int = Field(64, description="voxels per side of the generated cube (power of two, 32..512)")
    width: float = Field(0.25, gt=0, le=4, description="channel multiplier of every network (1 = the publication's)")
    latent_dim: int = Field(128, ge=1, le=4096, description="length of the latent code z")
    conditional: bool = Field(False, description="condition G and D on the class labels of the training volumes")

    modality: Literal["mr", "ct"] = Field("mr", description="ct: Hounsfield window; mr: percentile clip")
    ct_window: tuple[float, float] = Field((-1024.0, 600.0), description="CT: HU range mapped to [-1, 1]")
    mr_percentiles: tuple[float, float] = Field((0.5, 99.5), description="MR: percentiles mapped to [-1, 1]")
    spacing_mm: float | None = Field(None, gt=0, description="isotropic resampling target before the cube "
                                                              "(None: each volume's finest spacing)")
    cache_dtype: Literal["float16", "float32"] = Field("float16", description="storage of cached/pooled cubes")
    augment: bool = Field(True, description="random affine, elastic and intensity changes (MONAI; CT: spatial only)")
    augment_pool: int = Field(128, ge=0, le=100_000, description="augmented copies drawn once before training "
                                                                 "(0: augment every batch on the fly)")

    iterations: int = Field(750, ge=1, le=10_000_000, description="training iterations (D, G, E^H, E^G steps each)")
    batch_size: int = Field(4, ge=1, le=1024, description="global batch (split over DDP ranks)")
    lr_g: float = Field(4e-4, gt=0, le=1, description="Adam learning rate of G and both encoders")
    lr_d: float = Field(4e-4, gt=0, le=1, description="Adam learning rate of both discriminators")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 (the publication: 0)")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2")
    log_every: int = Field(10, ge=1, description="iterations between rows of metrics.csv")
    checkpoint_every: int = Field(100, ge=1, description="iterations between checkpoints")
    keep_last: int = Field(2, ge=1, description="checkpoints kept besides the best")
    precision: Precision = Field("auto", description="fp32, bf16 mixed precision, or auto (bf16 where native)")
    recon_weight: float = Field(10.0, ge=0, description="weight of E^G's reconstruction loss on G (0: G frozen "
                                                        "there, the publication)")
    latent_prior: Literal["normal", "encoded", "encoded-diagonal"] = Field(
        "encoded", description="where samples draw z: N(0, I), or a Gaussian fitted to training codes (full or "
                               "diagonal covariance)")
    diff_augment: bool = Field(True, description="differentiable colour/translation/cutout before both "
                                                 "discriminators, real and generated")
    minibatch_std: bool = Field(True, description="both discriminators see the spread of their batch")
    ema_decay: float = Field(0.99, ge=0, lt=1, description="sample from a moving average of G's weights "
                                                           "(0: G itself)")
    r1_gamma: float = Field(1.0, ge=0, le=1e4, description="R1 penalty on D's gradient at real inputs (every 4th "
                                                           "D step; 0: off)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="training seed (initial weights, draws)")

    presets: ClassVar[dict[str, dict]] = {
        "cpu-small": {},
        "paper": {"size": 256, "width": 1.0, "latent_dim": 1024, "iterations": 80000, "batch_size": 4,
                  "checkpoint_every": 1000, "lr_g": 1e-4, "precision": "fp32", "recon_weight": 0.0,
                  "latent_prior": "normal", "augment_pool": 0, "diff_augment": False, "minibatch_std": False,
                  "ema_decay": 0.0, "r1_gamma": 0.0, "beta1": 0.0},
    }

    @field_validator("size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 32 or v > 512 or v & (v - 1):
            raise ValueError(f"size must be a power of two from 32 to 512, got {v}")
        return v

    @field_validator("ct_window", "mr_percentiles")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"needs low < high, got {v}")
        return v

    def architecture(self, num_classes: int = 0) -> Architecture:
        return Architecture(self.size, self.width, self.latent_dim, num_classes if self.conditional else 0,
                            self.minibatch_std)
