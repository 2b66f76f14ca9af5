"""Full-resolution 3D GAN baseline: the same generator without the hierarchy.

G: HA-GAN's G^A followed by G^H on the WHOLE feature volume (no low-res branch,
no slab selection), so the generator has the same layers and width. D: a
spectral-normalised 3D conv net on the whole full-resolution volume
(k4 s2 p1 layers with LeakyReLU(0.2) down to 4^3, channels doubling up to
512 x width, then k4 to one logit). Same loss (non-saturating BCE) and Adam
settings as HA-GAN. This is what HA-GAN's hierarchy saves memory against:
every full-resolution activation of G and D is kept for the backward pass.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medgap.synthesize.config import SynthesizeConfig
from medgap.synthesize.data import Augment, TrainingSet
from medgap.synthesize.model import Architecture, CommonGenerator, HighResGenerator, _sn_conv
from medgap.training.precision import autocast
from medgap.training.runtime import seed_everything, track

__all__ = ["FullResGenerator", "FullResDiscriminator", "FullResGAN", "FullResStep", "train_baseline"]


class FullResGenerator(nn.Module):
    """z (B, latent_dim) -> volume (B, 1, S, S, S): G^H(G^A(z)) on the whole volume."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.common = CommonGenerator(arch)
        self.high = HighResGenerator(arch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.high(self.common(z))


class FullResDiscriminator(nn.Module):
    """Volume (B, 1, S, S, S) -> logit (B,): log2(S/4) SN convs k4 s2 p1 to 4^3, then SN conv k4."""

    def __init__(self, arch: Architecture):
        super().__init__()
        n = int(math.log2(arch.size // 4))
        chans = [arch.ch(512 // 2 ** max(0, n - 1 - i)) for i in range(n)]
        layers, c_prev = [], 1
        for c in chans:
            layers += [_sn_conv(c_prev, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_prev = c
        layers.append(_sn_conv(c_prev, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class FullResGAN(nn.Module):
    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.generator = FullResGenerator(arch)
        self.discriminator = FullResDiscriminator(arch)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        z = torch.randn(n, self.arch.latent_dim, generator=torch.Generator().manual_seed(seed))
        return np.concatenate([self.generator(z[i : i + 1]).cpu().numpy()[:, 0] for i in range(n)])


class FullResStep:
    """One D step + one G step (the same fake batch), non-saturating BCE."""

    def __init__(self, model: FullResGAN, cfg: SynthesizeConfig):
        self.model = model
        self.precision = cfg.train.precision
        betas = cfg.train.betas
        self.opt_g = torch.optim.Adam(model.generator.parameters(), lr=cfg.train.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.train.lr_d, betas=betas)

    def __call__(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        with autocast(self.precision, x.device):
            return self._iteration(x, z)

    def _iteration(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        G, D = self.model.generator, self.model.discriminator
        ones = torch.ones(x.shape[0], device=x.device)
        fake = G(z)
        loss_d = F.binary_cross_entropy_with_logits(D(x), ones) + \
            F.binary_cross_entropy_with_logits(D(fake.detach()), torch.zeros_like(ones))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}


def train_baseline(data: TrainingSet, cfg: SynthesizeConfig, *, seed: int = 0, max_seconds: float | None = None,
                   device: str = "cpu", progress: bool = False, checkpoints: Sequence[float] = (),
                   on_checkpoint: Callable[[FullResGAN, int, float], None] | None = None) -> tuple[FullResGAN, int, float]:
    """Train the baseline (single process) for ``cfg.train.steps`` or ``max_seconds``.

    ``on_checkpoint(model, iterations, seconds)`` is called (model in eval mode) when the training
    time first reaches each of ``checkpoints`` (seconds); its own time is not counted as training.
    Returns (model, iterations run, training seconds).
    """
    seed_everything(seed)
    dev = torch.device(device)
    model = FullResGAN(cfg.architecture(0)).to(dev)
    step = FullResStep(model, cfg)
    augment = Augment.for_config(cfg, seed=seed)
    pending = sorted(checkpoints)
    trained, done = 0.0, 0
    for _ in track(range(cfg.train.steps), description="full-res GAN", disable=not progress):
        t0 = time.perf_counter()
        idx = torch.randint(len(data), (cfg.train.batch_size,))
        step(data.batch(idx, augment).to(dev), torch.randn(cfg.train.batch_size, model.arch.latent_dim, device=dev))
        trained += time.perf_counter() - t0
        done += 1
        while pending and trained >= pending[0]:
            pending.pop(0)
            if on_checkpoint is not None:
                on_checkpoint(model.eval(), done, trained)
                model.train()
        if max_seconds is not None and trained >= max_seconds:
            break
    return model.cpu().eval(), done, trained
