"""Least-squares GAN discriminators for spectra and images, and the LSGAN losses.

LSGAN (Mao et al. 2017): the discriminator minimises 0.5 * (E[(D(real) - 1)^2] + E[D(fake)^2]),
the generator minimises E[(D(fake) - 1)^2].
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medgap.training.precision import AutocastSequential

__all__ = ["SpectralDiscriminator", "MultiScaleDiscriminator", "lsgan_d_loss", "lsgan_g_loss"]


class SpectralDiscriminator(nn.Module):
    """Spectrum (B, C) -> scores (B, C): Linear(C, 256)-Dropout-LeakyReLU-Linear(256, 256)-Linear(256, C)."""

    def __init__(self, n_channels: int = 100, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.net = AutocastSequential(nn.Linear(n_channels, hidden), nn.Dropout(dropout), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.Linear(hidden, n_channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x)]


class MultiScaleDiscriminator(nn.Module):
    """PatchGAN at ``n_scales`` resolutions for images (B, C, H, W) -> list of score maps (B, 1, h, w).

    Each scale: ``n_layers`` 4x4 stride-2 convs (``dim``, 2*dim, ...) with LeakyReLU, dropout and
    replicate padding, then a 1x1 conv to one score per patch; the input is average-pooled by 2
    between scales (as in the multi-scale discriminator of MUNIT/UNIT).
    """

    def __init__(self, n_channels: int = 16, dim: int = 64, n_layers: int = 3, n_scales: int = 3,
                 dropout: float = 0.2):
        super().__init__()

        def one_scale() -> AutocastSequential:
            layers, c_in, c_out = [], n_channels, dim
            for _ in range(n_layers):
                layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, padding_mode="replicate"), nn.LeakyReLU(0.2),
                           nn.Dropout(dropout)]
                c_in, c_out = c_out, c_out * 2
            layers.append(nn.Conv2d(c_in, 1, 1))
            return AutocastSequential(*layers)

        self.scales = nn.ModuleList(one_scale() for _ in range(n_scales))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k, net in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(net(x))
        return outs


def lsgan_d_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean (D(real) - 1)^2 + mean D(fake)^2), summed over scales; ``fake`` is detached."""
    loss = 0.0
    for r, f in zip(disc(real), disc(fake.detach())):
        loss = loss + 0.5 * (((r - 1.0) ** 2).mean() + (f**2).mean())
    return loss


def lsgan_g_loss(disc: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """mean (D(fake) - 1)^2, summed over scales."""
    return sum(((f - 1.0) ** 2).mean() for f in disc(fake))
