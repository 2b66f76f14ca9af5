"""Baselines for unpaired domain transfer: UNIT and CycleGAN, for spectra (MLPs) and images (convs).

UNIT (Liu, Breuel & Kautz 2017): two VAE encoders/decoders whose last encoder and first decoder
layers are shared, so both domains meet in one Gaussian latent space; losses = GAN + reconstruction
+ KL + cycle reconstruction. CycleGAN (Zhu et al. 2017): two generators with GAN, cycle and
identity losses. Both use real non-linearities between every layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medgap.training.precision import AutocastSequential

__all__ = ["mlp", "ResBlock", "conv_encoder", "conv_decoder", "UNIT", "CycleGAN"]


def mlp(sizes: list[int]) -> AutocastSequential:
    """Linear layers with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return AutocastSequential(*layers)


class ResBlock(nn.Module):
    """x + conv3x3(ReLU(IN(conv3x3(x)))) with instance norm."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(ch),
                                  nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"),
                                  nn.InstanceNorm2d(ch))

    def forward(self, x):
        return x + self.body(x)


def conv_encoder(c_in: int, width: int, n_res: int) -> AutocastSequential:
    """(B, c_in, H, W) -> (B, 2*width, H/2, W/2)."""
    return AutocastSequential(nn.Conv2d(c_in, width, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2),
                         nn.Conv2d(width, 2 * width, 4, 2, 1, padding_mode="reflect"), nn.LeakyReLU(0.2),
                         *[ResBlock(2 * width) for _ in range(n_res)])


def conv_decoder(c_out: int, width: int, n_res: int) -> AutocastSequential:
    """(B, 2*width, H/2, W/2) -> (B, c_out, H, W)."""
    return AutocastSequential(*[ResBlock(2 * width) for _ in range(n_res)], nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(2 * width, width, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2),
                         nn.Conv2d(width, c_out, 3, padding=1, padding_mode="reflect"))


class UNIT(nn.Module):
    """Shared-latent VAE-GAN generator pair. ``image_shape=None``: spectra (B, C), else images (B, C, H, W)."""

    def __init__(self, n_channels: int, image_shape=None, hidden: int = 256, latent: int = 32,
                 conv_width: int = 32, n_res: int = 2, recon_weight: float = 10.0, kl_weight: float = 0.01,
                 cycle_weight: float = 10.0):
        super().__init__()
        self.recon_weight, self.kl_weight, self.cycle_weight = recon_weight, kl_weight, cycle_weight
        if image_shape is None:
            self.enc = nn.ModuleList(mlp([n_channels, hidden, hidden]) for _ in range(2))
            self.enc_shared = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(hidden, latent))
            self.dec_shared = nn.Sequential(nn.Linear(latent, hidden), nn.LeakyReLU(0.2))
            self.dec = nn.ModuleList(mlp([hidden, hidden, n_channels]) for _ in range(2))
        else:
            self.enc = nn.ModuleList(conv_encoder(n_channels, conv_width, n_res) for _ in range(2))
            self.enc_shared = ResBlock(2 * conv_width)
            self.dec_shared = ResBlock(2 * conv_width)
            self.dec = nn.ModuleList(conv_decoder(n_channels, conv_width, n_res) for _ in range(2))

    def encode(self, x, domain: int):
        return self.enc_shared(self.enc[domain](x))

    def decode(self, h, domain: int):
        return self.dec[domain](self.dec_shared(h))

    def transfer(self, x, source: int, labels=None):
        """Deterministic transfer: decode the latent mean into the other domain."""
        return self.decode(self.encode(x, source), 1 - source)

    def generator_loss(self, xa, xb, gan_loss):
        """``gan_loss(fake, target_domain)`` -> generator GAN term. Returns (loss, logs, x_ab, x_ba)."""
        ha, hb = self.encode(xa, 0), self.encode(xb, 1)
        za, zb = ha + torch.randn_like(ha), hb + torch.randn_like(hb)
        x_aa, x_bb = self.decode(za, 0), self.decode(zb, 1)
        x_ab, x_ba = self.decode(za, 1), self.decode(zb, 0)
        ha_c, hb_c = self.encode(x_ab, 1), self.encode(x_ba, 0)
        x_aba = self.decode(ha_c + torch.randn_like(ha_c), 0)
        x_bab = self.decode(hb_c + torch.randn_like(hb_c), 1)
        recon = F.l1_loss(x_aa, xa) + F.l1_loss(x_bb, xb)
        kl = ha.pow(2).mean() + hb.pow(2).mean() + ha_c.pow(2).mean() + hb_c.pow(2).mean()
        cycle = F.l1_loss(x_aba, xa) + F.l1_loss(x_bab, xb)
        gan = gan_loss(x_ab, 1) + gan_loss(x_ba, 0)
        loss = gan + self.recon_weight * recon + self.kl_weight * kl + self.cycle_weight * cycle
        return loss, {"gan": gan.item(), "recon": recon.item(), "cycle": cycle.item()}, x_ab, x_ba


class CycleGAN(nn.Module):
    """Two generators sim->real and real->sim. Spectra: residual MLPs; images: conv ResNet generators."""

    def __init__(self, n_channels: int, image_shape=None, hidden: int = 256, conv_width: int = 32, n_res: int = 2,
                 cycle_weight: float = 10.0, identity_weight: float = 5.0):
        super().__init__()
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight
        self.spectral = image_shape is None
        if self.spectral:
            self.gen = nn.ModuleList(mlp([n_channels, hidden, hidden, hidden, n_channels]) for _ in range(2))
        else:
            self.gen = nn.ModuleList(nn.Sequential(conv_encoder(n_channels, conv_width, n_res),
                                                   conv_decoder(n_channels, conv_width, n_res)) for _ in range(2))

    def _g(self, x, source: int):
        # residual form: the generator learns the change, so at init the transfer is the identity
        return x + self.gen[source](x)

    def transfer(self, x, source: int, labels=None):
        return self._g(x, source)

    def generator_loss(self, xa, xb, gan_loss):
        x_ab, x_ba = self._g(xa, 0), self._g(xb, 1)
        cycle = F.l1_loss(self._g(x_ab, 1), xa) + F.l1_loss(self._g(x_ba, 0), xb)
        identity = F.l1_loss(self._g(xb, 0), xb) + F.l1_loss(self._g(xa, 1), xa)
        gan = gan_loss(x_ab, 1) + gan_loss(x_ba, 0)
        loss = gan + self.cycle_weight * cycle + self.identity_weight * identity
        return loss, {"gan": gan.item(), "cycle": cycle.item(), "identity": identity.item()}, x_ab, x_ba
