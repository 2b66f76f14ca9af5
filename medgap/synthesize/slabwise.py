"""Bounded-memory generation: G^H run slab by slab over the feature volume.

Whole-volume inference keeps ``32w x (S/2)^3`` and ``32w x S^3`` activations
alive (2.1 GB per sample at 256^3, 17 GB at 512^3). Here G^H is evaluated on
chunks of the feature volume with the halo each convolution needs, and its
GroupNorm uses statistics of the WHOLE volume (accumulated in float64 over the
chunks), so the output equals ``Generator.generate`` up to float rounding
(tested: max abs difference <= 1e-5).

Receptive field, in feature slices (S/4 grid) along the depth axis: output
rows ``[4i, 4j)`` need first-upconv rows ``[2i-1, 2j+1)``, which need feature
slices ``[i-1, j+1)``. A chunk is therefore computed with one feature slice of
halo on each side; the rows at the chunk edges that saw the convolution's
zero padding instead of real neighbours are cropped away. At the volume
boundary the zero padding is the real one, so nothing is cropped there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medgap.errors import MedgapError
from medgap.synthesize.model import Generator
from medgap.training.runtime import count_parameters

__all__ = ["generate_slabwise", "plan_chunk", "estimate_bytes"]

_F32 = 4
# Python, torch and oneDNN runtime resident before any tensor (measured peak RSS
# of an idle `import torch` process is ~0.3 GB); counted against --max-memory.
RUNTIME_BYTES = 400 * 2**20


def estimate_bytes(generator: Generator, chunk: int, keep_first: bool) -> int:
    """Estimated peak bytes to generate one volume with ``chunk`` feature slices per step.

    keep_first: the first up-convolution's output (32w x (S/2)^3) is kept whole
    (one evaluation of that layer) instead of being recomputed in a second pass.
    """
    arch = generator.arch
    s, n = arch.size, arch.size // 4
    c, c1 = arch.feature_channels, generator.high.norm1.num_channels
    weights = count_parameters(generator) * _F32
    feats = c * n**3 * _F32
    out = s**3 * _F32
    # oneDNN convolutions copy their input and output into blocked layouts, so a conv holds
    # about twice its plain tensors (measured: budgets were overrun by ~2x without this).
    # G^A: the last block's input, blocked input/output, plain output and GroupNorm output.
    common_peak = 5 * feats
    h1_whole = c1 * (2 * n) ** 3 * _F32 if keep_first else 0
    m = chunk + 2
    per_chunk = (
        2 * c * m * n * n * _F32  # feature chunk with halo (+ blocked copy)
        + 4 * c1 * (2 * m) * (2 * n) ** 2 * _F32  # first up-conv output (blocked, plain), normalised, reordered
        + 4 * (4 * m) * s * s * _F32  # second up-conv: phase outputs (blocked, plain), interleaved, tanh
    )
    return RUNTIME_BYTES + weights + max(common_peak, feats + out + h1_whole + per_chunk)


def plan_chunk(generator: Generator, max_memory_bytes: float | None) -> tuple[int, bool]:
    """Largest chunk (feature slices per step) and keep-first flag fitting in the budget.

    Prefers keeping the first up-conv output whole (faster: no second pass).
    Raises MedgapError when even one slice per step does not fit.
    """
    n = generator.arch.size // 4
    if max_memory_bytes is None:
        return n, True
    for keep in (True, False):
        best = 0
        for chunk in range(1, n + 1):
            if estimate_bytes(generator, chunk, keep) <= max_memory_bytes:
                best = chunk
        if best:
            return best, keep
    need = estimate_bytes(generator, 1, False)
    raise MedgapError(
        f"--max-memory {max_memory_bytes / 2**30:.2f} GB is too small to generate {generator.arch.size}^3 "
        f"volumes; at least {math.ceil(need / 2**27) / 8:.2f} GB is needed"
    )


def _chunks(n: int, chunk: int):
    for i in range(0, n, chunk):
        yield i, min(i + chunk, n)


@torch.no_grad()
def generate_slabwise(
    generator: Generator,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    max_memory_bytes: float | None = None,
    chunk: int | None = None,
    keep_first: bool | None = None,
) -> torch.Tensor:
    """Generate whole volumes at bounded memory.

    z: (B, latent_dim); labels: (B,) int or None. Returns (B, 1, S, S, S) float32 on CPU.
    chunk/keep_first override the plan made from ``max_memory_bytes``.
    Samples are generated one at a time.
    """
    planned_chunk, planned_keep = plan_chunk(generator, max_memory_bytes)
    chunk = planned_chunk if chunk is None else chunk
    keep_first = planned_keep if keep_first is None else keep_first
    arch = generator.arch
    n = arch.size // 4
    high = generator.high
    norm = high.norm1
    groups = norm.num_groups
    out = torch.empty((z.shape[0], 1, arch.size, arch.size, arch.size), dtype=torch.float32)
    for b in range(z.shape[0]):
        lab = None if labels is None else labels[b : b + 1]
        feats = generator.common(z[b : b + 1], lab)  # (1, C, n, n, n)

        def first(lo: int, hi: int) -> torch.Tensor:
            return high.up1(feats[:, :, lo:hi])  # rows [2lo, 2hi) of the half-res grid

        # Pass 1: GroupNorm statistics over the whole volume (and the layer's output, if kept).
        c1 = norm.num_channels
        h1_all = torch.empty((1, c1, 2 * n, 2 * n, 2 * n), dtype=feats.dtype, device=feats.device) if keep_first else None
        total = torch.zeros(groups, dtype=torch.float64, device=feats.device)
        total_sq = torch.zeros(groups, dtype=torch.float64, device=feats.device)
        for i, j in _chunks(n, chunk):
            lo, hi = max(i - 1, 0), min(j + 1, n)
            h = first(lo, hi)[:, :, 2 * (i - lo) : 2 * (j - lo)]  # exact rows [2i, 2j)
            hg = h.reshape(groups, -1).double()
            total += hg.sum(dim=1)
            total_sq += (hg * hg).sum(dim=1)
            if h1_all is not None:
                h1_all[:, :, 2 * i : 2 * j] = h
            del h, hg
        count = (c1 // groups) * (2 * n) ** 3
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0)
        inv_std = torch.rsqrt(var + norm.eps)
        # Per-channel affine of the normalisation: y = h * scale + shift.
        per = c1 // groups
        scale = (inv_std.repeat_interleave(per).to(feats.dtype) * norm.weight).view(1, c1, 1, 1, 1)
        shift = (norm.bias - (mean * inv_std).repeat_interleave(per).to(feats.dtype) * norm.weight).view(1, c1, 1, 1, 1)

        # Pass 2: normalise, second up-conv, crop the exact rows.
        for i, j in _chunks(n, chunk):
            r0, r1 = max(2 * i - 1, 0), min(2 * j + 1, 2 * n)  # first-layer rows needed
            if h1_all is not None:
                h = h1_all[:, :, r0:r1]
            else:
                lo, hi = max(i - 1, 0), min(j + 1, n)
                h = first(lo, hi)[:, :, r0 - 2 * lo : r1 - 2 * lo]
            h = F.relu(h * scale + shift)
            y = torch.tanh(high.up2(h))  # rows [2 r0, 2 r1) of the full grid
            out[b : b + 1, :, 4 * i : 4 * j] = y[:, :, 4 * i - 2 * r0 : 4 * j - 2 * r0].float().cpu()
            del h, y
        del feats, h1_all
    return out
