"""The user's first baseline for bench_synthesize_anatomy: a plain full-resolution 3D GAN.

    python benchmarks/bench_synthesize_anatomy_baseline.py [--quick] [--seeds 0,1,2] [--seconds 150]

Same data (the augmented ICBM152 T1 at 64^3), same width, latent size, batch, learning rates and
precision as the cpu-small default, trained for a fixed wall-clock budget per seed (default 150 s:
what the default's 600 iterations take on 2 idle cores -- 131 s in the demo), then scored like
bench_synthesize_anatomy (4 samples, sample seed 100 + training seed).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench_synthesize_anatomy import _mean_sd
from machine import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, 10 s")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args()

    from medgap.synthesize.baseline import train_baseline
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import sample_dataset
    from medgap.synthesize.evaluate import anatomy_scores

    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    seconds = 10.0 if args.quick else args.seconds
    cfg = SynthesizeConfig.from_preset("cpu-small", overrides=["train.steps=1000000"])
    data = sample_dataset(cfg)
    training = np.asarray(data.volumes)
    runs = []
    for seed in seeds:
        model, steps, secs = train_baseline(data, cfg, seed=seed, max_seconds=seconds)
        with torch.no_grad():
            fake = model.sample(4, seed=100 + seed)
        runs.append({"steps": steps, "seconds": secs, **anatomy_scores(fake, training)})
    print(f"Full-resolution 3D GAN (64^3, width {cfg.model.width}, z {cfg.model.latent_dim}, batch {cfg.train.batch_size}, lr_g "
          f"{cfg.train.lr_g}, lr_d {cfg.train.lr_d}, precision {cfg.train.precision}) on the augmented ICBM152 T1, {seconds:.0f} s of "
          f"training per seed, {len(seeds)} seed(s); 4 samples scored against the training volume as in "
          "bench_synthesize_anatomy (mean +- sd over seeds).\n")
    print(markdown_table(["model", "iterations", "train s", "r", "Dice", "interior r"], [[
        "full-resolution 3D GAN", f"{np.mean([r['steps'] for r in runs]):.0f}",
        f"{np.mean([r['seconds'] for r in runs]):.0f}",
        *[_mean_sd([r[k] for r in runs]) for k in ("r", "dice", "interior_r")]]]))


if __name__ == "__main__":
    main()
