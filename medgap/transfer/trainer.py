"""Training of a transfer model from labelled simulations and unlabelled real data.

One iteration: a global batch of B simulated (class-balanced when labels exist) and B real samples,
split over the ranks; generator step on ml_weight * L_ML + gan_weight * L_G with an optimiser that
holds only the generator's parameters; discriminator step (LSGAN) on the detached transfers with its
own optimiser; gradients clipped by value; the generator learning rate is reduced on plateaus of the
epoch loss. Checkpoints go to the run folder ``<out>.run/checkpoints/`` every ``checkpoint_every``
epochs and a rerun resumes from the last one (:mod:`medgap.training.contract`); the final model
folder is written atomically to ``out``.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medgap.errors import InputError, ModelFolderError, TrainingDivergedError
from medgap.io import ImageSet, SpectraSet
from medgap.modelio import check_output_folder, save_model
from medgap.training.contract import TrainResult, checkpoints, make_run, run_folder
from medgap.training.rundir import RunFolder, fingerprint_arrays, without
from medgap.training.distributed import DistContext, setup_distributed
from medgap.training.precision import set_precision
from medgap.training.runtime import MetricLogger, count_parameters, seed_everything, track

from .cinn import REAL
from .config import TransferConfig
from .data import DomainStats, check_pair, fit_stats
from .labels import (LabelEstimate, alignment_strength, class_moments, estimate_labels, from_class, match_global,
                     shrink_moments, subject_design, within_class)
from medgap.flows.likelihood import standard_normal_nll

from .model import CLOSED_FORM, DiscriminatorObjective, GeneratorObjective, TransferModel, build_model

__all__ = ["METHOD", "train", "BatchSampler", "make_optimizers", "make_objectives",
           "train_step"]

METHOD = "transfer"  # the method name written into model folders


class BatchSampler:
    """Index batches drawn from a seed and the step number only, so every rank draws the same global
    batch and a resumed run continues with the batches it would have drawn."""

    def __init__(self, n: int, labels: np.ndarray | None, seed: int, balanced: bool):
        self.n, self.seed = n, seed
        self.balanced = balanced and labels is not None
        if self.balanced:
            order = np.argsort(labels, kind="stable")
            classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
            self.order = torch.from_numpy(order)
            self.starts, self.counts = torch.from_numpy(starts), torch.from_numpy(counts)

    def __call__(self, batch: int, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        if not self.balanced:
            return torch.randint(0, self.n, (batch,), generator=g)
        cls = torch.randint(0, len(self.counts), (batch,), generator=g)  # every class equally often
        pos = (torch.rand(batch, generator=g, dtype=torch.float64) * self.counts[cls]).long()
        return self.order[self.starts[cls] + pos]


def _arrays(data):
    return data.samples, data.labels


def _batch(x: np.ndarray, y: np.ndarray | None, idx: torch.Tensor, stats: DomainStats, device, noise_std: float,
           classes: np.ndarray | None = None):
    """A normalised batch (+ noise) and its condition labels; ``classes``: labels for class-aligned statistics."""
    i = idx.numpy()
    by_class = None if classes is None else torch.from_numpy(classes[i])
    xb = stats.normalize(torch.from_numpy(x[i]).float(), by_class).to(device)
    if noise_std > 0:
        xb = xb + noise_std * torch.randn_like(xb)
    yb = None if y is None else torch.from_numpy(y[i]).to(device)
    return xb, yb


# a run may be resumed with more epochs or at another precision: everything else must match
_RESUMABLE_CHANGES = ("train.epochs", "train.precision")


def make_optimizers(model: TransferModel, cfg: TransferConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Separate Adam optimisers: the generator's holds only generator parameters (never a
    discriminator's), the discriminators' only theirs; FrEIA's frozen permutations are left out."""
    net = cfg.net
    gen = [p for p in model.generator.parameters() if p.requires_grad]
    dis = [p for p in model.dis.parameters() if p.requires_grad]
    kw = dict(lr=cfg.learning_rate, betas=tuple(net.betas), weight_decay=net.weight_decay)
    return torch.optim.Adam(gen, **kw), torch.optim.Adam(dis, **kw)


def make_objectives(model: TransferModel, ctx: DistContext) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator losses as modules, each DDP-wrapped when run under torchrun."""
    # no buffer of these networks changes in training: nothing to broadcast per forward
    return (ctx.wrap(GeneratorObjective(model), broadcast_buffers=False),
            ctx.wrap(DiscriminatorObjective(model), broadcast_buffers=False))


def _accumulating(objective: nn.Module, last: bool):
    # DDP averages gradients in the backward of the last chunk only; earlier chunks accumulate locally
    return objective.no_sync() if not last and hasattr(objective, "no_sync") else contextlib.nullcontext()


def train_step(model: TransferModel, opt_g, opt_d, pieces, clip_value: float,
               objectives: tuple[nn.Module, nn.Module] | None = None):
    """One iteration over ``pieces`` = [(x_sim, y_sim or None, x_real), ...] chunks of one batch.

    Generator step on the accumulated chunk gradients (averaged over ranks by DDP when ``objectives``
    come from :func:`make_objectives` under torchrun; clipped by value), then the discriminator step on
    the kept, detached transfers. Returns (loss_g, loss_d, logs) as floats.
    """
    gen_objective, dis_objective = objectives or (GeneratorObjective(model), DiscriminatorObjective(model))
    gen_params, dis_params = opt_g.param_groups[0]["params"], opt_d.param_groups[0]["params"]
    total = sum(len(xa) for xa, _, _ in pieces)
    opt_g.zero_grad(set_to_none=True)
    kept, logs, loss_g = [], {}, 0.0
    for i, (xa, ya, xb) in enumerate(pieces):
        w = len(xa) / total
        with _accumulating(gen_objective, last=i == len(pieces) - 1):
            loss, part, x_ab, x_ba = gen_objective(xa, ya, xb)
            (loss * w).backward()
        loss_g += w * loss.item()
        logs = {key: logs.get(key, 0.0) + w * v for key, v in part.items()}
        kept.append((w, xa, xb, x_ab.detach(), x_ba.detach()))
    torch.nn.utils.clip_grad_value_(gen_params, clip_value)
    opt_g.step()

    opt_d.zero_grad(set_to_none=True)
    loss_d = 0.0
    for i, (w, xa, xb, x_ab, x_ba) in enumerate(kept):
        with _accumulating(dis_objective, last=i == len(kept) - 1):
            loss = dis_objective(xa, xb, x_ab, x_ba)
            (loss * w).backward()
        loss_d += w * loss.item()
    torch.nn.utils.clip_grad_value_(dis_params, clip_value)
    opt_d.step()
    return loss_g, loss_d, logs


def n_classes_of(data, need_labels: bool) -> int:
    if not need_labels:
        return 0
    if data.label_names is not None:
        return len(data.label_names)
    return int(data.labels.max()) + 1


@dataclass
class _Prepared:
    """What a training run works on, prepared once before the loop."""

    model: TransferModel
    stats_sim: DomainStats
    stats_real: DomainStats
    x_sim: np.ndarray
    y_sim: np.ndarray | None  # the labels the condition sees (None: condition domain only)
    x_real: np.ndarray
    x_heldout: np.ndarray | None
    n_classes: int
    y_sim_classes: np.ndarray | None = None  # the labels the class-wise standardisation uses
    estimate: LabelEstimate | None = None
    real: SpectraSet | ImageSet | None = None  # the target data trained on (without the held-out part)


def train(cfg: TransferConfig, data: tuple[SpectraSet | ImageSet, SpectraSet | ImageSet], out: str | Path, *,
          device: str = "auto", resume: bool = True, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train ``cfg.method`` on ``data = (source, target)`` and write the model folder ``out``.

    The trainer contract of :mod:`medgap.training.contract`: checkpoints go to ``OUT.run/``; a
    rerun resumes them only when settings and data are those of that run. An existing model folder
    ``out`` is replaced only with ``overwrite``; any other non-empty folder is refused.

    source/target: SpectraSet (HSI, (N, C)) or ImageSet (PAT, (N, C, H, W)), the labelled source
    (simulations, another lab) and the target whose labels are never used; the modality is decided
    once, here, from the data (:func:`medgap.transfer.data.check_pair`).
    """
    sim, real = data
    out = Path(out)
    check_output_folder(out, METHOD, overwrite=overwrite)
    need_labels = cfg.method == "cinn" and cfg.condition == "domain+label"
    modality = check_pair(sim, real, need_labels=need_labels)
    if modality != cfg.modality:
        cfg = cfg.replace(modality=modality)
    if cfg.method in CLOSED_FORM:
        return _fit_closed_form(cfg, sim, real, out, overwrite)
    ctx = setup_distributed(device)
    try:
        prepared = _prepare(cfg, sim, real, need_labels, modality, ctx)
        settings = without(cfg.to_dict(), *_RESUMABLE_CHANGES)
        fingerprint = fingerprint_arrays([prepared.x_sim, prepared.y_sim, prepared.x_real])
        with make_run(out, METHOD, settings, fingerprint, resume=resume, ctx=ctx, upgrade=cfg.upgrade_keys) as run:
            return _fit(cfg, sim, out, prepared, ctx, run, progress, overwrite)
    finally:
        ctx.close()


def _prepare(cfg: TransferConfig, sim, real, need_labels: bool, modality: str, ctx) -> _Prepared:
    net = cfg.net
    seed_everything(cfg.train.seed)  # FrEIA draws its fixed permutations from numpy's global RNG
    class_aligned = cfg.class_aligned(sim.modality == "hsi" and sim.labels is not None)
    # class-aligned statistics need every real spectrum's estimated class: none is held out
    real, x_heldout = (real, None) if class_aligned else _hold_out(real, cfg)
    x_sim, y_sim = _arrays(sim)
    x_real, _ = _arrays(real)
    y_sim_classes = y_sim if class_aligned else None
    if not need_labels:
        y_sim = None
    k = n_classes_of(sim, need_labels)
    model = build_model(cfg, x_sim.shape[1], k, sim.image_shape).to(ctx.device)
    set_precision(model, cfg.train.precision, ctx.device)
    if cfg.method == "cinn" and getattr(net, "compile", False):
        model.generator.compile_blocks()
    stats_sim = fit_stats(sim, cfg.train.whiten, cfg.train.whiten_ridge, l2=cfg.hsi.brightness == "l2")
    stats_real = fit_stats(real, cfg.train.whiten, cfg.train.whiten_ridge, l2=cfg.hsi.brightness == "l2")
    estimate = (align_classes(stats_sim, stats_real, sim, real, cfg.train.align_strength, cfg.train.seed,
                             cfg.matches_global_moments())
                if class_aligned else None)
    return _Prepared(model, stats_sim, stats_real, x_sim, y_sim, x_real, x_heldout, k, y_sim_classes, estimate, real)


def _hold_out(real, cfg: TransferConfig):
    """Keep ``train.heldout_fraction`` of the real spectra (at most 5,000) out of training: the cINN's
    exact likelihood of them is reported per epoch. Returns (real for training, held-out array or None)."""
    n_out = min(5000, int(cfg.train.heldout_fraction * len(real)))
    if cfg.method != "cinn" or real.modality != "hsi" or n_out < 10:
        return real, None
    order = np.random.default_rng(cfg.train.seed + 12345).permutation(len(real))
    return real.subset(np.sort(order[n_out:])), real.spectra[np.sort(order[:n_out])]


@torch.no_grad()
def heldout_bits_per_dim(model: TransferModel, x: np.ndarray, stats: DomainStats, device,
                         batch: int = 4096) -> float:
    """Negative log-likelihood of real spectra x (raw) under the cINN's real condition, in bits per
    dimension of the network's normalised space (labels of a label-conditioned network: uniform draws)."""
    g, was_training = model.generator, model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    for i in range(0, len(x), batch):
        xb = stats.normalize(torch.from_numpy(x[i:i + batch]).float()).to(device)
        y = g.random_labels((len(xb),), generator=gen).to(device) if g.n_classes else None
        z, logdet = g.encode(xb, REAL, y)
        nll = standard_normal_nll(z, logdet)
        total += float(nll.sum())
    model.train(was_training)
    return total / (len(x) * x.shape[1] * math.log(2.0))


def align_classes(stats_sim: DomainStats, stats_real: DomainStats, sim: SpectraSet, real: SpectraSet,
                  strength: float | None = None, seed: int = 0, match: bool = False) -> LabelEstimate:
    """Estimate the real spectra's classes and add per-class statistics to both domains (in place).

    Returns the estimate (labels, class proportions, the subject design used, the alignment
    strength). With the class statistics the untrained network maps each simulated class onto the
    real spectra estimated to be of that class (class-wise CORAL), ``strength`` of the way from where
    a global alignment puts it (None: chosen by reverse validation, :func:`labels.alignment_strength`);
    ``match``: then re-matched as a whole to the real domain's global mean and covariance
    (:func:`labels.match_global`)."""
    k = sim.n_classes
    z_sim = stats_sim.whitened(torch.from_numpy(sim.spectra).float()).numpy()
    z_real = stats_real.whitened(torch.from_numpy(real.spectra).float()).numpy()
    design = subject_design(sim.labels, sim.groups, k)  # the study design the labelled source shows
    estimate = estimate_labels(z_sim, sim.labels, z_real, k, groups=real.groups, design=design)
    source, target = class_moments(z_sim, sim.labels, k), class_moments(z_real, estimate.labels, k)
    if strength is None:
        def to_raw(z: np.ndarray) -> np.ndarray:
            return stats_real.from_whitened(torch.from_numpy(z).float()).numpy()

        strength, estimate.strength_scores = alignment_strength(
            z_sim, sim.labels, z_real, estimate.labels, real.spectra, to_raw, k, groups=real.groups, seed=seed,
            n_jobs=torch.get_num_threads())  # the run's thread budget (medgap.training.threads)
    estimate.strength = float(strength)
    placed = shrink_moments(source, target, strength)
    absent = estimate.prevalence == 0  # a class the real data lacks keeps the global placement
    placed[0][absent], placed[1][absent] = source[0][absent], source[1][absent]
    if match:
        transferred = from_class(within_class(z_sim, sim.labels, source), sim.labels, placed)
        placed = match_global(placed, transferred, z_real.mean(0), np.cov(z_real, rowvar=False),
                              (~absent[sim.labels]).astype(np.float64))
    for stats, (mean, root) in ((stats_sim, source), (stats_real, placed)):
        stats.class_mean, stats.class_root = torch.from_numpy(mean).float(), torch.from_numpy(root).float()
    return estimate


def _fit(cfg: TransferConfig, sim, out: Path, p: _Prepared, ctx, run: RunFolder, progress: bool,
         overwrite: bool) -> TrainResult:
    net, t, model = cfg.net, cfg.train, p.model
    opt_g, opt_d = make_optimizers(model, cfg)
    objectives = make_objectives(model, ctx)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_g, factor=t.plateau_factor, patience=t.plateau_patience,
                                                       threshold=t.plateau_threshold, cooldown=t.plateau_cooldown)
    ckpt = checkpoints(run, keep_last=t.keep_checkpoints)
    start_epoch, history = 0, []
    if run.resumable and ckpt.latest() is not None:
        _, extra = ckpt.restore({"generator": model.generator, "dis": model.dis}, {"gen": opt_g, "dis": opt_d},
                                {"plateau": sched})
        epoch, history = extra.get("epoch"), extra.get("history")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0 or not isinstance(history, list):
            raise ModelFolderError(ckpt.latest(), f"damaged checkpoint: epoch {epoch!r} / history of "
                                                  f"{type(history).__name__}; start afresh with --no-resume")
        start_epoch = epoch + 1

    batch = net.batch_size
    if ctx.world_size > batch:
        raise InputError(None, f"batch size {batch} is smaller than the {ctx.world_size} processes")
    iters = t.iterations_per_epoch or max(1, math.ceil(max(len(p.x_sim), len(p.x_real)) / batch))
    sample_sim = BatchSampler(len(p.x_sim), sim.labels if sim.modality == "hsi" else None, cfg.train.seed,
                              balanced=True)
    sample_real = BatchSampler(len(p.x_real), None, cfg.train.seed + 1, balanced=False)
    logger = MetricLogger(run.path, enabled=ctx.is_main)
    t_start = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.train.epochs):
        t0, sums = time.perf_counter(), {}
        for it in track(range(iters), description=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress):
            step = epoch * iters + it
            ia = ctx.shard(sample_sim(batch, step))
            ib = ctx.shard(sample_real(batch, step))
            # the global batch is processed in chunks with accumulated gradients: every loss is a mean
            # over samples, so the result equals one pass over the whole batch at a fraction of the memory
            size = net.chunk or len(ia)
            pieces = [(*_batch(p.x_sim, p.y_sim, ia[k:k + size], p.stats_sim, ctx.device, net.noise_std,
                               p.y_sim_classes),
                       _batch(p.x_real, None, ib[k:k + size], p.stats_real, ctx.device, net.noise_std,
                              None if p.estimate is None else p.estimate.labels)[0])
                      for k in range(0, len(ia), size)]
            loss_g, loss_d, logs = train_step(model, opt_g, opt_d, pieces, t.clip_value, objectives)
            del pieces

            if not math.isfinite(loss_g):
                raise TrainingDivergedError(f"generator loss became {loss_g} at epoch {epoch + 1}, "
                                         f"iteration {it + 1}; lower the learning rate")
            for key, v in {"loss_g": loss_g, "loss_d": loss_d, **logs}.items():
                sums[key] = sums.get(key, 0.0) + v
        means = {key: float(ctx.all_reduce_mean(torch.tensor(v / iters)).item()) for key, v in sums.items()}
        sched.step(means["loss_g"])
        means.update(lr=opt_g.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
        if p.x_heldout is not None:
            means["heldout_real_bits_per_dim"] = heldout_bits_per_dim(model, p.x_heldout, p.stats_real, ctx.device)
        history.append({"epoch": epoch + 1, **means})
        logger.log(epoch + 1, **means)
        last = epoch + 1 == cfg.train.epochs
        if ctx.is_main and ((epoch + 1) % t.checkpoint_every == 0 or last):
            ckpt.save((epoch + 1) * iters, {"generator": model.generator, "dis": model.dis},
                      {"gen": opt_g, "dis": opt_d}, {"plateau": sched},
                      extra={"epoch": epoch, "history": history, "config": cfg.to_dict()}, metric=means["loss_g"])
        ctx.barrier()
    logger.close()

    if ctx.is_main:
        _save(out, cfg, model, p.stats_sim, p.stats_real, sim, p.real, p.n_classes, history, overwrite, p.estimate)
    ctx.barrier()
    final = {key: value for key, value in (history[-1] if history else {}).items() if key != "epoch"}
    return TrainResult(out, run.path, cfg.train.epochs * iters, start_epoch * iters, time.perf_counter() - t_start,
                       {"epochs": cfg.train.epochs, "resumed_from_epoch": start_epoch, **final})


def _fit_closed_form(cfg: TransferConfig, sim, real, out: Path, overwrite: bool) -> TrainResult:
    """``standardise`` / ``coral``: only the two domains' statistics are fitted; nothing is trained."""
    whiten = cfg.method == "coral"
    stats_sim = fit_stats(sim, whiten, cfg.train.whiten_ridge, l2=cfg.hsi.brightness == "l2")
    stats_real = fit_stats(real, whiten, cfg.train.whiten_ridge, l2=cfg.hsi.brightness == "l2")
    estimate = None
    if cfg.class_aligned(sim.modality == "hsi" and sim.labels is not None):
        estimate = align_classes(stats_sim, stats_real, sim, real, cfg.train.align_strength, cfg.train.seed,
                             cfg.matches_global_moments())
    model = build_model(cfg, len(sim.wavelengths), 0, sim.image_shape)
    _save(out, cfg, model, stats_sim, stats_real, sim, real, 0, [], overwrite, estimate)
    return TrainResult(out, run_folder(out), 0, 0, 0.0, {"closed_form": cfg.method})


def _save(out, cfg, model: TransferModel, stats_sim, stats_real, sim, real, k, history, overwrite,
          estimate: LabelEstimate | None = None) -> None:
    label_names = sim.label_names if k else None
    extras = {
        "modality": cfg.modality, "transfer_method": cfg.method, "condition": cfg.condition,
        "n_classes": k, "label_names": label_names, "class_aligned": stats_sim.class_aligned,
        "class_names": sim.label_names if stats_sim.class_aligned else None,
        # what the class alignment estimated about the unlabelled target (None: aligned globally)
        "target_class_shares": None if estimate is None else {
            name: round(float(p), 4) for name, p in zip(sim.label_names or range(len(estimate.prevalence)),
                                                         estimate.prevalence)},
        "subject_design": None if estimate is None else estimate.design,
        "class_alignment_strength": None if estimate is None else estimate.strength,
        "global_moments_matched": None if estimate is None else cfg.matches_global_moments(),
        "class_alignment_scores": None if estimate is None or not estimate.strength_scores else {
            str(c): round(v, 4) for c, v in estimate.strength_scores.items()},
        "wavelengths_nm": [float(w) for w in sim.wavelengths],
        "n_channels": int(sim.wavelengths.shape[0]),
        "image_shape": None if sim.image_shape is None else list(sim.image_shape),
        "parameters": {"generator_trainable": count_parameters(model.generator, True),
                       "generator_total": count_parameters(model.generator)},
        "history": history,
    }
    trained_on = {"sim": str(sim.path) if sim.path else "<array>", "sim_samples": len(sim),
                  "real": str(real.path) if real.path else "<array>", "real_samples": len(real)}
    fitted = (f"{len(history)} epochs; final generator loss {history[-1]['loss_g']:.4f}" if history
              else "statistics fitted in closed form, nothing trained")
    card = (f"# medgap transfer model ({cfg.method}, {cfg.modality})\n\nMaps {cfg.modality.upper()} data between a "
            f"simulated and a real domain (condition: {cfg.condition}).\n\nApply with\n\n"
            f"    medgap transfer apply {out.name} INPUT.npz --out OUT.npz --direction sim2real\n\n"
            f"Trained on {trained_on['sim_samples']} simulated and {trained_on['real_samples']} real samples, "
            f"{fitted}.\n")
    stats = {**stats_sim.to_tensors("sim"), **stats_real.to_tensors("real")}
    weights = {"stats": stats} if cfg.method in CLOSED_FORM else {
        "generator": model.generator, "discriminators": model.dis, "stats": stats}
    save_model(out, method=METHOD, config=cfg, weights=weights,
               trained_on=trained_on, card=card, extras=extras, overwrite=overwrite)
