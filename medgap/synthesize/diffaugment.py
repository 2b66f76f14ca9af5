"""Differentiable augmentation of what the discriminator sees (DiffAugment, Zhao et al., NeurIPS 2020).

With a handful of training volumes the discriminator learns them by heart within a few hundred
iterations; its verdicts then stop teaching the generator anything but "be one of these". DiffAugment
applies the same *kind* of random transform to real and generated inputs of D -- in the D step and in
the G step -- so D cannot tell them apart by details a transform destroys, and because every
transform is differentiable, G still gets gradients through it. The publication's policy
"color, translation, cutout", written for HA-GAN's two inputs:

* colour: per sample, brightness +-0.25 and contrast x [0.5, 1.5] (intensities in [-1, 1]);
* translation: per sample, an in-plane shift of up to 1/8 of the side, in steps of 4 voxels at full
  resolution and 1 voxel at D^L's quarter resolution, so the slab and the low-resolution volume move
  together (background -1 fills the gap);
* cutout: per sample, an in-plane square of half the side, through the slab's depth and the matching
  columns of the low-resolution volume, set to 0.

Written here because the published code and the augmentation libraries (MONAI, kornia) are 2D or
not batched-differentiable for a (slab, low-resolution volume) pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["diff_augment"]


def _shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each sample's last two axes by (dy[i], dx[i]) voxels, filling with -1."""
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    h, w = x.shape[-2:]
    return torch.stack([padded[i, ..., pad - int(dy[i]) : pad - int(dy[i]) + h, pad - int(dx[i]) : pad - int(dx[i]) + w]
                        for i in range(x.shape[0])])


def diff_augment(slab: torch.Tensor, low: torch.Tensor, generator: torch.Generator | None = None):
    """Augment D's inputs: ``slab`` (B, 1, d, S, S) and ``low`` (B, 1, S/4, S/4, S/4) in [-1, 1]."""
    b, size = slab.shape[0], slab.shape[-1]
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731 -- CPU draws: same on every device
    brightness = ((rand(b) - 0.5) * 0.5).view(b, 1, 1, 1, 1).to(slab)
    contrast = (rand(b) + 0.5).view(b, 1, 1, 1, 1).to(slab)

    def colour(x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        return (x - mean) * contrast + mean + brightness

    slab, low = colour(slab), colour(low)
    steps = size // 32  # shift in units of 4 voxels, up to S/8
    dy, dx = (torch.randint(-steps, steps + 1, (b,), generator=generator) for _ in range(2))
    slab, low = _shift(slab, 4 * dy, 4 * dx, 4 * steps), _shift(low, dy, dx, steps)
    quarter = size // 4  # cutout: a square of side S/2 (S/8 at quarter resolution), corner on the 4-voxel grid
    cy, cx = (torch.randint(0, quarter // 2 + 1, (b,), generator=generator) for _ in range(2))
    keep_high, keep_low = torch.ones_like(slab), torch.ones_like(low)
    for i in range(b):
        y, x = int(cy[i]), int(cx[i])
        keep_high[i, ..., 4 * y : 4 * (y + quarter // 2), 4 * x : 4 * (x + quarter // 2)] = 0
        keep_low[i, ..., y : y + quarter // 2, x : x + quarter // 2] = 0
    return slab * keep_high, low * keep_low
