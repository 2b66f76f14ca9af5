"""Random changes of target slices for training: geometry, and the scanner-like changes the
restoration net learns to undo (never the changes it is evaluated on, :mod:`medgap.harmonize.simulate`).

* :func:`augment`: a small random rotation, scale and shift (and optional gamma) of slices, the
  geometric augmentation of both the flow and the restoration net.
* :func:`random_scanner_change`: random intensity curves (monotone or not), smooth bias fields,
  lower resolution and Rician noise.
* :func:`random_sharpen`: unsharp masking of random strength (average-brain targets are smooth).
* :func:`random_nonbrain_tissue`: residual non-brain tissue (dura, marrow, scalp) around the brain,
  as a looser skull stripping leaves it.
* :func:`match_own_histogram`: a changed slice given its clean slice's intensity distribution, the
  training-time stand-in for the standardisation a source gets at use (rank matching,
  :func:`medgap.harmonize.baselines.match_ranks`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medgap.harmonize.baselines import match_ranks

__all__ = ["augment", "random_affine_grid", "random_scanner_change", "random_sharpen", "random_nonbrain_tissue",
           "match_own_histogram"]


def random_affine_grid(shape: list[int], degrees: float, scale: float, shift: float,
                       generator: torch.Generator) -> torch.Tensor:
    """A sampling grid for one random rotation/scale/shift per slice; ``shape`` is (B, C, H, W).

    Angles in [-degrees, degrees], zoom 1 +- scale, shift +- shift of the image size.
    """
    b = shape[0]
    ang = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(degrees)
    sc = 1 + (torch.rand(b, generator=generator) * 2 - 1) * scale
    tr = (torch.rand(b, 2, generator=generator) * 2 - 1) * shift * 2
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.cos(ang) / sc
    theta[:, 0, 1] = -torch.sin(ang) / sc
    theta[:, 1, 0] = torch.sin(ang) / sc
    theta[:, 1, 1] = torch.cos(ang) / sc
    theta[:, :, 2] = tr
    return F.affine_grid(theta, shape, align_corners=False)


def augment(x: torch.Tensor, cfg, generator: torch.Generator) -> torch.Tensor:
    """Small random affine (rotation, isotropic scale, translation) and optional gamma jitter."""
    b = x.shape[0]
    d = cfg
    if d.aug_rotate_deg > 0 or d.aug_scale > 0 or d.aug_translate > 0:
        grid = random_affine_grid(list(x.shape), d.aug_rotate_deg, d.aug_scale, d.aug_translate, generator)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if d.aug_gamma > 0:
        g = 1 + (torch.rand(b, generator=generator) * 2 - 1) * d.aug_gamma
        x = x.clamp_min(0) ** g[:, None, None, None]
    return x.clamp(0, 1)


def _smooth_field(b: int, h: int, w: int, grid: int, generator: torch.Generator) -> Tensor:
    """Random smooth field in [-1, 1]: Gaussian noise on a coarse grid, bicubic upsampling."""
    coarse = torch.randn(b, 1, grid, grid, generator=generator)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return field / field.flatten(1).abs().amax(dim=1).clamp_min(1e-6)[:, None, None, None]


def _random_curve(v: Tensor, generator: torch.Generator, knots: int = 6, monotone_p: float = 0.5,
                  spread: float = 0.35) -> Tensor:
    """Per-slice piecewise-linear intensity map of ``v (B, 1, H, W)`` in [0, 1]: identity plus a
    random displacement of each knot; sorted (monotone) with probability ``monotone_p``."""
    b = v.shape[0]
    xk = torch.linspace(0, 1, knots)
    yk = (xk + spread * torch.randn(b, knots, generator=generator)).clamp(0, 1)
    mono = torch.rand(b, generator=generator) < monotone_p
    yk = torch.where(mono[:, None], yk.sort(dim=1).values, yk)
    pos = v.clamp(0, 1) * (knots - 1)
    i0 = pos.floor().long().clamp_max(knots - 2)
    frac = pos - i0
    y0 = torch.gather(yk, 1, i0.flatten(1)).view_as(v)
    y1 = torch.gather(yk, 1, (i0 + 1).flatten(1)).view_as(v)
    return y0 + frac * (y1 - y0)


def random_scanner_change(x: Tensor, generator: torch.Generator, threshold: float = 0.05,
                          contrast_p: float = 0.7, bias_p: float = 0.5, bias_strength: float = 0.5,
                          resolution_p: float = 0.4, noise_p: float = 0.4, max_noise: float = 0.06) -> Tensor:
    """Target slices ``x (B, 1, H, W)`` in [0, 1] -> the same anatomy as another scanner might show it.

    Each slice independently gets: a random gamma (log-normal, sd 0.35) and, with
    ``contrast_p``, a random intensity curve (:func:`_random_curve`); with ``bias_p`` a
    multiplicative field ``exp(s f)``, ``s ~ U(0, bias_strength)``, f smooth on a 3..5
    grid; with ``resolution_p`` a down/up-sampling by 1.3..2.5; with ``noise_p`` Rician
    noise of sd up to ``max_noise``. Then min-max to [0, 1]; background away from the head stays 0
    (lower resolution blurs the edge by a few pixels, as it would in a scan).
    """
    b, _, h, w = x.shape
    fg = x > threshold
    y = x.clamp(0, 1) ** torch.exp(0.35 * torch.randn(b, 1, 1, 1, generator=generator))
    curve = _random_curve(y, generator)
    use = (torch.rand(b, 1, 1, 1, generator=generator) < contrast_p)
    y = torch.where(use, curve, y)
    grid = int(torch.randint(3, 6, (1,), generator=generator))
    field = torch.exp(torch.rand(b, 1, 1, 1, generator=generator) * bias_strength * _smooth_field(b, h, w, grid,
                                                                                                 generator))
    use = torch.rand(b, 1, 1, 1, generator=generator) < bias_p
    y = torch.where(use, y * field, y)
    y = torch.where(fg, y, torch.zeros_like(y))
    if resolution_p > 0:
        factor = 1.3 + 1.2 * float(torch.rand(1, generator=generator))
        small = F.interpolate(y, size=(max(4, round(h / factor)), max(4, round(w / factor))), mode="bilinear",
                              align_corners=False, antialias=True)
        low = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        use = torch.rand(b, 1, 1, 1, generator=generator) < resolution_p
        y = torch.where(use, low, y)
    sd = torch.rand(b, 1, 1, 1, generator=generator) * max_noise
    sd = torch.where(torch.rand(b, 1, 1, 1, generator=generator) < noise_p, sd, torch.zeros_like(sd))
    n1, n2 = torch.randn(x.shape, generator=generator), torch.randn(x.shape, generator=generator)
    y = torch.where(fg, torch.sqrt((y + sd * n1) ** 2 + (sd * n2) ** 2), y)  # Rician magnitude
    y = torch.where(fg | (y > threshold), y, torch.zeros_like(y))
    lo = y.flatten(1).min(dim=1).values[:, None, None, None]
    hi = y.flatten(1).max(dim=1).values[:, None, None, None]
    return ((y - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of every channel of ``x (B, C, H, W)``."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    y = x.reshape(-1, 1, *x.shape[-2:])
    y = F.conv2d(y, k.view(1, 1, -1, 1), padding=(r, 0))
    return F.conv2d(y, k.view(1, 1, 1, -1), padding=(0, r)).view_as(x)


def random_sharpen(x: Tensor, generator: torch.Generator, amount: float = 1.0, p: float = 0.5,
                   threshold: float = 0.05) -> Tensor:
    """Unsharp masking of random strength (0..``amount``, sigma 1 px) on a fraction ``p`` of the
    slices: average-brain targets are smoother than any single subject, and a net that only
    ever saw them learns to blur an individual's anatomy."""
    b = x.shape[0]
    a = torch.rand(b, 1, 1, 1, generator=generator) * amount
    a = torch.where(torch.rand(b, 1, 1, 1, generator=generator) < p, a, torch.zeros_like(a))
    y = (x + a * (x - _gaussian_blur(x, 1.0))).clamp(0, 1)
    return torch.where(x > threshold, y, x)


def random_nonbrain_tissue(y: Tensor, generator: torch.Generator, p: float = 0.3,
                           threshold: float = 0.05) -> tuple[Tensor, Tensor]:
    """Residual non-brain tissue on a fraction ``p`` of the slices of ``y (B, C, H, W)``: a band 1-6
    pixels wide around the foreground, on a random part of its circumference (where a smooth random
    field exceeds a random level), at 0.2-1.0 of the slice's maximum with up to 15 % texture: what
    a looser skull stripping leaves (dura, marrow, scalp). Returns (changed slices, the band).

    The net learns to leave such tissue alone and to keep it from changing the brain: without it, a
    rim of bright tissue made the net brighten the whole brain."""
    b, _, h, w = y.shape
    fg = y > threshold
    width = torch.randint(1, 7, (b,), generator=generator)
    grown = torch.zeros_like(fg)
    for k in sorted(set(width.tolist())):
        sel = width == k
        grown[sel] = F.max_pool2d(fg[sel].float(), 2 * k + 1, stride=1, padding=k) > 0
    grid = int(torch.randint(3, 9, (1,), generator=generator))
    level = torch.rand(b, 1, 1, 1, generator=generator) * 1.5 - 1.0
    arcs = _smooth_field(b, h, w, grid, generator) > level
    use = torch.rand(b, 1, 1, 1, generator=generator) < p
    band = grown & ~fg & arcs & use
    top = y.flatten(1).amax(1)[:, None, None, None]
    brightness = (0.2 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator)) * top
    texture = 1 + 0.15 * torch.rand(b, 1, 1, 1, generator=generator) * torch.randn(y.shape, generator=generator)
    return torch.where(band, (brightness * texture).clamp(0, 1), y), band


def match_own_histogram(y: Tensor, clean: Tensor, threshold: float = 0.05, exclude: Tensor | None = None) -> Tensor:
    """Give each slice of ``y`` the foreground intensity distribution of the same slice of
    ``clean`` (rank mapping): the training-time stand-in for the standardisation the
    source gets at use, so the net only learns what standardisation cannot do.

    ``exclude``: pixels (added non-brain tissue) left out of the ranking and mapped through the same
    monotone curve as the brain's intensities around them."""
    out = y.clone()
    for i in range(len(y)):
        fy, fc = y[i] > threshold, clean[i] > threshold
        ex = exclude[i] & fy if exclude is not None else None
        ranked = fy & ~ex if ex is not None else fy
        if int(ranked.sum()) < 2 or int(fc.sum()) < 2:
            continue
        values = y[i][ranked]
        matched = match_ranks(values, clean[i][fc].sort().values, nearest=True).to(y.dtype)
        out[i][ranked] = matched
        if ex is not None and bool(ex.any()):
            order = values.argsort()
            curve = np.interp(y[i][ex].numpy(), values[order].numpy(), matched[order].numpy())
            out[i][ex] = torch.from_numpy(curve).to(y.dtype)
    return out
