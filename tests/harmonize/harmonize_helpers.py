"""Shared test helpers: a brain-like phantom, a non-RAS affine, a tiny config."""
from __future__ import annotations

import numpy as np


TINY = [
    "flow.image_size=[16,16]", "flow.levels=2", "flow.steps=1", "flow.hidden=4", "flow.blocks=1", "flow.bins=4",
    "train.batch_size=4", "train.steps=4", "train.log_every=1", "train.checkpoint_every=2",
    "data.template_bins=4", "harmonize.iterations=2", "harmonize.batch_slices=8",
]


def phantom(shape=(30, 36, 12), seed=0) -> np.ndarray:
    """Brain-like phantom: bright ellipsoid 'WM' inside a darker 'GM' shell, zero background."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 1.3) ** 2
    vol = np.where(r < 1, 0.45, 0.0) + np.where(r < 0.45, 0.35, 0.0)
    vol = vol + 0.02 * rng.standard_normal(shape) * (r < 1)
    return np.clip(vol, 0, None).astype(np.float32)


def lps_affine(spacing=(2.0, 2.0, 3.0)) -> np.ndarray:
    """A non-RAS affine (axes flipped and swapped) so orientation handling is exercised."""
    a = np.zeros((4, 4))
    a[0, 1] = -spacing[1]
    a[1, 0] = -spacing[0]
    a[2, 2] = spacing[2]
    a[:3, 3] = [50, 60, -20]
    a[3, 3] = 1
    return a


