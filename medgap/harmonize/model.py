"""The target-domain density: a multi-scale RQ-spline flow over 12-bit image slices."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from medgap.flows import MultiScaleFlow, standard_normal_nll

__all__ = ["SliceFlow"]


class SliceFlow(nn.Module):
    """Density of target-domain slices ``x (B, 1, H, W)`` with values in [0, 1].

    Slices are quantised to ``num_bits`` (v = round(x (2^b - 1))), dequantised with
    uniform noise and scaled to ``y = (v + u) / 2^b - 0.5`` before the flow; the
    scaling's log-det ``-D log 2^b`` is counted, so :meth:`bits_per_dim` is the
    usual discrete-data bits/dim (about ``num_bits`` for a uniform density).
    ``templates (T, 1, H, W)`` are the mean target slices per relative slice
    position, used to start the harmonisation; ``quantiles (T, Q)`` are the
    target's foreground intensity quantiles per position (histogram matching).
    """

    def __init__(self, image_size: tuple[int, int], levels: int, steps: int, hidden: int, blocks: int,
                 bins: int = 8, bound: float = 3.0, min_slope: float = 1e-3, num_bits: int = 12,
                 batch_norm: bool = True, seed: int = 0, template_bins: int = 16, quantiles: int = 101):
        super().__init__()
        self.flow = MultiScaleFlow(tuple(image_size), 1, levels, steps, hidden, blocks, bins, bound,
                                   min_slope, batch_norm, 0.0, seed)
        self.num_bits = num_bits
        h, w = image_size
        self.register_buffer("templates", torch.zeros(template_bins, 1, h, w))
        self.register_buffer("quantiles", torch.linspace(0, 1, quantiles).repeat(template_bins, 1))

    @classmethod
    def from_config(cls, flow_cfg, template_bins: int = 16, seed: int = 0) -> "SliceFlow":
        """Build from a :class:`~medgap.harmonize.config.FlowConfig`; ``seed`` draws the fixed channel
        permutations (buffers: a loaded model gets its own back with its weights)."""
        c = flow_cfg
        return cls(tuple(c.image_size), c.levels, c.steps, c.hidden, c.blocks, c.bins, c.bound, c.min_slope,
                   c.num_bits, c.batch_norm, seed, template_bins)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.flow.image_size

    @property
    def dim(self) -> int:
        return self.flow.dim

    # -- deterministic map between [0,1] images and flow inputs (the dequantisation mean) --
    def to_flow(self, x: Tensor) -> Tensor:
        q = 2.0**self.num_bits
        return x * ((q - 1) / q) + (0.5 / q - 0.5)

    def from_flow(self, y: Tensor) -> Tensor:
        q = 2.0**self.num_bits
        return (y - (0.5 / q - 0.5)) * (q / (q - 1))

    def encode(self, x: Tensor) -> Tensor:
        """``x (B, 1, H, W)`` in [0, 1] -> latent ``z (B, D)``."""
        return self.flow(self.to_flow(x), jac=False)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Latent ``z (B, D)`` -> image ``x (B, 1, H, W)`` (not clipped)."""
        return self.from_flow(self.flow(z, rev=True, jac=False)[0])

    def dequantize(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """``x`` in [0, 1] -> flow input with uniform dequantisation ``noise`` (drawn if None)."""
        q = 2.0**self.num_bits
        v = torch.round(x.clamp(0, 1) * (q - 1))
        u = torch.rand_like(x) if noise is None else noise.to(x)
        return (v + u) / q - 0.5

    def bits_per_dim(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """``-log2 p(x) / D`` per slice, shape ``(B,)``; ``noise`` U[0,1) like ``x`` (drawn if None)."""
        y = self.dequantize(x, noise)
        z, log_det = self.flow(y)
        d = self.dim
        log_px = -standard_normal_nll(z, log_det) - d * self.num_bits * math.log(2.0)
        return -log_px / (d * math.log(2.0))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Mean bits/dim of the batch (the training loss)."""
        return self.bits_per_dim(x, noise).mean()

    def position_index(self, position: Tensor) -> Tensor:
        """Row of the templates and quantiles ``(B,)`` for relative slice positions ``position (B,)`` in [0, 1]."""
        t = self.templates.shape[0]
        return (position.clamp(0, 1) * t).long().clamp_max(t - 1)

    def template_for(self, position: Tensor) -> Tensor:
        """Templates ``(B, 1, H, W)`` for relative slice positions ``position (B,)`` in [0, 1]."""
        return self.templates[self.position_index(position)]
