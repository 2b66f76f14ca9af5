"""The default harmonisation: standardise, then let a target-trained network fix what is left.

Measured on held-out real subjects (docs/harmonize.md), three facts shape it:

1. A volume-level histogram standardisation (intensity-normalization's Nyul) undoes a
   global monotone change (gamma, exp, log) almost exactly -- better than any network
   here, and better than per-slice histogram matching.
2. It cannot undo what is not a global monotone map: a bias field, white matter darker
   than grey matter, lower resolution and noise. A network that knows the target's
   anatomy-to-intensity relation can: a 2D U-Net (MONAI) trained, on target slices only,
   to map slices pushed through *random* scanner-like changes (random intensity curves,
   monotone or not; smooth bias fields; lower resolution; Rician noise) *and then
   standardised to their own histogram* back to the untouched slice. It so learns to fix
   only what standardisation leaves behind. Average-brain targets are smoother than any
   subject, so the clean targets are randomly sharpened, or the net learns to blur.
3. The target flow's likelihood is no judge of this: it gives fewer bits/dim to
   bias-field, darker and smoothed images than to the untouched target. The network's
   own correction is a good one: on an image already in the target look it changes
   little (about the level it changes the target's own slices, stored at training as
   ``r0``); on a bias field or a contrast inversion it changes 3-8x more.

So: ``base = Nyul(source)``; ``estimate = net(base)``; ``r`` = the mean absolute change
the net makes over the volume's foreground; the result is ``base + w (estimate - base)``
with ``w`` rising from 0 at ``r = gate_low * r0`` to 1 at ``r = gate_high * r0``.
``HarmonizeConfig.restore`` holds the settings; ``restore.steps = 0`` trains no net.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

__all__ = ["build_restoration_net", "context_index", "train_restoration", "restore_slices", "correction_size",
           "gated_restore"]


def correction_size(net: nn.Module, xs: Tensor, threshold: float = 0.05, batch: int = 64,
                    context: int = 0) -> tuple[Tensor, float]:
    """(the net's estimate for ``xs``, mean absolute change it makes over the foreground)."""
    est = restore_slices(net, xs, threshold, batch, context)
    return est, _mean_change(est, xs, threshold)


def _mean_change(est: Tensor, xs: Tensor, threshold: float) -> float:
    """Mean absolute difference of ``est`` and ``xs`` over the foreground of ``xs`` (0 if none)."""
    fg = xs > threshold
    return float((est - xs).abs()[fg].mean()) if bool(fg.any()) else 0.0


def gated_restore(net: nn.Module, base: Tensor, r0: float, gate_low: float = 2.0, gate_high: float = 4.0,
                  threshold: float = 0.05, batch: int = 64, context: int = 0,
                  doubt: tuple[float, float] | None = None) -> tuple[Tensor, float, float | None]:
    """``base + w (net(base) - base)`` for standardised slices ``base`` of one volume (in slice
    order); returns (result, w, doubt). ``w`` is 0 while the net's correction is at most ``gate_low``
    times the target's own ``r0`` and 1 from ``gate_high`` times on (linear between).

    ``doubt = (low, high)``: the net is also asked about the left-right mirrored volume; where its two
    answers disagree (mean absolute difference over the foreground, in units of ``r0``) by more
    than ``low``, ``w`` falls linearly to 0 at ``high``: an input unlike anything the net trained on
    (residual dura, ghosting) gets inconsistent corrections, and the result stays Nyul's. The
    measured disagreement is returned (None without ``doubt``)."""
    est, size = correction_size(net, base, threshold, batch, context)
    lo, hi = gate_low * r0, max(gate_high * r0, gate_low * r0 + 1e-6)
    w = min(1.0, max(0.0, (size - lo) / (hi - lo)))
    disagreement = None
    if doubt is not None and w > 0:
        mirrored = restore_slices(net, base.flip(-1), threshold, batch, context).flip(-1)
        fg = base > threshold
        disagreement = float((mirrored - est).abs()[fg].mean()) / max(r0, 1e-8) if bool(fg.any()) else 0.0
        d_lo, d_hi = doubt
        w *= min(1.0, max(0.0, (d_hi - disagreement) / max(d_hi - d_lo, 1e-6)))
    out = base + w * (est - base)
    return torch.where(base > threshold, out.clamp(0, 1), base), w, disagreement


def build_restoration_net(channels: tuple[int, ...] = (16, 32, 64, 128), res_units: int = 1,
                          context: int = 0) -> nn.Module:
    """MONAI's 2D U-Net: the slice and ``context`` neighbours on each side in, one channel out
    (residual: the output is added to the slice)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=2 * context + 1, out_channels=1, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=res_units)


def context_index(counts: list[int], context: int) -> Tensor:
    """Rows of the neighbours of every slice, ``(N, 2 context + 1)``, for slices stored volume
    after volume (``counts`` slices each, in slice order); at a volume's ends the nearest slice
    of the same volume repeats."""
    rows, start = [], 0
    offsets = torch.arange(-context, context + 1)
    for n in counts:
        i = torch.arange(n)[:, None] + offsets
        rows.append(start + i.clamp(0, n - 1))
        start += n
    return torch.cat(rows) if rows else torch.zeros(0, 2 * context + 1, dtype=torch.long)


def _correct(net: nn.Module, xc: Tensor, context: int, threshold: float) -> Tensor:
    """The net's estimate of the middle slice of context stacks ``xc (B, 2k+1, H, W)``."""
    dev = next(net.parameters()).device
    x = xc[:, context:context + 1]
    y = (x.to(dev) + net(xc.to(dev))).clamp(0, 1).to(x.device)
    return torch.where(x > threshold, y, x)


def restore_slices(net: nn.Module, xs: Tensor, threshold: float = 0.05, batch: int = 64,
                   context: int = 0) -> Tensor:
    """Apply the trained net to source slices ``xs (N, 1, H, W)`` in [0, 1] (the slices of one
    volume in order when ``context`` > 0); the background (``xs <= threshold``) is unchanged."""
    net.eval()
    out = []
    rows = context_index([len(xs)], context)  # neighbours from the whole stack: batch borders change nothing
    with torch.inference_mode():
        for start in range(0, len(xs), batch):
            out.append(_correct(net, xs[rows[start:start + batch], 0], context, threshold))
    return torch.cat(out) if out else xs.clone()


def train_restoration(slices: Tensor, cfg, augment_cfg, seed: int = 0, device: str | torch.device = "cpu",
                      progress: bool = False, log=None, counts: list[int] | None = None,
                      threshold: float = 0.05, change=None) -> tuple[nn.Module, dict]:
    """Train :func:`build_restoration_net` on target ``slices (N, 1, H, W)``.

    ``cfg``: :class:`~medgap.harmonize.config.RestoreConfig`; ``augment_cfg``: the data
    config whose geometric augmentation is applied first; ``counts``: slices per volume,
    stored volume after volume in slice order (needed for ``cfg.context`` > 0; default: one
    volume). A slice and its neighbours get the same geometry and the same scanner change
    (one scanner), their own noise. Batches are seeded by (seed, step). L1 loss inside the
    target's foreground (intensities above ``threshold``, ``harmonize.foreground_threshold``).
    ``change(clean, generator) -> source``: the scanner change of each training pair (default: the
    random family of :func:`~medgap.harmonize.augment.random_scanner_change`; one fixed change
    gives the supervised model of bench_harmonize_supervised). Returns (net in eval mode, summary).
    """
    from medgap.harmonize.augment import (augment, match_own_histogram, random_nonbrain_tissue,
                                          random_scanner_change, random_sharpen)
    from medgap.training.runtime import check_finite_loss, track
    from medgap.training.schedule import warmup_cosine

    torch.manual_seed(seed)
    k = cfg.context
    net = build_restoration_net(tuple(cfg.channels), cfg.res_units, k).to(device)
    optim = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: warmup_cosine(s, cfg.steps))
    n = len(slices)
    neighbours = context_index(counts or [n], k)
    t0, ema = time.perf_counter(), None
    net.train()
    for step in track(range(cfg.steps), description="train restoration net", disable=not progress):
        g = torch.Generator().manual_seed(seed * 1_000_003 + 7 + step)
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        clean = augment(slices[neighbours[idx], 0], augment_cfg, g)
        if cfg.sharpen > 0:
            clean = random_sharpen(clean, g, cfg.sharpen, threshold=threshold)
        if change is None:
            source = random_scanner_change(clean, g, threshold, bias_strength=cfg.bias_strength,
                                           max_noise=cfg.max_noise)
        else:
            source = change(clean, g)
        added = None
        if cfg.nonbrain_p > 0 and change is None:
            source, added = random_nonbrain_tissue(source, g, cfg.nonbrain_p, threshold)
        if cfg.standardize_inputs:
            source = match_own_histogram(source, clean, threshold, exclude=added)
        clean, source = clean[:, k:k + 1].to(device), source.to(device)
        middle = source[:, k:k + 1]
        if added is not None:  # where non-brain tissue was added, the target is the input itself: leave it alone
            clean = torch.where(added[:, k:k + 1].to(device), middle, clean)
        fg = (clean > threshold) | (middle > threshold)
        pred = middle + net(source)
        loss = ((pred - clean).abs() * fg).sum() / fg.sum().clamp_min(1)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        value = float(loss.detach())
        check_finite_loss(value, step + 1, "restore.lr")
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if log is not None and ((step + 1) % 50 == 0 or step + 1 == cfg.steps):
            log(step + 1, restore_l1=ema)
    net.eval()
    # the size of the net's correction on the target's own slices: the gate's unit (r0)
    probe = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:256]
    with torch.inference_mode():
        xc = slices[neighbours[probe], 0]
        est = torch.cat([_correct(net, xc[i:i + 64], k, threshold) for i in range(0, len(xc), 64)])
    r0 = _mean_change(est, xc[:, k:k + 1], threshold)
    return net, {"steps": cfg.steps, "final_l1": ema, "target_correction": r0,
                 "seconds": round(time.perf_counter() - t0, 1)}
