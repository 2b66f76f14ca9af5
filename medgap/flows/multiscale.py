"""Multi-scale Glow-like flow with factor-out (Dinh et al. 2017; Kingma & Dhariwal 2018;
rational-quadratic couplings of Durkan et al. 2019).

Level l: squeeze x2 -> ``steps`` x [ActNorm -> LU 1x1 conv -> RQ-spline coupling]
-> LU 1x1 conv; after every level but the last, half of the channels are
factored out to the latent. With ``image_size=(144, 176)``, 4 levels, 7 steps,
96 hidden channels, 3 residual blocks and 8 bins this is the 14,486,534-parameter
network of the BlindHarmony reference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medgap.flows.blocks import ActNorm, FlowSequence, InvConv1x1, RQSCoupling, Squeeze

__all__ = ["MultiScaleFlow"]


class MultiScaleFlow(nn.Module):
    """``forward(x (B, C, H, W)) -> (z (B, C*H*W), log_det (B,))``; ``rev=True`` maps ``z`` back to ``x``.

    ``z`` is the concatenation of the factored-out parts (level 1 first) and the
    last level's output, each flattened. ``H`` and ``W`` must be divisible by
    ``2**levels``.
    """

    def __init__(self, image_size: tuple[int, int], in_channels: int = 1, levels: int = 4, steps: int = 7,
                 hidden: int = 96, blocks: int = 3, bins: int = 8, bound: float = 3.0,
                 min_slope: float = 1e-3, batch_norm: bool = True, dropout: float = 0.0, seed: int = 0):
        super().__init__()
        h, w = image_size
        if h % 2**levels or w % 2**levels:
            raise ValueError(f"image size {h}x{w} must be divisible by 2**levels = {2**levels}")
        self.image_size = (h, w)
        self.in_channels = in_channels
        gen = torch.Generator().manual_seed(seed)  # fixed random permutations
        c = in_channels
        self.levels = nn.ModuleList()
        self.out_shapes: list[tuple[int, int, int]] = []  # shape of each latent piece, in z order
        for level in range(levels):
            c, h, w = c * 4, h // 2, w // 2
            parts: list = [Squeeze(2)]
            for _ in range(steps):
                parts += [ActNorm(c), InvConv1x1(c, gen),
                          RQSCoupling(c, hidden, blocks, bins, bound, min_slope, batch_norm, dropout)]
            parts.append(InvConv1x1(c, gen))
            self.levels.append(FlowSequence(parts))
            if level < levels - 1:
                keep = c - c // 2
                self.out_shapes.append((c // 2, h, w))
                c = keep
        self.out_shapes.append((c, h, w))

    @property
    def dim(self) -> int:
        """Number of latent (= input) dimensions C*H*W."""
        return self.in_channels * self.image_size[0] * self.image_size[1]

    def forward(self, x: Tensor, rev: bool = False, jac: bool = True) -> tuple[Tensor, Tensor]:
        if rev:
            return self._inverse(x, jac)
        if tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
            raise ValueError(f"expected input (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(x.shape)}")
        pieces, total = [], x.new_zeros(x.shape[0])
        h = x
        for i, level in enumerate(self.levels):
            h, ld = level(h, jac=jac)
            total = total + ld
            if i < len(self.levels) - 1:
                keep = h.shape[1] - h.shape[1] // 2
                pieces.append(h[:, keep:].flatten(1))
                h = h[:, :keep]
        pieces.append(h.flatten(1))
        return torch.cat(pieces, dim=1), total

    def _inverse(self, z: Tensor, jac: bool) -> tuple[Tensor, Tensor]:
        sizes = [c * h * w for c, h, w in self.out_shapes]
        pieces = torch.split(z, sizes, dim=1)
        b = z.shape[0]
        total = z.new_zeros(b)
        h = pieces[-1].reshape(b, *self.out_shapes[-1])
        for i in range(len(self.levels) - 1, -1, -1):
            if i < len(self.levels) - 1:
                h = torch.cat([h, pieces[i].reshape(b, *self.out_shapes[i])], dim=1)
            h, ld = self.levels[i](h, rev=True, jac=jac)
            total = total + ld
        return h, total

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent ActNorm initialisation from a batch ``x (B, C, H, W)``."""
        was_training = self.training
        self.train()
        for m in self.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(False)
        self(x)
        self.train(was_training)
