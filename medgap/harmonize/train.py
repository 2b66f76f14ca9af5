"""Train the target-domain flow on axial slices of target NIfTI volumes.

Runs on CPU, CUDA and under ``torchrun`` (DDP: the configured batch is the
global batch, each rank takes its share). Batches and augmentation are drawn
from a generator seeded by (seed, step), so a resumed run sees the same data
as an uninterrupted one. Checkpoints every ``train.checkpoint_every`` steps.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medgap.errors import InputError
from medgap.harmonize.augment import augment
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.data import SliceStack, load_for_harmonize, prepare_volume, slices_like
from medgap.harmonize.model import SliceFlow
from medgap.modelio import check_output_folder, save_model
from medgap.training.contract import TrainResult, checkpoints, make_run
from medgap.training.rundir import RunFolder, fingerprint_arrays, without
from medgap.training.distributed import setup_distributed
from medgap.training.precision import set_precision
from medgap.training.schedule import warmup_cosine
from medgap.training.runtime import MetricLogger, check_finite_loss, seed_everything, track

__all__ = ["TrainingSet", "load_training_set", "augment", "train", "fit_statistics"]

METHOD = "harmonize"
ICBM_NAME = "ICBM152 2009a T1 (nilearn)"


@dataclass
class TrainingSet:
    """Target slices (N, 1, H, W) in [0, 1], their masks and relative positions (N,)."""

    slices: torch.Tensor
    masks: torch.Tensor
    position: torch.Tensor
    sources: list[str] = field(default_factory=list)
    stacks: list[SliceStack] = field(default_factory=list)
    wm: torch.Tensor | None = None  # (N, 1, H, W) bool white-matter labels (bundled ICBM152 only)
    heldout: dict[str, torch.Tensor] | None = None  # held-out slices for evaluation (same fields)
    counts: list[int] = field(default_factory=list)  # training slices per source, in order


def _icbm_default(resolution_mm: float = 1.0):
    from medgap.data.sample import load_icbm152

    brain = load_icbm152(resolution_mm)
    return brain.t1, brain.mask.data > 0.5, brain


def load_training_set(cfg: HarmonizeConfig, targets: list[str | Path] | None = None,
                      masks: list[str | Path] | None = None) -> TrainingSet:
    """Slices of every target volume (default: the bundled ICBM152 T1 with its brain mask).

    With ``data.holdout_every = k > 0`` every k-th slice of each volume is kept out
    of ``slices`` and returned in ``heldout`` (with its WM label when the target is
    the bundled ICBM152).
    """
    cfg.check()
    size = tuple(cfg.flow.image_size)
    items = []
    if not targets and cfg.data.cohort == "icbm152":
        vol, mask, brain = _icbm_default()
        items.append((ICBM_NAME, vol, mask, brain.wm.data))
    elif not targets:
        from medgap.data.cohort import load_cohort

        for b in load_cohort():
            wm = _icbm_default()[2].wm.data if b.name == "icbm2009a" else None
            items.append((f"{b.name} (real T1 cohort)", b.t1, b.mask, wm))
    else:
        if masks and len(masks) != len(targets):
            raise InputError(masks[0], f"got {len(masks)} masks for {len(targets)} target volumes")
        seen: dict[Path, str] = {}
        for path in targets:
            real = Path(path).resolve()
            if real in seen:
                raise InputError(path, f"the same target volume as {seen[real]}: give each target once")
            seen[real] = str(path)
        for i, path in enumerate(targets):
            vol, mask = load_for_harmonize(path, masks[i] if masks else None)
            items.append((str(path), vol, mask, None))
    out: dict[str, list] = {"slices": [], "masks": [], "position": [], "wm": []}
    held: dict[str, list] = {"slices": [], "masks": [], "position": [], "wm": []}
    stacks = []
    d = cfg.data
    for name, vol, mask, wm in items:
        stack = prepare_volume(vol.data, vol.affine, size, mask=mask, normalization=d.normalization,
                               percentiles=d.percentiles, min_foreground=d.min_foreground, path=vol.path)
        stacks.append(stack)
        wm_slices = slices_like(stack, wm) > 0.5 if wm is not None else None
        sel = np.ones(len(stack), bool)
        if d.holdout_every > 0:
            sel[::d.holdout_every] = False
        for target, keep in ((out, sel), (held, ~sel)):
            target["slices"].append(stack.slices[keep])
            target["masks"].append(stack.masks[keep])
            target["position"].append(stack.position[keep])
            if wm_slices is not None:
                target["wm"].append(wm_slices[keep])
    slices = torch.from_numpy(np.concatenate(out["slices"]))
    if len(slices) < 2:
        raise InputError(targets[0] if targets else None, "fewer than 2 usable target slices")
    heldout = None
    if d.holdout_every > 0 and sum(len(s) for s in held["slices"]):
        heldout = {k: torch.from_numpy(np.concatenate(v)) for k, v in held.items() if v}
    wm = torch.from_numpy(np.concatenate(out["wm"])) if out["wm"] and len(out["wm"]) == len(items) else None
    # (a cohort with labels for only some brains has none; evaluate loads the labelled ICBM152 itself)
    return TrainingSet(slices, torch.from_numpy(np.concatenate(out["masks"])),
                       torch.from_numpy(np.concatenate(out["position"])), [n for n, *_ in items], stacks, wm,
                       heldout, [len(v) for v in out["slices"]])


def fit_statistics(model: SliceFlow, data: TrainingSet, threshold: float = 0.05) -> None:
    """Templates (mean slice per position bin) and foreground quantiles per bin, into the model's buffers."""
    t, q = model.templates.shape[0], model.quantiles.shape[1]
    bins = (data.position.clamp(0, 1) * t).long().clamp_max(t - 1)
    levels = torch.linspace(0, 1, q)
    centres = (torch.arange(t) + 0.5) / t
    for b in range(t):
        sel = bins == b
        if not sel.any():  # no slice at this position: use the nearest ones
            dist = (data.position - centres[b]).abs()
            sel = dist <= dist.min() + 1e-6
        group = data.slices[sel]
        model.templates[b] = group.mean(dim=0)
        vals = group[group > threshold]
        if vals.numel() > 1:
            model.quantiles[b] = torch.quantile(vals[torch.randperm(vals.numel(), generator=torch.Generator()
                                                                   .manual_seed(b))[:1_000_000]], levels)


def _batch(data: TrainingSet, cfg: HarmonizeConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step`` and its dequantisation noise (identical on every rank)."""
    g = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)
    n, bsz = len(data.slices), cfg.train.batch_size
    idx = torch.randperm(n, generator=g)[:bsz] if bsz <= n else torch.randint(n, (bsz,), generator=g)
    x = augment(data.slices[idx], cfg.data, g)
    return x, torch.rand(x.shape, generator=g)


def train(cfg: HarmonizeConfig, data: TrainingSet | None, out: str | Path, *, device: str = "auto",
          resume: bool = True, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train the target flow (and the restoration net) on ``data`` and write the model folder ``out``.

    The trainer contract of :mod:`medgap.training.contract`: ``data`` is a :class:`TrainingSet` from
    :func:`load_training_set` (None: the default target cohort); checkpoints and ``metrics.csv``
    go to the run folder ``OUT.run/``, which a rerun resumes only when settings and data are
    those of that run. An existing model folder is replaced only with ``overwrite``; any other
    existing non-empty folder is refused. ``metrics`` of the result hold the summary (final
    bits/dim, slices, the restoration net's losses).
    """
    out = Path(out)
    check_output_folder(out, METHOD, overwrite=overwrite)
    if cfg.restore.nonbrain_p > 0 and cfg.restore.doubt is not None:
        warnings.warn("restore.nonbrain_p > 0 with the doubt check on: its thresholds were chosen for nets trained "
                      "without non-brain tissue and shut such a net on WM darker than GM; set restore.doubt=null "
                      "(bench_harmonize_out_of_family)", stacklevel=2)
    ctx = setup_distributed(device)
    try:
        data = data if data is not None else load_training_set(cfg)
        settings = without(cfg.to_dict(), "train.steps", "train.checkpoint_every", "train.log_every", "harmonize")
        with make_run(out, METHOD, settings, fingerprint_arrays([data.slices, data.masks, data.position]),
                      resume=resume, ctx=ctx, upgrade=cfg.upgrade_keys) as run:
            return _train(cfg, out, data, ctx, run, progress, overwrite)
    finally:
        ctx.close()


def _train(cfg: HarmonizeConfig, out_dir: Path, data: TrainingSet, ctx, run: RunFolder, progress: bool,
           overwrite: bool) -> TrainResult:
    seed_everything(cfg.train.seed + ctx.rank)
    model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins, seed=cfg.train.seed)
    fit_statistics(model, data, cfg.harmonize.foreground_threshold)
    model.to(ctx.device)
    set_precision(model, cfg.train.precision, ctx.device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: warmup_cosine(s, cfg.train.steps, cfg.train.warmup))
    ckpts = checkpoints(run, keep_last=2)
    start = 0
    if run.resumable and ckpts.latest() is not None:
        start, _ = ckpts.restore({"model": model}, {"adam": optim}, {"sched": sched}, max_step=cfg.train.steps)
    else:
        # data-dependent ActNorm init on the same global batch on every rank
        x0, n0 = _batch(data, cfg, -1)
        model.flow.initialize(model.dequantize(x0.to(ctx.device), n0.to(ctx.device)))
    net = ctx.wrap(model)
    logger = MetricLogger(run.path, enabled=ctx.is_main)
    model.train()
    t0, loss_value, ema = time.perf_counter(), float("nan"), None
    for step in track(range(start, cfg.train.steps), total=cfg.train.steps - start,
                      description="train flow", disable=not progress):
        x, noise = _batch(data, cfg, step)
        idx = ctx.shard(list(range(len(x))))
        x, noise = x[idx].to(ctx.device), noise[idx].to(ctx.device)
        loss = net(x, noise)
        check_finite_loss(float(loss.detach()), step + 1, "train.lr")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optim.step()
        sched.step()
        if (step + 1) % cfg.train.log_every == 0 or step + 1 == cfg.train.steps:
            loss_value = float(ctx.all_reduce_mean(loss.detach()))
            ema = loss_value if ema is None else 0.8 * ema + 0.2 * loss_value
            logger.log(step + 1, bits_per_dim=loss_value, grad_norm=float(gnorm), lr=sched.get_last_lr()[0])
        if ctx.is_main and ((step + 1) % cfg.train.checkpoint_every == 0 or step + 1 == cfg.train.steps):
            ckpts.save(step + 1, {"model": model}, {"adam": optim}, {"sched": sched},
                       extra={"bits_per_dim": loss_value})
    logger.close()
    seconds = time.perf_counter() - t0
    summary = {"steps": cfg.train.steps, "resumed_from": start, "final_bits_per_dim": ema,
               "train_slices": len(data.slices), "seconds": round(seconds, 1), "world_size": ctx.world_size}
    weights = {"flow": model}
    if ctx.is_main and cfg.restore_steps > 0:
        # the restoration net trains on the main rank only (about 2 minutes on 2 CPU cores for
        # the cpu-small default); the other ranks wait at the barrier below
        from medgap.harmonize.restore import train_restoration

        net, summary["restore"] = train_restoration(
            data.slices, cfg.restore.replace(steps=cfg.restore_steps), cfg.data,
            seed=cfg.train.seed, device=ctx.device, progress=progress, counts=data.counts,
            threshold=cfg.harmonize.foreground_threshold)
        weights["restore"] = net
    if ctx.is_main:
        model.eval()
        set_precision(model, "fp32", ctx.device)  # the reference bits/dim in float32, like `score`
        ref = _target_bpd(model, data, ctx.device)
        summary["unlike_the_others"] = _unlike_the_others(model, data, ctx.device)
        save_model(out_dir, method=METHOD, config=cfg, weights=weights,
                   trained_on={"targets": data.sources, "slices": len(data.slices),
                               "image_size": list(cfg.flow.image_size)},
                   card=_card(cfg, summary), extras={"train": summary, "target_bits_per_dim": ref},
                   overwrite=overwrite)
    ctx.barrier()
    return TrainResult(out_dir, run.path, cfg.train.steps, start, seconds, summary)


@torch.inference_mode()
def _target_bpd(model: SliceFlow, data: TrainingSet, device, n: int = 64) -> dict:
    """Bits/dim of (up to n) training slices: the reference that ``score`` compares against."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data.slices), generator=g)[:n]
    x = data.slices[idx]
    bpd = model.bits_per_dim(x.to(device), torch.rand(x.shape, generator=g).to(device)).cpu()
    return {"mean": float(bpd.mean()), "std": float(bpd.std()) if len(bpd) > 1 else 0.0, "slices": len(bpd)}


@torch.inference_mode()
def _unlike_the_others(model: SliceFlow, data: TrainingSet, device, min_targets: int = 3) -> list[dict]:
    """Targets whose slices the trained flow finds far less likely than the others' (a T2 among
    T1s, another scanner, a failed skull strip): mean bits/dim per target more than 4 robust
    standard deviations and 0.1 bits/dim above the median. Each is warned about and returned."""
    import warnings

    if len(data.counts) < min_targets:
        return []
    g = torch.Generator().manual_seed(1)
    means, start = [], 0
    for n in data.counts:
        x = data.slices[start:start + n]
        idx = torch.linspace(0, n - 1, min(n, 24)).round().long()
        x = x[idx]
        means.append(float(model.bits_per_dim(x.to(device), torch.rand(x.shape, generator=g).to(device)).mean()))
        start += n
    m = np.asarray(means)
    med = float(np.median(m))
    spread = 1.4826 * float(np.median(np.abs(m - med))) + 1e-3
    out = []
    for name, v in zip(data.sources, m):
        if v > med + max(4 * spread, 0.1):
            out.append({"target": name, "bits_per_dim": round(float(v), 3), "median": round(med, 3)})
            warnings.warn(f"{name}: the trained flow finds this target much less likely than the others "
                          f"({v:.2f} vs a median of {med:.2f} bits/dim) -- another contrast (T2 among T1s?), "
                          f"scanner or preprocessing? Check it, or train without it.", stacklevel=2)
    return out


def _card(cfg: HarmonizeConfig, summary: dict) -> str:
    f = cfg.flow
    return (f"# Blind harmonisation flow\n\nA multi-scale rational-quadratic spline flow "
            f"({f.levels} levels x {f.steps} steps, {f.hidden} hidden channels) trained only on target-domain "
            f"slices of {f.image_size[0]}x{f.image_size[1]} pixels ({summary['train_slices']} slices, "
            f"{summary['steps']} steps, final {summary['final_bits_per_dim']} bits/dim).\n\n"
            "Use: `medgap harmonize apply THIS_FOLDER source.nii.gz --out harmonized.nii.gz`.\n")
