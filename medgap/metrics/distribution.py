"""Distances between two samples of feature vectors: unbiased MMD^2 and the Frechet distance."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics.fid import get_fid_score

__all__ = ["mmd2_unbiased", "median_bandwidth", "frechet_distance"]


def _t(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    if x.ndim != 2:
        raise ValueError(f"features must be 2D (N, F), got shape {tuple(x.shape)}")
    return x


def median_bandwidth(x, y) -> float:
    """Median pairwise Euclidean distance over the pooled sample (the 'median heuristic')."""
    z = torch.cat([_t(x), _t(y)])
    d = torch.cdist(z, z)
    off = d[~torch.eye(len(z), dtype=torch.bool)]
    med = float(off.median()) if off.numel() else 1.0
    return med if med > 0 else 1.0


def mmd2_unbiased(x, y, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Eq. 3) with ``k(a, b) = exp(-|a-b|^2 / (2 s^2))``.

    ``s`` is the median pairwise distance of the pooled sample unless given. Written
    here because MONAI's MMDMetric compares paired images, not two samples of
    features. Can be slightly negative when the samples come from one distribution.

    Args:
        x: (N, F) features of sample A (N >= 2).
        y: (M, F) features of sample B (M >= 2).
    """
    x, y = _t(x), _t(y)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {n} and {m}")
    s = bandwidth if bandwidth is not None else median_bandwidth(x, y)
    gamma = 1.0 / (2.0 * s * s)
    kxx = torch.exp(-gamma * torch.cdist(x, x) ** 2)
    kyy = torch.exp(-gamma * torch.cdist(y, y) ** 2)
    kxy = torch.exp(-gamma * torch.cdist(x, y) ** 2)
    term_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    term_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(term_x + term_y - 2.0 * kxy.mean())


def frechet_distance(x, y) -> float:
    """Frechet distance between Gaussians fitted to two feature samples (FID on any features).

    ``|mu_x - mu_y|^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2))``, computed by MONAI.
    """
    x, y = _t(x), _t(y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Frechet distance needs at least 2 samples on each side, got {len(x)} and {len(y)}")
    with warnings.catch_warnings():
        # fewer samples than feature dimensions make the covariances singular; the
        # square root is still well defined (both are PSD), scipy just warns about it.
        warnings.simplefilter("ignore")
        return float(get_fid_score(x, y))
