"""Simulated source domains for evaluation (slices in [0, 1], background 0).

The publication's set is global and monotonic (gamma, exp, log), which
histogram matching undoes almost exactly; ``bias``, ``wm_dark`` and
``lowres_noise`` are changes it cannot undo: a smooth multiplicative bias
field, a non-monotonic tissue-contrast change (white matter darker than grey
matter), and half resolution plus noise. Every domain ends with a per-slice
min-max back to [0, 1], as in the publication.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DOMAINS", "PAPER_DOMAINS", "HARD_DOMAINS", "COMBINED_DOMAINS", "simulate"]

PAPER_DOMAINS = ["gamma0.7", "gamma0.8", "gamma0.9", "gamma1.2", "gamma1.3", "gamma1.5", "exp", "log"]
HARD_DOMAINS = ["bias", "wm_dark", "lowres_noise"]
DOMAINS = PAPER_DOMAINS + HARD_DOMAINS
COMBINED_DOMAINS = ["bias+gamma1.3", "wm_dark+lowres_noise"]  # "a+b": a, then b


def _minmax(x: Tensor) -> Tensor:
    lo = x.flatten(1).min(dim=1).values[:, None, None, None]
    hi = x.flatten(1).max(dim=1).values[:, None, None, None]
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def _bias_field(shape, generator: torch.Generator, strength: float = 0.4) -> Tensor:
    """exp of a random sum of low-frequency cosines, spanning about +-strength."""
    b, _, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    field = torch.zeros(b, 1, h, w)
    for _ in range(3):
        fy, fx = torch.rand(2, b, generator=generator) * 1.5 + 0.25
        ph = torch.rand(b, generator=generator) * 2 * math.pi
        amp = torch.randn(b, generator=generator)
        field += amp[:, None, None, None] * torch.cos(
            2 * math.pi * (fy[:, None, None] * yy + fx[:, None, None] * xx) + ph[:, None, None])[:, None]
    field = field / field.flatten(1).abs().amax(dim=1).clamp_min(1e-6)[:, None, None, None]
    return torch.exp(strength * field)


def simulate(x: Tensor, domain: str, seed: int = 0, threshold: float = 0.05) -> Tensor:
    """Apply source domain ``domain`` to target slices ``x (B, 1, H, W)`` in [0, 1]."""
    if "+" in domain:
        for i, part in enumerate(domain.split("+")):
            x = simulate(x, part, seed=seed + 1000 * i, threshold=threshold)
        return x
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    fg = x > threshold
    if domain.startswith("gamma"):
        y = x.clamp_min(0) ** float(domain[5:])
    elif domain == "exp":
        y = (torch.exp(x) - 1) / (math.e - 1)
    elif domain == "log":
        y = torch.log1p(3 * x) / math.log(4)
    elif domain == "bias":
        y = x * _bias_field(x.shape, g)
    elif domain == "wm_dark":
        # tent peaking at the grey-matter level (the foreground's 35th percentile):
        # GM -> 1, WM (brighter than GM in T1) -> darker than GM, CSF stays dark
        vals = torch.where(fg, x, torch.nan).flatten(1)
        p = torch.nanquantile(vals, 0.35, dim=1).nan_to_num(0.5)[:, None, None, None].clamp(0.2, 0.8)
        y = torch.where(x <= p, x / p, 1 - 0.7 * (x - p) / (1 - p))
        y = torch.where(fg, y, x)
    elif domain == "lowres_noise":
        small = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
        y = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        y = y + 0.04 * torch.randn(x.shape, generator=g) * fg
    else:
        raise ValueError(f"unknown domain {domain!r}; choose from {DOMAINS}")
    y = torch.where(fg | (y > threshold), y, torch.zeros_like(y)).clamp_min(0)
    return _minmax(y)
