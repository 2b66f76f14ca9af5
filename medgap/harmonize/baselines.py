"""Blind baselines that also use only target-domain statistics.

- identity: the source unchanged.
- histogram matching: each slice's foreground intensities are mapped onto the
  target's foreground quantiles at the same slice position (piecewise linear
  quantile mapping; per position because the tissue mix changes along z).
- low-frequency replacement (SSIMH-style, Guan et al. 2022): the amplitude of
  the lowest spatial frequencies of the source slice is replaced by the
  target template's at the same position, keeping the source phase.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["identity", "histogram_match", "lowfreq_replace", "BASELINES"]


def identity(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05) -> Tensor:
    """Return the source slices unchanged."""
    return xs.clone()


def histogram_match(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05) -> Tensor:
    """Map foreground (> threshold) intensities of ``xs (B, 1, H, W)`` to target ``quantiles (B, Q)``."""
    out = xs.clone()
    levels = np.linspace(0, 1, quantiles.shape[1])
    for i in range(xs.shape[0]):
        fg = xs[i] > threshold
        vals = xs[i][fg].cpu().numpy()
        if vals.size < 2:
            continue
        ranks = np.empty(vals.size)
        ranks[np.argsort(vals, kind="stable")] = np.linspace(0, 1, vals.size)
        mapped = np.interp(ranks, levels, quantiles[i].cpu().numpy())
        out[i][fg] = torch.from_numpy(mapped).to(xs)
    return out


def lowfreq_replace(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05,
                    beta: float = 0.03) -> Tensor:
    """Swap the amplitude of the centred ``(2 beta H) x (2 beta W)`` low-frequency window."""
    h, w = xs.shape[-2:]
    fs = torch.fft.fftshift(torch.fft.fft2(xs), dim=(-2, -1))
    ft = torch.fft.fftshift(torch.fft.fft2(templates.to(xs)), dim=(-2, -1))
    bh, bw = max(1, int(beta * h)), max(1, int(beta * w))
    ch, cw = h // 2, w // 2
    amp, phase = fs.abs(), fs.angle()
    amp[..., ch - bh:ch + bh + 1, cw - bw:cw + bw + 1] = ft.abs()[..., ch - bh:ch + bh + 1, cw - bw:cw + bw + 1]
    out = torch.fft.ifft2(torch.fft.ifftshift(torch.polar(amp, phase), dim=(-2, -1))).real
    # keep the background (the source's zero region) as it was
    return torch.where(xs > threshold, out.clamp(0, 1), xs)


BASELINES = {"identity": identity, "histogram": histogram_match, "lowfreq": lowfreq_replace}
