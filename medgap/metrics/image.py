"""PSNR, SSIM (optionally inside a mask), Dice and IoU for 2D slices, stacks and 3D volumes."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

__all__ = ["psnr", "ssim", "dice", "iou"]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def psnr(x, y, data_range: float = 1.0, mask=None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(range^2 / MSE)``, over ``mask`` if given."""
    x, y = _np(x).astype(np.float64), _np(y).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    diff = (x - y) ** 2
    if mask is not None:
        diff = diff[_np(mask).astype(bool)]
    mse = float(diff.mean()) if diff.size else float("nan")
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(x, y, data_range: float = 1.0, mask=None, stack: bool | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004, Gaussian window sigma 1.5).

    Args:
        x, y: (H, W) slices, (N, H, W) stacks of slices or (D, H, W) volumes.
        mask: optional boolean array of the same shape; the SSIM map is averaged inside it.
        stack: treat a 3D input as N independent 2D slices (default: a 3D volume).
    """
    x, y = _np(x).astype(np.float64), _np(y).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    if stack and x.ndim == 3:
        maps = [
            structural_similarity(a, b, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, full=True)[1]
            for a, b in zip(x, y)
        ]
        smap = np.stack(maps)
    else:
        _, smap = structural_similarity(x, y, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
    if mask is not None:
        m = _np(mask).astype(bool)
        return float(smap[m].mean()) if m.any() else float("nan")
    return float(smap.mean())


def dice(a, b) -> float:
    """Dice overlap ``2|A and B| / (|A| + |B|)`` of two binary arrays (1.0 when both are empty)."""
    a, b = _np(a).astype(bool), _np(b).astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * (a & b).sum() / total)


def iou(a, b) -> float:
    """Intersection over union of two binary arrays (1.0 when both are empty)."""
    a, b = _np(a).astype(bool), _np(b).astype(bool)
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)
