"""A transfer model = generator (cINN, UNIT or CycleGAN) + two discriminators, built from a config.

``TransferModel.generator_loss`` computes the generator objective of one iteration and returns the
transferred batches, which the discriminator step reuses (detached) instead of recomputing them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from medgap.flows.likelihood import standard_normal_nll

from .baselines import UNIT, CycleGAN
from .cinn import REAL, SIM, ImageCINN, SpectralCINN
from .config import TransferConfig
from .discriminators import MultiScaleDiscriminator, SpectralDiscriminator, lsgan_d_loss, lsgan_g_loss

__all__ = ["TransferModel", "GeneratorObjective", "DiscriminatorObjective", "build_model", "CLOSED_FORM",
           "IdentityTransfer"]

# Methods without a network: the transfer is the normalisation itself (sim statistics in, real out).
# standardise: per-channel z-scores of the L2-normalised spectra; coral: also the channel covariance
# (Sun, Feng & Saenko 2016, "Return of frustratingly easy domain adaptation").
CLOSED_FORM = ("standardise", "coral")


class IdentityTransfer(nn.Module):
    """The generator of a closed-form method: normalised data pass unchanged, so sim -> real is
    ``real.denormalize(sim.normalize(x))``, i.e. per-channel standardisation or CORAL."""

    n_classes = 0

    def transfer(self, x: torch.Tensor, source: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x


class TransferModel(nn.Module):
    """``generator`` maps between domains; ``dis[SIM]`` judges sim-like, ``dis[REAL]`` real-like data."""

    def __init__(self, method: str, generator: nn.Module, dis_sim: nn.Module, dis_real: nn.Module,
                 ml_weight: float = 1.0, gan_weight: float = 1.0, transport_weight: float = 0.0,
                 real_labels: str = "random"):
        super().__init__()
        self.real_labels = real_labels
        self.method, self.ml_weight, self.gan_weight = method, ml_weight, gan_weight
        self.transport_weight = transport_weight
        self.generator = generator
        self.dis = nn.ModuleList([dis_sim, dis_real])  # index = domain (SIM=0, REAL=1)

    @property
    def n_classes(self) -> int:
        return getattr(self.generator, "n_classes", 0)

    def generator_loss(self, xa: torch.Tensor, ya: torch.Tensor | None, xb: torch.Tensor,
                       label_prior: torch.Tensor | None = None):
        """xa: sim batch, ya: its labels (or None), xb: real batch. Returns (loss, logs, x_ab, x_ba)."""
        if self.method != "cinn":
            gan = lambda fake, dom: self.gan_weight * lsgan_g_loss(self.dis[dom], fake)  # noqa: E731
            return self.generator.generator_loss(xa, xb, gan)
        g = self.generator
        if self.n_classes and self.real_labels == "mixture" and xb.ndim == 2:
            return self._mixture_loss(xa, ya, xb)
        yb = None
        if self.n_classes:
            label_shape = (xb.shape[0],) if xb.ndim == 2 else (xb.shape[0], *xb.shape[2:])
            yb = g.random_labels(label_shape, device=xb.device, prior=label_prior)  # real data has no labels
        # both domains in one pass: half the Python overhead, larger matrix products
        x = torch.cat([xa, xb])
        domain = torch.cat([torch.full((len(xa),), SIM), torch.full((len(xb),), REAL)]).to(x.device)
        y = None if yb is None else torch.cat([ya, yb])
        z, logdet = g.encode(x, domain, y, stochastic=True)
        dims = xa[0].numel()
        nll = standard_normal_nll(z, logdet, constant=False)
        ml = (nll[: len(xa)].mean() + nll[len(xa):].mean()) / dims
        x_t = g.decode(z, 1 - domain, y, stochastic=True)
        x_ab, x_ba = x_t[: len(xa)], x_t[len(xa):]
        return self._with_gan(ml, x, x_t, x_ab, x_ba)

    def _mixture_loss(self, xa, ya, xb):
        """Real spectra have no labels: their likelihood is the exact class mixture
        p(x | real) = sum_k p(k) p(x | real, k) (uniform p(k)), each term from the cINN, so each class
        of the simulation is matched with the real spectra the network itself assigns to that class
        (instead of a random label, which matches every simulated class with all real data)."""
        g, n_a, n_b, k = self.generator, len(xa), len(xb), self.n_classes
        labels_b = torch.arange(k, device=xb.device).repeat_interleave(n_b)  # every real spectrum x every class
        x = torch.cat([xa, xb.repeat(k, 1)])
        domain = torch.cat([torch.full((n_a,), SIM), torch.full((k * n_b,), REAL)]).to(x.device)
        z, logdet = g.encode(x, domain, torch.cat([ya, labels_b]), stochastic=True)
        nll = standard_normal_nll(z, logdet, constant=False)
        nll_b = nll[n_a:].view(k, n_b)
        log_mix = torch.logsumexp(-nll_b, dim=0) - math.log(k)
        ml = (nll[:n_a].mean() - log_mix.mean()) / xa.shape[1]
        # transfer real -> sim under each spectrum's most likely class
        best = nll_b.detach().argmin(0)
        z_b = z[n_a:].view(k, n_b, -1)[best, torch.arange(n_b, device=xb.device)]
        x_ab = g.decode(z[:n_a], REAL, ya, stochastic=True)
        x_ba = g.decode(z_b, SIM, best, stochastic=True)
        return self._with_gan(ml, torch.cat([xa, xb]), torch.cat([x_ab, x_ba]), x_ab, x_ba)

    def _with_gan(self, ml, x, x_t, x_ab, x_ba):
        gan = lsgan_g_loss(self.dis[REAL], x_ab) + lsgan_g_loss(self.dis[SIM], x_ba)
        loss = self.ml_weight * ml + self.gan_weight * gan
        if self.transport_weight:
            # squared distance each sample moves (in the normalised spaces, where the identity is the
            # standardisation/CORAL map): of all maps that match the domains, prefer the one that moves least
            transport = (x_t - x).pow(2).flatten(1).mean(1).mean()
            loss = loss + self.transport_weight * transport
        return loss, {"ml": ml.item(), "gan": gan.item()}, x_ab, x_ba

    def discriminator_loss(self, xa, xb, x_ab, x_ba) -> torch.Tensor:
        """LSGAN loss of both discriminators on real samples vs. (detached) transfers."""
        return lsgan_d_loss(self.dis[REAL], xb, x_ab) + lsgan_d_loss(self.dis[SIM], xa, x_ba)

    @torch.no_grad()
    def transfer(self, x: torch.Tensor, source: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic transfer of a normalised batch out of domain ``source``."""
        if self.method == "cinn":
            return self.generator.transfer(x, source, labels, stochastic=False)
        return self.generator.transfer(x, source)


class GeneratorObjective(nn.Module):
    """``TransferModel.generator_loss`` as one module call whose parameters are the generator's.

    This is what DDP wraps under torchrun: one forward (encode and decode, both domains) per backward,
    and only generator gradients are averaged over the ranks. The discriminators are used here, not
    owned (kept out of the registered submodules).
    """

    def __init__(self, model: TransferModel):
        super().__init__()
        self.generator = model.generator
        self._model = (model,)

    def forward(self, xa: torch.Tensor, ya: torch.Tensor | None, xb: torch.Tensor):
        return self._model[0].generator_loss(xa, ya, xb)


class DiscriminatorObjective(nn.Module):
    """``TransferModel.discriminator_loss`` as one module call whose parameters are the discriminators'."""

    def __init__(self, model: TransferModel):
        super().__init__()
        self.dis = model.dis
        self._model = (model,)

    def forward(self, xa, xb, x_ab, x_ba) -> torch.Tensor:
        return self._model[0].discriminator_loss(xa, xb, x_ab, x_ba)


def build_model(cfg: TransferConfig, n_channels: int, n_classes: int = 0,
                image_shape: Sequence[int] | None = None) -> TransferModel:
    """Build the model of ``cfg.method`` for ``cfg.modality``; n_classes = 0 for the domain-only condition."""
    b, t = cfg.baseline, cfg.train
    if cfg.method in CLOSED_FORM:
        return TransferModel(cfg.method, IdentityTransfer(), nn.Identity(), nn.Identity())
    if cfg.modality == "hsi":
        h = cfg.hsi
        dis = [SpectralDiscriminator(n_channels, h.disc_hidden, h.disc_dropout) for _ in range(2)]
        if cfg.method == "cinn":
            gen = SpectralCINN(n_channels, n_classes, h.n_blocks, min(h.n_conditional, h.n_blocks), h.hidden,
                               h.clamp, h.affine_init, t.domain_noise, h.label_noise)
        elif cfg.method == "unit":
            gen = UNIT(n_channels, None, b.hidden, b.latent, recon_weight=b.recon_weight, kl_weight=b.kl_weight,
                       cycle_weight=b.cycle_weight)
        else:
            gen = CycleGAN(n_channels, None, b.hidden, cycle_weight=b.cycle_weight, identity_weight=b.identity_weight)
    else:
        p = cfg.pat
        if image_shape is None:
            raise ValueError("image models need image_shape")
        dis = [MultiScaleDiscriminator(n_channels, p.disc_dim, p.disc_layers, p.disc_scales, p.disc_dropout)
               for _ in range(2)]
        if cfg.method == "cinn":
            gen = ImageCINN(n_channels, tuple(image_shape), n_classes, p.blocks_per_scale, p.width,
                            p.adaptive_scales, p.clamp, p.affine_init, t.domain_noise, p.label_noise)
        elif cfg.method == "unit":
            gen = UNIT(n_channels, tuple(image_shape), conv_width=b.conv_width, n_res=b.n_res,
                       recon_weight=b.recon_weight, kl_weight=b.kl_weight, cycle_weight=b.cycle_weight)
        else:
            gen = CycleGAN(n_channels, tuple(image_shape), conv_width=b.conv_width, n_res=b.n_res,
                           cycle_weight=b.cycle_weight, identity_weight=b.identity_weight)
    return TransferModel(cfg.method, gen, dis[0], dis[1], t.ml_weight, t.gan_weight, t.transport_weight,
                         t.real_labels)
