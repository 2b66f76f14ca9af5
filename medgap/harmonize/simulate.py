"""Simulated source domains for evaluation (slices in [0, 1], background 0).

The publication's set is global and monotonic (gamma, exp, log), which
histogram matching undoes almost exactly; ``bias``, ``wm_dark`` and
``lowres_noise`` are changes it cannot undo: a smooth multiplicative bias
field, a non-monotonic tissue-contrast change (white matter darker than grey
matter), and half resolution plus noise. Every domain ends with a per-slice
min-max back to [0, 1], as in the publication.

``OUT_OF_FAMILY`` are changes of another kind than any the restoration net trains on
(:mod:`medgap.harmonize.augment`: intensity curves, smooth bias fields, lower resolution, Rician
noise) -- what a real other scanner or pipeline also does. They are for evaluation only:

* ``gibbs``: Gibbs ringing from a k-space truncated to its central 45 % in each direction (an
  acquisition matrix smaller than the reconstruction grid, zero-filled), magnitude image.
* ``ghost``: motion ghosting: every second phase-encode line scaled by 0.7 (phase encoding
  left-right), as a periodic motion in step with the repetition time does; gives a ghost shifted
  by half the field of view left-right.
* ``thick``: thick coronal slices seen in an axial slice: partial volume over 5 pixels front-back
  (a 5-pixel slab), reconstructed on the fine grid.
* ``dura``: residual non-brain tissue from another skull stripping: a 3-voxel rim outside the
  brain at the intensity of dura and marrow in T1 (0.7-0.9 of the brain's maximum, textured).
* ``spgr15``: another sequence's T1 contrast: the tissue intensities of a 1.5 T spoiled gradient
  echo (SPGR, TR 20 ms, TE 5 ms, flip 25 deg) from its signal equation
  ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2*)`` with E1 = exp(-TR / T1) and tissue
  values from the literature at 1.5 T (T1 WM 650 / GM 1100 / CSF 4000 ms; T2* 55 / 65 / 500 ms;
  PD 0.69 / 0.80 / 1.00), placed on the slice's own CSF / GM / WM levels (three-class k-means of
  the brain's intensities): intensities are mapped piecewise linearly between the tissue levels, so
  partial volume stays partial.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DOMAINS", "PAPER_DOMAINS", "HARD_DOMAINS", "COMBINED_DOMAINS", "OUT_OF_FAMILY", "OUT_OF_FAMILY_COMBINED",
           "simulate", "VOLUME_DOMAINS", "simulate_volume"]

PAPER_DOMAINS = ["gamma0.7", "gamma0.8", "gamma0.9", "gamma1.2", "gamma1.3", "gamma1.5", "exp", "log"]
HARD_DOMAINS = ["bias", "wm_dark", "lowres_noise"]
DOMAINS = PAPER_DOMAINS + HARD_DOMAINS
COMBINED_DOMAINS = ["bias+gamma1.3", "wm_dark+lowres_noise"]  # "a+b": a, then b
OUT_OF_FAMILY = ["gibbs", "ghost", "thick", "dura", "spgr15"]
OUT_OF_FAMILY_COMBINED = ["gibbs+gamma1.3", "spgr15+bias", "dura+lowres_noise"]
# changes of a whole volume (consecutive slices), :func:`simulate_volume`
VOLUME_DOMAINS = ["bias3d", "bias3d+gamma1.3"]

# 1.5 T tissue parameters (T1 ms, T2* ms, proton density) of WM, GM, CSF; SPGR TR 20 ms, TE 5 ms, 25 deg
_TISSUE_15T = {"wm": (650.0, 55.0, 0.69), "gm": (1100.0, 65.0, 0.80), "csf": (4000.0, 500.0, 1.00)}
_SPGR = (20.0, 5.0, 25.0)


def _spgr_signal(t1: float, t2s: float, pd: float) -> float:
    tr, te, flip = _SPGR
    a, e1 = math.radians(flip), math.exp(-tr / t1)
    return pd * math.sin(a) * (1 - e1) / (1 - math.cos(a) * e1) * math.exp(-te / t2s)


def _tissue_levels(values: Tensor) -> Tensor:
    """CSF, GM, WM intensity levels of one slice's brain: three-class k-means (1D, 20 iterations)."""
    centres = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9]))
    for _ in range(20):
        label = (values[:, None] - centres[None]).abs().argmin(1)
        centres = torch.stack([values[label == k].mean() if bool((label == k).any()) else centres[k]
                               for k in range(3)])
    return centres.sort().values


def _out_of_family(x: Tensor, domain: str, fg: Tensor, g: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    if domain == "gibbs":
        k = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
        keep = torch.zeros(h, w, dtype=torch.bool)
        kh, kw = max(1, round(0.225 * h)), max(1, round(0.225 * w))
        keep[h // 2 - kh:h // 2 + kh + 1, w // 2 - kw:w // 2 + kw + 1] = True
        return torch.fft.ifft2(torch.fft.ifftshift(k * keep, dim=(-2, -1))).abs()
    if domain == "ghost":  # slices are (left-right, front-back): rows of k-space are left-right frequencies
        k = torch.fft.fft2(x)
        rows = torch.ones(h, 1)
        rows[1::2] = 0.7
        return torch.fft.ifft2(k * rows).abs()
    if domain == "thick":
        return F.avg_pool2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), (1, 5), stride=1)
    if domain == "dura":
        grown = F.max_pool2d(fg.float(), 7, stride=1, padding=3) > 0
        rim = grown & ~fg
        level = 0.7 + 0.2 * torch.rand(x.shape[0], 1, 1, 1, generator=g)
        texture = 1 + 0.1 * torch.randn(x.shape, generator=g)
        top = x.flatten(1).amax(1)[:, None, None, None]
        return torch.where(rim, level * top * texture, x)
    if domain == "spgr15":
        signal = torch.tensor([_spgr_signal(*_TISSUE_15T[t]) for t in ("csf", "gm", "wm")])
        signal = signal / signal.max()
        out = x.clone()
        for i in range(x.shape[0]):
            vals = x[i][fg[i]]
            if vals.numel() < 30:
                continue
            levels = _tissue_levels(vals)
            # piecewise linear through (0, 0), the three tissue levels, and on beyond WM with the last slope
            knots_in = torch.cat([torch.zeros(1), levels, levels[-1:] + 1.0])
            slope = (signal[2] - signal[1]) / (levels[2] - levels[1]).clamp_min(1e-3)
            knots_out = torch.cat([torch.zeros(1), signal, signal[-1:] + slope])
            pos = torch.searchsorted(knots_in, x[i].clamp(0, float(knots_in[-1])).contiguous()).clamp(1, 4)
            x0, x1 = knots_in[pos - 1], knots_in[pos]
            y0, y1 = knots_out[pos - 1], knots_out[pos]
            mapped = y0 + (x[i] - x0) / (x1 - x0).clamp_min(1e-6) * (y1 - y0)
            out[i] = torch.where(fg[i], mapped, x[i])
        return out
    raise ValueError(f"unknown domain {domain!r}; choose from {DOMAINS + OUT_OF_FAMILY}")


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


def _bias_field_3d(shape, generator: torch.Generator, strength: float = 0.5) -> Tensor:
    """exp of a random sum of three low-frequency cosines over (z, y, x), spanning about +-strength."""
    n, _, h, w = shape
    zz, yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, h), torch.linspace(0, 1, w),
                                indexing="ij")
    field = torch.zeros(n, h, w)
    for _ in range(3):
        fz, fy, fx = (torch.rand(3, generator=generator) * 1.5 + 0.25).tolist()
        phase, amp = float(torch.rand(1, generator=generator)) * 2 * math.pi, float(torch.randn(1, generator=generator))
        field += amp * torch.cos(2 * math.pi * (fz * zz + fy * yy + fx * xx) + phase)
    field = field / field.abs().max().clamp_min(1e-6)
    return torch.exp(strength * field)[:, None]


def simulate_volume(x: Tensor, domain: str, seed: int = 0, threshold: float = 0.05) -> Tensor:
    """Apply a whole-volume change to consecutive slices ``x (N, 1, H, W)`` of one volume in [0, 1]:
    ``bias3d`` is a smooth multiplicative field that varies in all three directions (so also from
    slice to slice), rescaled once for the volume (max 1) as a scanner's reconstruction would;
    ``bias3d+<change>`` then applies a slice change of :func:`simulate` (e.g. ``bias3d+gamma1.3``)."""
    first, _, rest = domain.partition("+")
    if first != "bias3d":
        raise ValueError(f"unknown volume change {domain!r}; choose from {VOLUME_DOMAINS}")
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    y = x * _bias_field_3d(x.shape, g)
    y = torch.where(x > threshold, y, x).clamp_min(0)
    y = y / y.max().clamp_min(1e-8)
    if rest:  # monotone slice changes (gamma) commute with a per-slice rescale: applied to the volume at once
        y = simulate(y, rest, seed=seed + 1000, threshold=threshold) if not rest.startswith("gamma") else \
            torch.where(y > threshold, y.clamp_min(0) ** float(rest[5:]), y)
    return y


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
        y = _out_of_family(x, domain, fg, g)
    y = torch.where(fg | (y > threshold), y, torch.zeros_like(y)).clamp_min(0)
    return _minmax(y)
