"""The likelihood of a flow with a standard normal latent, shared by every flow in medgap."""

from __future__ import annotations

import math

import torch

__all__ = ["standard_normal_nll"]


def standard_normal_nll(z: torch.Tensor, log_det: torch.Tensor, *, constant: bool = True) -> torch.Tensor:
    """``-log p(x)`` per sample, in nats, of a flow ``z = f(x)`` with ``z ~ N(0, I)``:
    ``0.5 |z|^2 + (d / 2) log(2 pi) - log|det df/dx|``. ``constant=False`` leaves out the
    ``(d / 2) log(2 pi)`` that does not change gradients (training losses)."""
    z = z.flatten(1)
    nll = 0.5 * z.pow(2).sum(1) - log_det
    return nll + 0.5 * z.shape[1] * math.log(2 * math.pi) if constant else nll
