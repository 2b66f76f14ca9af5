"""Scanner-like changes of a whole 3D volume, each with a strength (0 = unchanged).

Used to measure how gap measures respond (``benchmarks/bench_gap_response.py``) and to test
them. Volumes are (X, Y, Z) arrays with background 0; results keep the background at 0.

* ``gamma``: ``v -> v^g`` on [0, 1] intensities, ``g = 1 + strength`` (strength may be negative).
* ``bias``: smooth multiplicative field ``exp(strength * p(x, y, z))`` with a fixed low-order
  polynomial ``p`` of range about [-2, 2] over the volume.
* ``blur_noise``: Gaussian blur of ``strength`` voxels plus Gaussian noise of sd ``0.04 * strength``.
* ``wm_dark``: white matter darkened towards and past grey matter, ``v * (1 - strength * P_wm)``
  with a white-matter probability map (non-monotonic: histogram matching cannot undo it).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["SHIFTS", "apply_shift"]


def _gamma(v: np.ndarray, strength: float, wm=None, seed: int = 0) -> np.ndarray:
    top = v.max() if v.max() > 0 else 1.0
    return np.where(v > 0, (np.clip(v, 0, None) / top) ** (1.0 + strength) * top, 0.0)


def _bias(v: np.ndarray, strength: float, wm=None, seed: int = 0) -> np.ndarray:
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in v.shape], indexing="ij")
    return v * np.exp(strength * (x + 0.5 * y - 0.3 * z + 0.5 * x * y))


def _blur_noise(v: np.ndarray, strength: float, wm=None, seed: int = 0) -> np.ndarray:
    if strength <= 0:
        return v.copy()
    out = gaussian_filter(v, strength) + np.random.default_rng(seed).normal(0, 0.04 * strength * v.max(), v.shape)
    return np.where(v > 0, np.clip(out, 0, None), 0.0)


def _wm_dark(v: np.ndarray, strength: float, wm=None, seed: int = 0) -> np.ndarray:
    if wm is None:
        raise ValueError("wm_dark needs a white-matter probability map")
    return v * (1.0 - strength * np.clip(wm, 0, 1))


SHIFTS = {"gamma": _gamma, "bias": _bias, "blur_noise": _blur_noise, "wm_dark": _wm_dark}


def apply_shift(volume: np.ndarray, kind: str, strength: float, *, wm: np.ndarray | None = None,
                seed: int = 0) -> np.ndarray:
    """``volume`` changed by shift ``kind`` at ``strength`` (float32)."""
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; choose from {sorted(SHIFTS)}")
    return SHIFTS[kind](np.asarray(volume, dtype=np.float64), float(strength), wm, seed).astype(np.float32)
