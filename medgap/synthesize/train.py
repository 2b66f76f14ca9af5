"""HA-GAN training loop (one iteration = D step, G step, E^H step, E^G step).

Per iteration, with a global batch x (B, 1, S, S, S) in [-1, 1]:

* slab start ``k`` is drawn from {0, 4, ..., 7S/8}: a multiple of 4, so the real
  slab ``x[:, :, k : k + S/8]`` and the generated one (feature slices
  ``k/4 : k/4 + S/32``) cover exactly the same voxels;
* the low-resolution real target is ``avg_pool3d(x, 4)`` (anti-aliased);
* D step: non-saturating BCE, real -> 1, fake -> 0 (fake detached);
* G step: BCE(D(fake), 1) on the same generated batch, D frozen;
* E^H step (G frozen): L1(G^H(E^H(x_slab)), x_slab);
* E^G step (E^H frozen): z' = E^G(E^H(x) slab-wise); 0.5 * (L1 on the slab + L1 on
  the low-res volume) through G. The publication freezes G here (``recon_weight=0``,
  the ``paper`` preset); with ``recon_weight`` > 0 (cpu-small) G takes an Adam step on
  ``recon_weight`` x this loss as well, so it learns the training anatomy by decoding
  real volumes' codes instead of only from D's verdicts (measured: bench_synthesize_anatomy);
* Adam(beta1, beta2) = (0, 0.999); lr_g for G and the encoders (paper 1e-4, cpu-small 4e-4),
  lr_d 4e-4 for D;
* ``precision="bf16"`` (cpu-small's ``auto`` where the device supports it): all four steps under bfloat16 autocast (weights,
  optimiser, losses float32).

Small-data pieces (cpu-small; all off in ``paper``; measured one by one in bench_synthesize_cohort):
batches come from a pool of augmented cubes drawn once (``augment_pool``); ``diff_augment`` passes what
D sees in the D and G steps, real and generated, through :func:`~medgap.synthesize.diffaugment.diff_augment`;
``minibatch_std`` is part of the architecture; ``r1_gamma`` adds the R1 penalty on D's gradient at the
(augmented) real inputs every ``R1_EVERY``-th D step; ``ema_decay`` keeps a moving average of G's
weights after every iteration, which the model folder keeps as its generator.

Conditional models (``conditional=True``) concatenate a one-hot label to z and add
auxiliary-classifier cross-entropy terms (real labels in the D step, sampled labels in
the G step).

Works on CPU, CUDA and under ``torchrun`` (DDP; the batch is the global batch).
Checkpoints (last ``keep_last`` + best by the E^G reconstruction loss) go to
the run folder ``OUT.run/checkpoints`` (:mod:`medgap.training.contract`); a rerun resumes from the latest one.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medgap.errors import InputError, ModelFolderError
from medgap.modelio import check_output_folder, save_model
from medgap.synthesize.config import SynthesizeConfig
from medgap.synthesize.data import Augment, TrainingSet, augmented_pool
from medgap.synthesize.diffaugment import diff_augment
from medgap.synthesize.model import HAGAN
from medgap.training.contract import TrainResult, checkpoints, make_run
from medgap.training.distributed import setup_distributed
from medgap.training.precision import autocast
from medgap.training.rundir import RunFolder, fingerprint_arrays, without
from medgap.training.runtime import MetricLogger, check_finite_loss, count_parameters, seed_everything, track

__all__ = ["TrainResult", "train", "run_settings", "save_hagan", "HAGANStep", "encoded_prior"]

METHOD = "synthesize"
R1_EVERY = 4  # lazy R1 (StyleGAN2): the penalty every 4th D step, weighted x4


def _frozen(module: torch.nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


class HAGANStep:
    """One training iteration of HA-GAN on a local batch (the four steps in order).

    Holds the (possibly DDP-wrapped) networks and their optimisers. Calls that need
    no gradient synchronisation (a frozen network) go to the unwrapped module.
    ``phase`` is a callable ``name -> context manager`` entered around each of the
    four steps (``"d"``, ``"g"``, ``"eh"``, ``"eg"``); the benchmark sets it to count
    FLOPs and time per step.
    """

    phase = staticmethod(lambda name: contextlib.nullcontext())

    def __init__(self, model: HAGAN, cfg: SynthesizeConfig, wrap=lambda m: m):
        self.model = model
        self.arch = model.arch
        self.G = wrap(model.generator)
        self.D = wrap(model.discriminator)
        self.EH = wrap(model.encoder_high)
        self.EG = wrap(model.encoder_global)
        self.precision = cfg.train.precision
        self.recon_weight = cfg.train.recon_weight
        self.diff_augment = cfg.train.diff_augment
        self.r1_gamma = cfg.train.r1_gamma
        self.ema_decay = cfg.train.ema_decay
        # the sampling generator: an exponential moving average of G's weights (None: G itself)
        self.generator_ema = copy.deepcopy(model.generator).requires_grad_(False) if cfg.train.ema_decay > 0 else None
        self.draws = torch.Generator().manual_seed(cfg.train.seed)  # DiffAugment's draws (same on every rank)
        self.d_steps = 0
        betas = cfg.train.betas
        self.opt = {
            "g": torch.optim.Adam(model.generator.parameters(), lr=cfg.train.lr_g, betas=betas),
            "d": torch.optim.Adam(model.discriminator.parameters(), lr=cfg.train.lr_d, betas=betas),
            "eh": torch.optim.Adam(model.encoder_high.parameters(), lr=cfg.train.lr_g, betas=betas),
            "eg": torch.optim.Adam(model.encoder_global.parameters(), lr=cfg.train.lr_g, betas=betas),
        }

    def modules(self) -> dict[str, torch.nn.Module]:
        m = self.model
        modules = {"generator": m.generator, "discriminator": m.discriminator,
                   "encoder_high": m.encoder_high, "encoder_global": m.encoder_global}
        if self.generator_ema is not None:
            modules["generator_ema"] = self.generator_ema
        return modules

    def sampling_generator(self) -> torch.nn.Module:
        """The generator a model folder keeps: the moving average when ``ema_decay`` > 0, else G."""
        return self.generator_ema if self.generator_ema is not None else self.model.generator

    def _seen_by_d(self, slab: torch.Tensor, low: torch.Tensor):
        return diff_augment(slab, low, self.draws) if self.diff_augment else (slab, low)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        for avg, p in zip(self.generator_ema.parameters(), self.model.generator.parameters()):
            avg.lerp_(p, 1.0 - self.ema_decay)
        for avg, b in zip(self.generator_ema.buffers(), self.model.generator.buffers()):
            avg.copy_(b)

    def __call__(self, x: torch.Tensor, z: torch.Tensor, k: int, y_real=None, y_fake=None) -> dict[str, float]:
        """x (b, 1, S, S, S) real; z (b, latent) noise; k slab start (multiple of 4); labels (b,) or None."""
        with autocast(self.precision, x.device):
            return self._iteration(x, z, k, y_real, y_fake)

    def _iteration(self, x, z, k, y_real, y_fake) -> dict[str, float]:
        m, a = self.model, self.arch
        d = a.slab_depth
        x_slab = x[:, :, k : k + d]
        x_low = F.avg_pool3d(x, 4)
        kvec = torch.full((x.shape[0],), float(k), device=x.device)
        ones = torch.ones(x.shape[0], device=x.device)
        zeros = torch.zeros_like(ones)
        cond = a.num_classes > 0

        # ---- D step (fake detached; the same fake batch serves the G step)
        with self.phase("d"):
            fake_slab, fake_low = self.G(z, k // 4, y_fake)
            real_in = self._seen_by_d(x_slab, x_low)
            r1 = self.r1_gamma > 0 and self.d_steps % R1_EVERY == 0
            if r1:
                real_in = tuple(t.detach().requires_grad_(True) for t in real_in)
            real_logit, real_cls = self.D(*real_in, kvec)
            fake_logit, _ = self.D(*self._seen_by_d(fake_slab.detach(), fake_low.detach()), kvec)
            loss_d = (F.binary_cross_entropy_with_logits(real_logit, ones)
                      + F.binary_cross_entropy_with_logits(fake_logit, zeros))
            if cond:
                loss_d = loss_d + F.cross_entropy(real_cls, y_real)
            if r1:
                grads = torch.autograd.grad(real_logit.float().sum(), real_in, create_graph=True)
                penalty = sum(g.float().pow(2).flatten(1).sum(1) for g in grads).mean()
                loss_d = loss_d + 0.5 * self.r1_gamma * R1_EVERY * penalty
            self.d_steps += 1
            self.opt["d"].zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt["d"].step()

        # ---- G step (D frozen: no weight gradients, no DDP sync needed)
        with self.phase("g"):
            _frozen(m.discriminator, True)
            g_logit, g_cls = m.discriminator(*self._seen_by_d(fake_slab, fake_low), kvec)
            loss_g = F.binary_cross_entropy_with_logits(g_logit, ones)
            if cond:
                loss_g = loss_g + F.cross_entropy(g_cls, y_fake)
            self.opt["g"].zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt["g"].step()
            _frozen(m.discriminator, False)
            del fake_slab, fake_low

        # ---- E^H step (G frozen)
        with self.phase("eh"):
            _frozen(m.generator, True)
            rec = m.generator.high(self.EH(x_slab))
            loss_eh = F.l1_loss(rec, x_slab)
            self.opt["eh"].zero_grad(set_to_none=True)
            loss_eh.backward()
            self.opt["eh"].step()

        # ---- E^G step (E^H frozen; G frozen too unless recon_weight > 0)
        with self.phase("eg"):
            with torch.no_grad():
                feats = m.encode_features(x)
            decode = self.recon_weight > 0
            _frozen(m.generator, not decode)
            rec_slab, rec_low = (self.G if decode else m.generator)(self.EG(feats), k // 4, y_real)
            loss_eg = 0.5 * (F.l1_loss(rec_slab, x_slab) + F.l1_loss(rec_low, x_low))
            self.opt["eg"].zero_grad(set_to_none=True)
            self.opt["g"].zero_grad(set_to_none=True)
            loss_eg.backward()
            self.opt["eg"].step()
            if decode:  # G learns to decode E^G's codes of real volumes: an anatomy signal from step one
                for p in m.generator.parameters():
                    if p.grad is not None:
                        p.grad.mul_(self.recon_weight)
                self.opt["g"].step()
            _frozen(m.generator, False)
        self._update_ema()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_eh": loss_eh.item(), "loss_eg": loss_eg.item(),
                "d_real": torch.sigmoid(real_logit).mean().item(), "d_fake": torch.sigmoid(fake_logit).mean().item()}


@torch.no_grad()
def encoded_prior(model: HAGAN, data: TrainingSet, augment: Augment | None, n: int = 64,
                  covariance: bool = True) -> dict[str, torch.Tensor]:
    """A Gaussian over E^G's codes of ``n`` (augmented) training volumes: ``mean``, per-dimension ``std``
    and, with ``covariance``, ``basis`` (n, latent_dim) = the centred codes / sqrt(n - 1), so that
    z = mean + w @ basis, w ~ N(0, I_n), has the codes' full covariance.

    Sampling there instead of from N(0, I) draws codes where G was taught to decode real volumes
    (cpu-small's ``latent_prior="encoded"``). The codes lie near a low-dimensional set; a diagonal
    Gaussian (``encoded-diagonal``) draws every dimension independently, off that set, and G turns
    such codes into one average volume (measured: bench_synthesize_cohort). Conditional models: one
    prior over all classes' codes.
    """
    device = next(model.parameters()).device
    codes = []
    for i in range(n):
        x = data.batch([i % len(data)], augment).to(device)
        codes.append(model.encode(x)[0].float().cpu())
    z = torch.stack(codes)
    prior = {"mean": z.mean(0).contiguous(), "std": z.std(0).contiguous()}
    if covariance:
        prior["basis"] = ((z - prior["mean"]) / (n - 1) ** 0.5).contiguous()
    return prior


def save_hagan(folder: Path, model: HAGAN, cfg: SynthesizeConfig, data: TrainingSet, steps: int, seconds: float,
               overwrite: bool = False, generator: torch.nn.Module | None = None) -> Path:
    """Write a model folder (``generator``, default the model's, both encoders, discriminator, metadata)."""
    extras = {"architecture": model.arch.to_dict(), "spacing_mm": data.spacing_mm, "label_names": data.label_names,
              "steps": steps, "train_seconds": round(seconds, 1),
              "parameters": {k: count_parameters(v) for k, v in model.named_children()}}
    card = (f"# HA-GAN ({model.arch.size}^3, width {model.arch.width}, z {model.arch.latent_dim})\n\n"
            f"Hierarchical amortized 3D GAN trained by medgap for {steps} iterations on "
            f"{len(data)} volume(s) ({data.spacing_mm:.3f} mm isotropic voxels, modality {cfg.data.modality}).\n\n"
            "Sample: `medgap synthesize sample THIS_FOLDER --n 4 --out samples/`\n"
            "Encode: `medgap synthesize encode THIS_FOLDER volume.nii.gz --out z.npy`\n")
    weights = {"generator": generator or model.generator, "encoder_high": model.encoder_high,
               "encoder_global": model.encoder_global, "discriminator": model.discriminator}
    extras["latent_prior"] = cfg.model.latent_prior
    if cfg.model.latent_prior != "normal":
        weights["latent_prior"] = encoded_prior(model, data, Augment.for_config(cfg, seed=12345),
                                                covariance=cfg.model.latent_prior == "encoded")
    return save_model(folder, method=METHOD, config=cfg, weights=weights, trained_on=data.describe(),
                      card=card, extras=extras, overwrite=overwrite)


def train(
    cfg: SynthesizeConfig,
    data: TrainingSet,
    out: str | Path | None,
    *,
    device: str = "auto",
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    max_seconds: float | None = None,
    run_dir: str | Path | None = None,
) -> TrainResult:
    """Train HA-GAN on ``data`` and write the model folder ``out``.

    The trainer contract of :mod:`medgap.training.contract`: checkpoints and metrics go to the run
    folder ``OUT.run/`` (or ``run_dir``, needed when ``out`` is None: a run without a model
    folder); a rerun resumes them only when settings (``cfg.train.seed`` included) and data are those
    of that run. An existing model folder is replaced only with ``overwrite``.

    ``max_seconds`` stops early (after a checkpoint) for equal-wall-clock comparisons; the result's
    ``steps`` says how far it got. Under torchrun only rank 0 writes.
    """
    if data.volumes.shape[1:] != (cfg.model.size,) * 3:
        raise InputError(None, f"training cubes are {data.volumes.shape[1:]}, config size is {cfg.model.size}")
    if out is None and run_dir is None:
        raise ValueError("give out or run_dir")
    if len(data) == 1:
        if cfg.data.augment:
            kinds = "affine/elastic" if cfg.data.modality == "ct" else "affine/elastic/intensity"
            effect = (f"random {kinds} augmentation stands in for a cohort, so samples show this anatomy, "
                      "deformed, not new subjects")
        else:
            effect = "without augmentation every sample tends to the same volume"
        warnings.warn(f"training on ONE volume: {effect}; train on a cohort for variety", stacklevel=2)
    if out is not None:
        check_output_folder(out, METHOD, overwrite=overwrite)
    ctx = setup_distributed(device)
    try:
        with make_run(out, METHOD, run_settings(cfg), fingerprint_arrays([data.volumes, data.labels]),
                      resume=resume, ctx=ctx, prepared=("cache",), path=run_dir,
                      upgrade=cfg.upgrade_keys) as run:
            return _fit(data, cfg, out, ctx, run, max_seconds, progress, overwrite)
    finally:
        ctx.close()


def run_settings(cfg: SynthesizeConfig) -> dict:
    """What defines a run: a rerun resumes only when these match (the iteration count may grow)."""
    return without(cfg.to_dict(), "train.steps", "train.checkpoint_every", "train.log_every")


def _fit(data: TrainingSet, cfg: SynthesizeConfig, model_dir, ctx, run: RunFolder, max_seconds: float | None,
         progress: bool, overwrite: bool) -> TrainResult:
    seed = cfg.train.seed
    seed_everything(seed)  # same initial weights on every rank
    model = HAGAN(cfg.architecture(data.num_classes)).to(ctx.device)
    step_fn = HAGANStep(model, cfg, wrap=ctx.wrap)
    ckpt = checkpoints(run, keep_last=cfg.train.keep_checkpoints)
    start, elapsed_before = 0, 0.0
    if run.resumable and ckpt.latest() is not None:
        start, extra = ckpt.restore(step_fn.modules(), step_fn.opt, max_step=cfg.train.steps)
        elapsed_before = extra.get("seconds", 0.0)
        if not isinstance(elapsed_before, (int, float)) or not 0 <= elapsed_before < 1e9:
            raise ModelFolderError(ckpt.latest(), f"damaged checkpoint: seconds {elapsed_before!r}")
        elapsed_before = float(elapsed_before)
    logger = MetricLogger(run.path, enabled=ctx.is_main)
    source, pool = data, None
    if cfg.data.augment and cfg.data.augment_pool:  # drawn with the run's seed, so a resumed run has the same pool
        pool = augmented_pool(data, cfg.data.augment_pool, Augment.for_config(cfg, seed=seed), cfg.data.cache_dtype,
                              progress=progress and ctx.is_main)
    if pool is not None:
        source, augment = pool, None
    else:
        augment = Augment.for_config(cfg, seed=seed + start)
    a, n, B = model.arch, len(source), cfg.train.batch_size
    window: list[float] = []
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    done = start

    def save_ckpt(at: int) -> None:
        if ctx.is_main:
            metric = float(np.mean(window)) if window else None
            ckpt.save(at, step_fn.modules(), step_fn.opt,
                      extra={"seconds": elapsed_before + time.perf_counter() - t0}, metric=metric)
        window.clear()

    model.train()
    for step in track(range(start, cfg.train.steps), total=cfg.train.steps - start, description="HA-GAN",
                      disable=not progress):
        # Global draws, identical on every rank (same seed): 2 x B/2 == 1 x B.
        idx = torch.randint(n, (B,))
        z = torch.randn(B, a.latent_dim)
        y_fake = torch.randint(max(a.num_classes, 1), (B,))
        k = 4 * int(torch.randint(a.positions, (1,)))
        local = ctx.shard(torch.arange(B))
        x = source.batch(idx[local], augment).to(ctx.device)
        y_real = torch.as_tensor(source.labels[idx[local].numpy()], device=ctx.device) if a.num_classes else None
        y_f = y_fake[local].to(ctx.device) if a.num_classes else None
        last = step_fn(x, z[local].to(ctx.device), k, y_real, y_f)
        check_finite_loss(last, step + 1, "lr_g")
        window.append(last["loss_eg"])
        if (step + 1) % cfg.train.log_every == 0 or step == start:
            logger.log(step + 1, **last)
        done = step + 1
        if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
            save_ckpt(done)
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            if done % cfg.train.checkpoint_every and done != cfg.train.steps:
                save_ckpt(done)
            break
    seconds = elapsed_before + time.perf_counter() - t0
    logger.close()
    out = None
    if ctx.is_main and model_dir is not None:
        out = save_hagan(Path(model_dir), model, cfg, data, done, seconds, overwrite, step_fn.sampling_generator())
    ctx.barrier()
    return TrainResult(out, run.path, done, start, seconds, last)
