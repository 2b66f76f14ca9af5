"""HA-GAN networks: hierarchical generator, discriminators and encoders.

Notation (as the publication): a volume has side ``S`` (a power of two >= 32);
the common generator block ``G^A`` maps ``z`` to a feature volume at ``S/4``;
``G^L`` turns the whole feature volume into a low-resolution volume
(``S/4``); ``G^H`` turns (a slab of) the feature volume into full resolution.
``D^H`` judges a full-resolution slab of depth ``S/8`` together with its
position, ``D^L`` the whole low-resolution volume. ``E^H`` maps a
full-resolution slab to its feature slab; ``E^G`` maps the whole feature
volume to ``z``.

At ``S=256``, ``width=1``, ``latent_dim=1024`` the parameter counts are
G 52.5 M, D 7.4 M, E^G 19.7 M, E^H 0.16 M (checked by the tests).
``width`` scales every channel count (rounded to a multiple of 8, at least
8, so GroupNorm(8) always applies) for small CPU models.

Axis convention: volumes are ``(B, 1, D, H, W)``; slabs are cut along ``D``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from medgap.errors import ConfigError

__all__ = [
    "Architecture",
    "UpConv3d",
    "CommonGenerator",
    "LowResGenerator",
    "HighResGenerator",
    "Generator",
    "HighResDiscriminator",
    "LowResDiscriminator",
    "Discriminator",
    "HighResEncoder",
    "GlobalEncoder",
    "HAGAN",
]


@dataclass(frozen=True)
class Architecture:
    """Shape of an HA-GAN.

    size: output side S in voxels (power of two, >= 32).
    width: channel multiplier (1.0 = the publication's widths).
    latent_dim: length of z.
    num_classes: 0 for an unconditional model; else the number of labels.
    minibatch_std: both discriminators also see how much their batch varies (the mean standard
    deviation of their last features over the batch; Karras et al. 2018), so a generator whose
    samples are all alike is told apart from a varied real batch. Off in the publication.
    """

    size: int = 256
    width: float = 1.0
    latent_dim: int = 1024
    num_classes: int = 0
    minibatch_std: bool = False

    def __post_init__(self) -> None:
        if self.size < 32 or self.size & (self.size - 1):
            raise ConfigError("size", f"must be a power of two >= 32, got {self.size}")
        if not (0 < self.width <= 4):
            raise ConfigError("width", f"must be in (0, 4], got {self.width}")
        if self.latent_dim < 1:
            raise ConfigError("latent_dim", f"must be >= 1, got {self.latent_dim}")
        if self.num_classes < 0:
            raise ConfigError("num_classes", f"must be >= 0, got {self.num_classes}")

    def ch(self, c: int) -> int:
        """Channel count ``c`` at this width: a multiple of 8, at least 8."""
        return max(8, int(round(c * self.width / 8)) * 8)

    @property
    def feature_channels(self) -> int:
        return self.ch(64)

    @property
    def slab_depth(self) -> int:
        """Depth of a training slab at full resolution (S/8)."""
        return self.size // 8

    @property
    def positions(self) -> int:
        """Number of slab start indices k in {0, 4, ..., 7S/8} (aligned to the feature grid)."""
        return (self.size - self.slab_depth) // 4 + 1

    def to_dict(self) -> dict:
        return asdict(self)


class UpConv3d(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3x3 convolution (padding 1).

    Holds the same parameters as ``Conv3d(c_in, c_out, 3, padding=1)`` but runs
    as one transposed convolution (kernel 4, stride 2, padding 1) whose kernel
    is folded from the 3x3x3 one: per axis, output ``2i`` reads inputs
    ``(i-1, i)`` with taps ``(w[-1], w[0]+w[1])`` and output ``2i+1`` reads
    ``(i, i+1)`` with taps ``(w[-1]+w[0], w[1])``. The result equals
    ``conv3d(interpolate(x, scale_factor=2), w)`` up to float rounding, at
    8 instead of 27 multiply-adds per output voxel and without the 8x larger
    upsampled tensor. Written by hand because no library offers the fold;
    measured 2-8x faster on CPU (and the 1-channel output conv far more).

    With very few output channels (``c_out < 8``: G^H's last layer) oneDNN's
    transposed convolution runs several times below its usual speed, so the same
    fold runs as one ordinary convolution with ``8 c_out`` outputs (kernel 2,
    one output channel group per parity phase of the 2x grid) whose phases are
    then interleaved: same multiply-adds, measured ~3x faster forward and
    ~1.1-1.5x forward+backward for ``c_out = 1`` on this CPU.

    x: (B, c_in, D, H, W) -> (B, c_out, 2D, 2H, 2W).
    Set the class attribute ``folded = False`` to run the literal upsample + conv
    (the benchmark's in-run baseline).
    """

    folded: bool = True
    phase_below: int = 8  # output channel counts below this run the parity-phase form

    # fold[t, k]: weight of 3x3x3 tap k (index 0..2 for offsets -1, 0, +1) in transposed tap t.
    _FOLD = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)
    # phase[p, s, k]: weight of 3x3x3 tap k in tap s of the kernel-2 convolution for output
    # parity p. Output 2i reads padded inputs (i, i+1) = x[i-1], x[i] with (w[-1], w[0]+w[1]);
    # output 2i+1 reads padded inputs (i+1, i+2) with (w[-1]+w[0], w[1]).
    _PHASE = torch.tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], dtype=torch.float32)

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel_size=3, padding=1)

    def folded_weight(self) -> torch.Tensor:
        """(c_in, c_out, 4, 4, 4) transposed-convolution kernel."""
        m = self._FOLD.to(self.conv.weight)
        return torch.einsum("ak,bl,cm,oiklm->ioabc", m, m, m, self.conv.weight)

    def phase_weight(self) -> torch.Tensor:
        """(8 c_out, c_in, 2, 2, 2) kernel; output channel ``8 o + 4 a + 2 b + c`` is phase (a, b, c) of o."""
        p, w = self._PHASE.to(self.conv.weight), self.conv.weight
        return torch.einsum("ask,btl,cum,oiklm->oabcistu", p, p, p, w).reshape(-1, w.shape[1], 2, 2, 2)

    def _phase_forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, D, H, W = x.shape
        co = self.conv.out_channels
        bias = None if self.conv.bias is None else self.conv.bias.repeat_interleave(8)
        c = F.conv3d(x, self.phase_weight(), bias, padding=1).view(B, co, 2, 2, 2, D + 1, H + 1, W + 1)
        # phase (a, b, e) of output voxel (2i+a, 2j+b, 2k+e) sits at c[..., i+a, j+b, k+e]
        y = c.new_empty(B, co, D, 2, H, 2, W, 2)
        for a in (0, 1):
            for b in (0, 1):
                for e in (0, 1):
                    y[:, :, :, a, :, b, :, e] = c[:, :, a, b, e, a : a + D, b : b + H, e : e + W]
        return y.view(B, co, 2 * D, 2 * H, 2 * W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.folded:
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        if self.conv.out_channels < self.phase_below:
            return self._phase_forward(x)
        return F.conv_transpose3d(x, self.folded_weight(), self.conv.bias, stride=2, padding=1)


def _conv_gn_relu(c_in: int, c_out: int, up: bool) -> nn.Sequential:
    conv = UpConv3d(c_in, c_out) if up else nn.Conv3d(c_in, c_out, kernel_size=3, padding=1)
    return nn.Sequential(conv, nn.GroupNorm(8, c_out), nn.ReLU(inplace=True))


class CommonGenerator(nn.Module):
    """G^A: z (B, latent_dim) [+ one-hot label] -> features (B, 64w, S/4, S/4, S/4).

    Linear -> (512w, 4, 4, 4) -> blocks [conv3, GroupNorm(8), ReLU] with channels
    512, 512, 256, 128, 64 (x width); the first ``log2(S/16)`` blocks after the
    first upsample x2. At S=256 blocks run at 4, 8, 16, 32, 64; at S=128 the last
    one stays at 32. Sizes above 256 add 64-channel upsampling blocks.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        chans = [arch.ch(c) for c in (512, 512, 256, 128, 64)]
        n_up = int(math.log2(arch.size // 16))
        while len(chans) < n_up + 1:
            chans.append(arch.ch(64))
        self.c0 = chans[0]
        self.fc = nn.Linear(arch.latent_dim + arch.num_classes, 64 * chans[0])
        blocks = []
        c_prev = chans[0]
        for i, c in enumerate(chans):
            blocks.append(_conv_gn_relu(c_prev, c, up=1 <= i <= n_up))
            c_prev = c
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.arch.num_classes:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, F.one_hot(labels.long(), self.arch.num_classes).to(z)], dim=1)
        h = self.fc(z).view(-1, self.c0, 4, 4, 4)
        return self.blocks(h)


class LowResGenerator(nn.Module):
    """G^L: features (B, 64w, n, n, n) -> low-resolution volume (B, 1, n, n, n) in [-1, 1]."""

    def __init__(self, arch: Architecture):
        super().__init__()
        c, c1, c2 = arch.feature_channels, arch.ch(32), arch.ch(16)
        self.net = nn.Sequential(
            nn.Conv3d(c, c1, 3, padding=1), nn.GroupNorm(8, c1), nn.ReLU(inplace=True),
            nn.Conv3d(c1, c2, 3, padding=1), nn.GroupNorm(8, c2), nn.ReLU(inplace=True),
            nn.Conv3d(c2, 1, 3, padding=1), nn.Tanh(),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class HighResGenerator(nn.Module):
    """G^H: features (B, 64w, d, h, w) -> volume (B, 1, 4d, 4h, 4w) in [-1, 1].

    [upsample x2, conv 64->32, GroupNorm(8), ReLU, upsample x2, conv 32->1, tanh].
    The GroupNorm statistics are taken over the input given: a slab in
    training, the whole volume at inference (see ``medgap.synthesize.slabwise``
    for the same result at bounded memory).
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        c, c1 = arch.feature_channels, arch.ch(32)
        self.up1 = UpConv3d(c, c1)
        self.norm1 = nn.GroupNorm(8, c1)
        self.up2 = UpConv3d(c1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.up1(h)))
        return torch.tanh(self.up2(h))


class Generator(nn.Module):
    """G = (G^A, G^L, G^H).

    ``forward(z, feature_start, labels)`` (training): returns the full-resolution
    slab (B, 1, S/8, S, S) generated from feature slices
    ``[feature_start, feature_start + S/32)`` and the low-resolution volume
    (B, 1, S/4, S/4, S/4). ``generate(z, labels)`` (inference): the whole
    volume (B, 1, S, S, S).
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.common = CommonGenerator(arch)
        self.low = LowResGenerator(arch)
        self.high = HighResGenerator(arch)

    def forward(self, z: torch.Tensor, feature_start: int, labels: torch.Tensor | None = None):
        feats = self.common(z, labels)
        slab = feats[:, :, feature_start : feature_start + self.arch.size // 32]
        return self.high(slab), self.low(feats)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.high(self.common(z, labels))


def _sn_conv(c_in, c_out, k, s, p):
    return spectral_norm(nn.Conv3d(c_in, c_out, kernel_size=k, stride=s, padding=p))


def minibatch_std(h: torch.Tensor) -> torch.Tensor:
    """Append one channel (axis 1): the mean over features of their standard deviation over the batch."""
    # + 1e-8 under the root: identical samples (std 0) must not give an infinite gradient
    std = (h.float().var(dim=0, unbiased=False) + 1e-8).sqrt().mean() if h.shape[0] > 1 else h.new_zeros((), dtype=torch.float32)
    return torch.cat([h, std.to(h.dtype).expand(h.shape[0], 1, *h.shape[2:])], dim=1)


class HighResDiscriminator(nn.Module):
    """D^H: slab (B, 1, S/8, S, S) and slab position -> (logit (B, 1), features (B, 64w)).

    Spectral-normalised strided convs with LeakyReLU(0.2), no normalisation:
    log2(S/32) x [k4 s2 p1] until the depth is 4, 2 x [k(2,4,4) s2 p(0,1,1)]
    to depth 1, [k(1,4,4) s(1,2,2) p(0,1,1)] to 4x4, [k(1,4,4)] to 1x1 (128w
    channels); the position k/(7S/8) is appended, then SN-Linear 64w, SN-Linear 1.
    Channels double per strided layer and end at 512w.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        n_iso = int(math.log2(arch.size // 32))
        n = n_iso + 3
        chans = [arch.ch(512 // 2 ** (n - 1 - i)) for i in range(n)]
        specs = [(4, 2, 1)] * n_iso + [((2, 4, 4), 2, (0, 1, 1))] * 2 + [((1, 4, 4), (1, 2, 2), (0, 1, 1))]
        layers, c_prev = [], 1
        for c, (k, s, p) in zip(chans, specs):
            layers += [_sn_conv(c_prev, c, k, s, p), nn.LeakyReLU(0.2, inplace=True)]
            c_prev = c
        c_last = arch.ch(128)
        layers += [_sn_conv(c_prev, c_last, (1, 4, 4), 1, 0), nn.LeakyReLU(0.2, inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.batch_std = arch.minibatch_std
        self.fc1 = spectral_norm(nn.Linear(c_last + 1 + self.batch_std, arch.ch(64)))
        self.fc2 = spectral_norm(nn.Linear(arch.ch(64), 1))
        self.position_scale = 1.0 / (arch.size - arch.slab_depth)

    def forward(self, slab: torch.Tensor, start: torch.Tensor):
        """start: (B,) full-resolution slab start index k."""
        h = self.convs(slab).flatten(1)
        if self.batch_std:
            h = minibatch_std(h)
        pos = (start.to(h) * self.position_scale).view(-1, 1)
        h = F.leaky_relu(self.fc1(torch.cat([h, pos], dim=1)), 0.2)
        return self.fc2(h), h


class LowResDiscriminator(nn.Module):
    """D^L: low-res volume (B, 1, S/4, S/4, S/4) -> (B, 1 + num_classes) logits.

    log2(S/16) x [SN conv k4 s2 p1, LeakyReLU(0.2)] down to 4^3 (channels end at 256w),
    then an SN conv k4 to 1^3.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        n = int(math.log2(arch.size // 16))
        chans = [arch.ch(256 // 2 ** (n - 1 - i)) for i in range(n)]
        layers, c_prev = [], 1
        for c in chans:
            layers += [_sn_conv(c_prev, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_prev = c
        self.batch_std = arch.minibatch_std
        layers.append(_sn_conv(c_prev + self.batch_std, 1 + arch.num_classes, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        if not self.batch_std:
            return self.net(low).flatten(1)
        return self.net[-1](minibatch_std(self.net[:-1](low))).flatten(1)


class Discriminator(nn.Module):
    """D = (D^H, D^L); output = mean of the two logits.

    forward(slab, low, start) -> (logit (B,), class_logits (B, num_classes) or None).
    Class logits (conditional models, auxiliary-classifier style) are the mean
    of D^H's and D^L's class heads.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.high = HighResDiscriminator(arch)
        self.low = LowResDiscriminator(arch)
        self.high_class = spectral_norm(nn.Linear(arch.ch(64), arch.num_classes)) if arch.num_classes else None

    def forward(self, slab: torch.Tensor, low: torch.Tensor, start: torch.Tensor):
        h_logit, h_feat = self.high(slab, start)
        l_out = self.low(low)
        logit = 0.5 * (h_logit[:, 0] + l_out[:, 0])
        if self.high_class is None:
            return logit, None
        return logit, 0.5 * (self.high_class(h_feat) + l_out[:, 1:])


class HighResEncoder(nn.Module):
    """E^H: slab (B, 1, d, S, S) -> feature slab (B, 64w, d/4, S/4, S/4).

    [conv k4 s2 p1 -> 32w, GN, ReLU] [conv k3 -> 32w, GN, ReLU] [conv k4 s2 p1 -> 64w, GN, ReLU].
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        c1, c = arch.ch(32), arch.feature_channels
        self.net = nn.Sequential(
            nn.Conv3d(1, c1, 4, 2, 1), nn.GroupNorm(8, c1), nn.ReLU(inplace=True),
            nn.Conv3d(c1, c1, 3, 1, 1), nn.GroupNorm(8, c1), nn.ReLU(inplace=True),
            nn.Conv3d(c1, c, 4, 2, 1), nn.GroupNorm(8, c), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GlobalEncoder(nn.Module):
    """E^G: feature volume (B, 64w, S/4, S/4, S/4) -> z (B, latent_dim).

    log2(S/16) x [conv k4 s2 p1, GN, ReLU] down to 4^3 (channels end at 256w),
    then conv k4 to latent_dim x 1^3.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        n = int(math.log2(arch.size // 16))
        chans = [arch.ch(256 // 2 ** (n - 1 - i)) for i in range(n)]
        layers, c_prev = [], arch.feature_channels
        for c in chans:
            layers += [nn.Conv3d(c_prev, c, 4, 2, 1), nn.GroupNorm(8, c), nn.ReLU(inplace=True)]
            c_prev = c
        layers.append(nn.Conv3d(c_prev, arch.latent_dim, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats).flatten(1)


class HAGAN(nn.Module):
    """All four trained networks of HA-GAN under one roof (G, D, E^H, E^G).

    ``encode_features(x)`` runs E^H slab by slab (slabs of S/8, as in training,
    so the GroupNorm statistics match what E^H was trained on);
    ``encode(x) = E^G(encode_features(x))``.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.generator = Generator(arch)
        self.discriminator = Discriminator(arch)
        self.encoder_high = HighResEncoder(arch)
        self.encoder_global = GlobalEncoder(arch)

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        d = self.arch.slab_depth
        return torch.cat([self.encoder_high(x[:, :, i : i + d]) for i in range(0, x.shape[2], d)], dim=2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, S, S, S) in [-1, 1] -> z (B, latent_dim)."""
        return self.encoder_global(self.encode_features(x))


