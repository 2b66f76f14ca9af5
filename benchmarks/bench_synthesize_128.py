"""HA-GAN in its own regime: 128^3, against the full-resolution 3D GAN at equal wall-clock and memory.

    python benchmarks/bench_synthesize_128.py [--quick] [--minutes 25] [--seed 0] [--same-batch]

Data: the ICBM152 T1 at 1.5 mm in a 128^3 cube. A pool of 64 augmented copies (affine, elastic,
intensity; seed 99) is drawn once and every model trains on it without further augmentation: at
128^3 MONAI's augmentation costs ~1.3 s per batch of 4 on 2 cores, more than an HA-GAN step, and
would hide the models' own speed. The real reference set is 16 other copies (seed 7).

Two models, both at the cpu-small widths (width 0.25, z 128, Adam lr 4e-4 for G and D, precision
``auto``), each trained for the same wall-clock time (default 25 minutes):

1. HA-GAN, the cpu-small recipe, batch 4;
2. the full-resolution GAN at the largest batch whose training peak memory stays within HA-GAN's
   (+5 %): equal memory and equal time. ``--same-batch`` adds the full-resolution GAN at HA-GAN's
   batch (equal time, more memory).

Peak memory of a training iteration is measured in fresh subprocesses (bench_synthesize.measure).
Each model is scored at a third, two thirds and all of its time: 16 samples against the 16 held-out
copies -- 3D FID and MMD^2 (the foundation's seeded 3D ResNet-10 at the volumes' native 128^3),
per-plane 2.5D FID (seeded 2D ResNet-10, MAISI's protocol), MS-SSIM between samples -- and 4 samples
by anatomy_scores against the template (foreground-box r, Dice, interior r). Fixed random feature
networks: comparable within medgap only. One training seed (a run of this length per seed does not
fit a session); the spread over time points is shown instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_synthesize import measure
from machine import markdown_table

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "docs" / "figures" / "synthesize_128.png"
N_EVAL = 16
MEMORY_SLACK = 1.05


def _scores(fake, held_out, template, volume_features, slice_features) -> dict:
    from medgap.synthesize.evaluate import anatomy_scores, distribution_scores, ms_ssim_diversity, plane_fid

    dist = distribution_scores(held_out, fake, volume_features)
    planes = plane_fid(held_out, fake, slice_features)
    anatomy = anatomy_scores(fake[:4], template[None])
    return {"fid": dist["fid"], "mmd2": dist["mmd2"], "fid_2.5d": planes["fid_2.5d"],
            **{f"fid_{p}": planes[f"fid_{p}"] for p in ("axial", "coronal", "sagittal")},
            "ms_ssim": ms_ssim_diversity(fake), "r": anatomy["r"], "dice": anatomy["dice"],
            "interior_r": anatomy["interior_r"]}


def _peak_mb(kind: str, cfg, batch: int) -> float:
    spec = {"kind": kind, "size": cfg.model.size, "width": cfg.model.width, "latent": cfg.model.latent_dim, "batch": batch,
            "precision": cfg.train.precision, "recon_weight": cfg.train.recon_weight, "repeats": 1}
    out = measure(spec)
    if "error" in out:
        raise RuntimeError(f"memory probe {kind} batch {batch}: {out['error']}")
    return float(out["peak_mb"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="64^3, 20 s per model, pool of 8")
    parser.add_argument("--minutes", type=float, default=25.0, help="training wall-clock per model")
    parser.add_argument("--same-batch", action="store_true", help="also the full-res GAN at HA-GAN's batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from medgap.metrics.features import SliceFeatureExtractor, VolumeFeatureExtractor
    from medgap.synthesize.api import Synthesizer
    from medgap.synthesize.baseline import train_baseline
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import TrainingSet, augmented_copies, sample_dataset
    from medgap.synthesize.evaluate import save_montage
    from medgap.synthesize.train import train
    from medgap.training.precision import compute_dtype

    size = 64 if args.quick else 128
    seconds = 20.0 if args.quick else 60.0 * args.minutes
    pool = 8 if args.quick else 64
    checkpoints = [seconds / 3, 2 * seconds / 3, seconds]
    cfg = SynthesizeConfig.from_preset("cpu-small", overrides=[
        f"model.size={size}", "data.augment=false", "train.steps=100000000", "train.checkpoint_every=100000000"])
    precision = "bf16" if compute_dtype(cfg.train.precision, "cpu") is not None else "fp32"

    t0 = time.perf_counter()
    brain = sample_dataset(cfg, resolution_mm=1.5)
    template = np.asarray(brain.volumes[0], np.float32)
    data = TrainingSet(augmented_copies(template, pool, seed=99), np.zeros(pool, np.int64), ["t1"], brain.spacing_mm,
                       ["ICBM152 T1, augmented"])
    held_out = augmented_copies(template, N_EVAL, seed=7)
    prep_s = time.perf_counter() - t0

    hagan_mb = _peak_mb("train", cfg, cfg.train.batch_size)
    full_mb = {b: _peak_mb("train_fullres", cfg, b) for b in (cfg.train.batch_size, cfg.train.batch_size // 2, 1)}
    fitting = [b for b, mb in full_mb.items() if mb <= MEMORY_SLACK * hagan_mb]
    equal_memory_batch = max(fitting) if fitting else None

    volume_features = VolumeFeatureExtractor(input_size=None)
    slice_features = SliceFeatureExtractor()
    results: dict[str, list[dict]] = {}
    finals: dict[str, np.ndarray] = {}

    # HA-GAN: train() resumes its own checkpoints between the scoring points.
    with tempfile.TemporaryDirectory() as tmp:
        name = f"HA-GAN, batch {cfg.train.batch_size}"
        rows, trained = [], 0.0
        for until in checkpoints:
            res = train(cfg.replace(train={"seed": args.seed}), data, Path(tmp) / "m", run_dir=Path(tmp) / "run", device="cpu",
                        max_seconds=until - trained, progress=False, overwrite=True)
            trained = res.seconds
            fake = Synthesizer.load(Path(tmp) / "m", device="cpu").sample(N_EVAL, seed=1)
            rows.append({"iterations": res.steps, "seconds": trained,
                         **_scores(fake, held_out, template, volume_features, slice_features)})
        results[name], finals[name] = rows, fake

    full_batches = [equal_memory_batch or 1]
    if args.same_batch and cfg.train.batch_size not in full_batches:
        full_batches.append(cfg.train.batch_size)
    for batch in full_batches:
        name = f"full-res GAN, batch {batch}"
        rows = []

        def score(model, steps, secs):
            rows.append({"iterations": steps, "seconds": secs,
                         **_scores(model.sample(N_EVAL, seed=1), held_out, template, volume_features, slice_features)})

        model, _, _ = train_baseline(data, cfg.replace(train={"batch_size": batch}), seed=args.seed, max_seconds=seconds,
                                     checkpoints=checkpoints, on_checkpoint=score)
        results[name], finals[name] = rows, model.sample(4, seed=1)

    copies = _scores(augmented_copies(template, N_EVAL, seed=11), held_out, template, volume_features,
                     slice_features)

    print(f"{size}^3 (ICBM152 T1 at 1.5 mm, pool of {pool} augmented copies drawn once in {prep_s:.0f} s, no "
          f"on-the-fly augmentation), width {cfg.model.width}, z {cfg.model.latent_dim}, precision {cfg.train.precision} ({precision} "
          f"here), lr_g {cfg.train.lr_g}, lr_d {cfg.train.lr_d}, training seed {args.seed}, {seconds / 60:.0f} min of training "
          f"per model, scored at thirds of it. {N_EVAL} samples vs {N_EVAL} held-out copies: 3D FID/MMD^2 "
          f"({volume_features.description}), 2.5D FID = mean of per-plane FIDs ({slice_features.description}); "
          "4 samples' foreground-box r, Dice and interior r against the template (bench_synthesize_anatomy). "
          "Random-weight feature networks: comparable within medgap only.\n")
    print("Peak memory of one training iteration (fresh process, peak RSS):\n")
    mem_rows = [[f"HA-GAN, batch {cfg.train.batch_size}", f"{hagan_mb:,.0f}", "1.00"]]
    mem_rows += [[f"full-res GAN, batch {b}", f"{mb:,.0f}", f"{mb / hagan_mb:.2f}"] for b, mb in full_mb.items()]
    print(markdown_table(["model", "peak RSS MB", "vs HA-GAN"], mem_rows))
    if equal_memory_batch is None:
        print("\nNo full-res batch fits within HA-GAN's memory (+5 %): the full-res GAN runs at batch 1, with more "
              "memory.\n")
    else:
        print(f"\nEqual memory: the full-res GAN at batch {equal_memory_batch} is the largest within HA-GAN's peak "
              f"(+{100 * (MEMORY_SLACK - 1):.0f} %).\n")
    header = ["model", "minutes", "iterations", "3D FID", "MMD^2", "2.5D FID", "FID axial", "FID coronal",
              "FID sagittal", "MS-SSIM", "r", "Dice", "interior r"]
    keys = ["fid", "mmd2", "fid_2.5d", "fid_axial", "fid_coronal", "fid_sagittal", "ms_ssim", "r", "dice",
            "interior_r"]
    table = [[name, f"{row['seconds'] / 60:.1f}", row["iterations"], *[f"{row[k]:.3g}" for k in keys]]
             for name, rows in results.items() for row in rows]
    table.append(["(augmented copies vs held-out copies)", "-", "-", *[f"{copies[k]:.3g}" for k in keys]])
    print(markdown_table(header, table))

    last = {name: rows[-1] for name, rows in results.items()}
    hagan_name = next(iter(last))
    verdicts = []
    for name, row in list(last.items())[1:]:
        wins = [k for k in ("fid", "mmd2", "fid_2.5d") if last[hagan_name][k] < row[k]]
        verdicts.append(f"HA-GAN vs {name}: HA-GAN lower on {', '.join(wins) if wins else 'none'} of 3D FID, MMD^2, "
                        "2.5D FID")
    print("\nAt the end of training: " + "; ".join(verdicts) + ".")
    if not args.quick:
        save_montage(FIGURE, {**{k: v[:4] for k, v in finals.items()}, "augmented T1": held_out[:4]},
                     title=f"{size}^3 after {seconds / 60:.0f} min each: orthogonal mid-slices")
        print(f"\nSamples at the end of training: `{FIGURE.relative_to(ROOT)}`.")


if __name__ == "__main__":
    main()
