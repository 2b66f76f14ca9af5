"""Conditional invertible networks for unsupervised sim-to-real transfer (FrEIA 0.2 blocks).

One network f(x; c) maps both domains into a shared latent space; the condition c holds the domain
code D (and in the ``domain+label`` variant soft one-hot labels Y). Transfer sim -> real is

    z = f(x_sim; c_sim),   x_sim->real = f^-1(z; c_real),

so cycle consistency holds exactly by construction.

- ``SpectralCINN`` (pixel level, HSI): x (B, C) spectra; ``n_blocks`` AllInOneBlocks, the first
  ``n_conditional`` conditional, subnet Linear(., hidden)-ReLU-Linear(hidden, .).
- ``ImageCINN`` (image level, PAT): x (B, C, H, W); multi-scale, Haar downsampling between scales,
  conv subnets; the domain code is broadcast as a map at every scale, the segmentation only at the
  finest scale.

Domain code: sim = [1 - n, n], real = [n', 1 - n'] with n ~ U(0, domain_noise) in training. Soft
labels: ((y == k) + U(0, 1) * label_noise), L1-normalised. ``apply`` (``stochastic=False``) uses the
*expected* value of both noises instead of a draw: deterministic, and inside the training distribution.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import FrEIA.framework as Ff
import FrEIA.modules as Fm

from medgap.training.precision import AutocastSequential

__all__ = ["SIM", "REAL", "SpectralCINN", "ImageCINN", "domain_code", "soft_labels"]

SIM, REAL = 0, 1


def domain_code(shape: Sequence[int], domain: int | torch.Tensor, noise: float, stochastic: bool,
                device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Domain code (B, 2, *spatial): sim = [1-n, n], real = [n, 1-n]; n ~ U(0, noise) or its mean.

    ``domain`` is SIM/REAL for the whole batch or a (B,) tensor of 0/1 per sample.
    """
    shape = tuple(shape)
    if stochastic:
        n = torch.rand((shape[0], 1, *shape[2:]), device=device, generator=generator) * noise
    else:
        n = torch.full((shape[0], 1, *shape[2:]), 0.5 * noise, device=device)
    code = torch.cat([1.0 - n, n], dim=1)
    if isinstance(domain, int):
        return code if domain == SIM else code.flip(1)
    # one domain per sample: lets both domains share one pass through the network
    is_real = domain.to(device=code.device, dtype=torch.bool).view(-1, *([1] * (len(shape) - 1)))
    return torch.where(is_real, code.flip(1), code)


def soft_labels(labels: torch.Tensor, n_classes: int, noise: float, stochastic: bool,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Soft one-hot labels: (B,) -> (B, K) or (B, H, W) -> (B, K, H, W), rows sum to 1."""
    onehot = nn.functional.one_hot(labels.long(), n_classes).to(torch.float32)
    onehot = onehot.movedim(-1, 1)
    if stochastic:
        onehot = onehot + torch.rand(onehot.shape, device=onehot.device, generator=generator) * noise
    else:
        onehot = onehot + 0.5 * noise
    return onehot / onehot.sum(dim=1, keepdim=True)


class PermutedAllInOneBlock(Fm.AllInOneBlock):
    """FrEIA 0.2's AllInOneBlock with its fixed hard permutation applied by indexing.

    FrEIA multiplies by the (C, C) permutation matrix (F.linear / 1x1 conv), which costs C^2 flops per
    sample and pass -- 11 % of the paper HSI network's arithmetic. ``index_select`` gives the identical
    result several times faster (plain ``x[:, idx]`` indexing is slow on CPU).
    The matrices stay registered as (frozen) parameters, so parameter counts and saved weights are
    exactly FrEIA's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        w = self.w_perm.detach().reshape(self.in_channels, self.in_channels)
        # F.linear(x, W)[:, i] = x[:, j] with W[i, j] = 1; the inverse uses W^T
        self.register_buffer("perm_idx", w.argmax(dim=1), persistent=False)
        self.register_buffer("perm_inv_idx", w.argmax(dim=0), persistent=False)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh_index()  # loaded weights bring their own permutation

    def _refresh_index(self) -> None:
        w = self.w_perm.detach().reshape(self.in_channels, self.in_channels)
        self.perm_idx.copy_(w.argmax(dim=1))
        self.perm_inv_idx.copy_(w.argmax(dim=0))

    def _permute(self, x, rev=False):
        scale = self.global_scale_activation(self.global_scale)
        perm_log_jac = torch.sum(torch.log(scale))
        if rev:
            return (torch.index_select(x, 1, self.perm_inv_idx) - self.global_offset) / scale, perm_log_jac
        return torch.index_select(x * scale + self.global_offset, 1, self.perm_idx), perm_log_jac


def _block_kwargs(clamp: float, affine_init: float) -> dict:
    return dict(affine_clamping=clamp, gin_block=False, global_affine_init=affine_init,
                global_affine_type="SOFTPLUS", permute_soft=False, learned_householder_permutation=0,
                reverse_permutation=False)


class _CINNBase(nn.Module):
    """Shared condition handling. ``n_classes == 0`` means the ``domain`` condition only."""

    n_classes: int
    domain_noise: float
    label_noise: float

    def _conditions(self, x: torch.Tensor, domain: int, labels: torch.Tensor | None, stochastic: bool,
                    generator: torch.Generator | None) -> list[torch.Tensor]:
        raise NotImplementedError

    def encode(self, x: torch.Tensor, domain: int | torch.Tensor, labels: torch.Tensor | None = None, *,
               stochastic: bool = False, generator: torch.Generator | None = None):
        """x -> (z, log|det J|) under the condition of ``domain`` (SIM or REAL).

        z is (B, C) for spectra and (B, C * 4**(S-1), H / 2**(S-1), W / 2**(S-1)) for images.
        """
        return self.inn(x, c=self._conditions(x, domain, labels, stochastic, generator))

    def decode(self, z: torch.Tensor, domain: int | torch.Tensor, labels: torch.Tensor | None = None, *,
               stochastic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """z -> x in ``domain``. z is cloned first: FrEIA's Haar inverse scales its input in place."""
        x, _ = self.inn(z.clone(), c=self._conditions(z, domain, labels, stochastic, generator), rev=True, jac=False)
        return x

    def transfer(self, x: torch.Tensor, source: int | torch.Tensor, labels: torch.Tensor | None = None, *,
                 stochastic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Map x from domain ``source`` into the other domain, keeping its labels."""
        z, _ = self.encode(x, source, labels, stochastic=stochastic, generator=generator)
        return self.decode(z, 1 - source, labels, stochastic=stochastic, generator=generator)

    def random_labels(self, shape: Sequence[int], device=None, generator=None,
                      prior: torch.Tensor | None = None) -> torch.Tensor:
        """Labels for unlabelled (real) samples during training: drawn from ``prior`` (K,) or uniform."""
        if prior is None:
            return torch.randint(0, self.n_classes, tuple(shape), device=device, generator=generator)
        idx = torch.multinomial(prior.to(device), int(np.prod(shape)), replacement=True, generator=generator)
        return idx.reshape(tuple(shape))


class SpectralCINN(_CINNBase):
    """Pixel-level cINN for spectra x (B, C). Condition (B, 2 + n_classes).

    Paper configuration: C=100, 40 blocks, first 30 conditional, hidden 512, 10 classes ->
    3,288,800 trainable parameters (4,088,800 with FrEIA's fixed permutation matrices).
    """

    def __init__(self, n_channels: int = 100, n_classes: int = 0, n_blocks: int = 40, n_conditional: int = 30,
                 hidden: int = 512, clamp: float = 1.0, affine_init: float = 0.7,
                 domain_noise: float = 0.1, label_noise: float = 0.5, indexed_permutation: bool = True):
        super().__init__()
        if not 0 <= n_conditional <= n_blocks:
            raise ValueError("n_conditional must lie in [0, n_blocks]")
        self.n_channels, self.n_classes = n_channels, n_classes
        self.domain_noise, self.label_noise = domain_noise, label_noise
        cond_dim = 2 + n_classes

        def subnet(c_in: int, c_out: int) -> nn.Module:
            return _zero_last(AutocastSequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c_out)))

        self.inn = Ff.SequenceINN(n_channels)
        for k in range(n_blocks):
            conditional = k < n_conditional
            self.inn.append(PermutedAllInOneBlock if indexed_permutation else Fm.AllInOneBlock, cond=0 if conditional else None,
                            cond_shape=(cond_dim,) if conditional else None,
                            subnet_constructor=subnet, **_block_kwargs(clamp, affine_init))

    def compile_blocks(self) -> None:
        """torch.compile every coupling block (training speed-up on CPU; same arithmetic).

        Inductor fuses each block's chain of elementwise operations (split, concatenation, soft
        clamp, exp, affine coupling, global scaling, permutation) and their gradients into a few
        loops; the matrix products stay oneDNN/MKL calls. All blocks share one code object, so one
        graph per kind of call (forward/inverse, with/without condition) serves all 40 blocks.
        Compiling fails softly: a block whose compilation raises runs eagerly from then on.
        """
        for block in self.inn.module_list:
            block.forward = _compiled_or_eager(block.forward)

    def _conditions(self, x, domain, labels, stochastic, generator):
        code = domain_code((x.shape[0], 2), domain, self.domain_noise, stochastic, x.device, generator)
        if self.n_classes == 0:
            return [code]
        if labels is None:
            raise ValueError("this network is conditioned on labels: pass labels")
        return [torch.cat([code, soft_labels(labels, self.n_classes, self.label_noise, stochastic, generator)], 1)]


def _compiled_or_eager(fn):
    compiled = torch.compile(fn)
    state = {"ok": True}

    def call(*args, **kwargs):
        if state["ok"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # no C compiler, unsupported platform, ...: stay correct, run eagerly
                import warnings
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); running eagerly", stacklevel=2)
                state["ok"] = False
        return fn(*args, **kwargs)
    return call


def _zero_last(net: AutocastSequential) -> AutocastSequential:
    # every coupling starts as the identity (Glow's zero initialisation): the untrained network is a
    # fixed permutation with global scaling, so training starts from a well-conditioned map
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class _ConvSubnet(AutocastSequential):
    """Conv coupling subnet that runs channels-last (NHWC), oneDNN's native layout for convolutions.

    Measured on the paper PAT generator step (2 cores, torch 2.13): 1.14x with ``--precision bf16``,
    1.05x in float32. The output keeps that layout; FrEIA's coupling arithmetic does not mind.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def _conv_net(c_in: int, c_out: int, width: int) -> nn.Module:
    return _zero_last(_ConvSubnet(nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, c_out, 3, padding=1)))


def _conv_subnet(width: int):
    return lambda c_in, c_out: _conv_net(c_in, c_out, width)


def _adaptive_conv_subnet(c_in: int, c_out: int) -> nn.Module:
    # width grows with the input (x4 for >= 256 channels, else x8), as in the published network
    return _conv_net(c_in, c_out, (4 if c_in >= 256 else 8) * c_in)


class ImageCINN(_CINNBase):
    """Image-level multi-scale cINN for x (B, C, H, W), H and W divisible by 2**(n_scales-1).

    Scale s has ``blocks_per_scale[s]`` conditional AllInOneBlocks; Haar downsampling (x4 channels,
    /2 size) precedes every scale but the first. Subnets: three 3x3 convs of ``width`` channels, or
    the input-proportional width at the scales in ``adaptive_scales``. Conditions: scale 0 gets
    domain code + soft segmentation (2 + n_classes channels), other scales the domain code (2).
    Paper configuration (16x128x256, [4,2,1,1,2], width 256, adaptive scales 2 and 3, 7 classes):
    113,685,088 trainable parameters, 183,062,368 with FrEIA's fixed permutation/Haar weights.
    """

    def __init__(self, n_channels: int = 16, image_shape: tuple[int, int] = (128, 256), n_classes: int = 0,
                 blocks_per_scale: Sequence[int] = (4, 2, 1, 1, 2), width: int = 256,
                 adaptive_scales: Sequence[int] = (2, 3), clamp: float = 1.0, affine_init: float = 0.7,
                 domain_noise: float = 0.1, label_noise: float = 0.2, indexed_permutation: bool = True):
        super().__init__()
        h, w = (int(s) for s in image_shape)
        factor = 2 ** (len(blocks_per_scale) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image size {h}x{w} must be divisible by {factor} for {len(blocks_per_scale)} scales")
        self.n_channels, self.image_shape, self.n_classes = n_channels, (h, w), n_classes
        self.domain_noise, self.label_noise = domain_noise, label_noise
        self.n_scales = len(blocks_per_scale)
        self.inn = Ff.SequenceINN(n_channels, h, w)
        dims = [n_channels, h, w]
        for s, n_blocks in enumerate(blocks_per_scale):
            if s > 0:
                self.inn.append(Fm.HaarDownsampling)
                dims = [dims[0] * 4, dims[1] // 2, dims[2] // 2]
            subnet = _adaptive_conv_subnet if s in adaptive_scales else _conv_subnet(width)
            cond_ch = 2 + n_classes if s == 0 else 2
            for _ in range(n_blocks):
                self.inn.append(PermutedAllInOneBlock if indexed_permutation else Fm.AllInOneBlock, cond=s, cond_shape=(cond_ch, dims[1], dims[2]),
                                subnet_constructor=subnet, **_block_kwargs(clamp, affine_init))

    def _conditions(self, x, domain, labels, stochastic, generator):
        b, (h, w) = x.shape[0], self.image_shape
        conds = []
        for s in range(self.n_scales):
            hs, ws = h // 2**s, w // 2**s
            code = domain_code((b, 2, hs, ws), domain, self.domain_noise, stochastic, x.device, generator)
            if s == 0 and self.n_classes:
                if labels is None:
                    raise ValueError("this network is conditioned on segmentations: pass labels (B, H, W)")
                code = torch.cat([code, soft_labels(labels, self.n_classes, self.label_noise, stochastic, generator)], 1)
            conds.append(code)
        return conds
