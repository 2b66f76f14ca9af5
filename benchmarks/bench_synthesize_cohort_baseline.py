"""HA-GAN against the user's first baseline, a plain full-resolution 3D GAN, on the real T1 cohort.

    python benchmarks/bench_synthesize_cohort_baseline.py [--quick] [--seeds 0,1,2]

Same data as bench_synthesize_cohort (the five training brains of the real T1 cohort at 64^3, S1
held out). Per seed, the cpu-small default trains its 750 iterations, then the full-resolution 3D GAN
(:mod:`medgap.synthesize.baseline`: same generator layers, width, latent size, batch, learning rates
and precision) trains for the same wall-clock, both in this run on this machine. Both are scored
exactly like bench_synthesize_cohort (eight samples, sample seed 100 + training seed; its
``score``), and memorisation is also counted over 64 more draws per model with two yardsticks:

* the issue's: a sample closer to a training brain than that brain's nearest other training brain;
* a real subject's: a sample closer to a training brain than the held-out real subject S1 is to its
  own nearest training brain (a new person, who is no copy of anyone, sets the scale).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench_synthesize_cohort import score
from machine import markdown_table, mean_sd_cell

DRAWS = 64


def copy_counts(fake: np.ndarray, training: np.ndarray, heldout_distance: float) -> dict:
    from medgap.synthesize.evaluate import memorisation_scores

    m = memorisation_scores(fake, training)
    to_real = np.asarray(m["sample_to_nearest_real"])
    return {"copies_issue": m["copies"], "copies_real": int((to_real < heldout_distance).sum()),
            "nearest_counts": np.bincount(m["nearest_real"], minlength=len(training))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, 20 iterations")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)

    from medgap.synthesize.api import Synthesizer
    from medgap.synthesize.baseline import train_baseline
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import cohort_dataset
    from medgap.synthesize.evaluate import memorisation_scores
    from medgap.synthesize.train import train

    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    extra = ["train.steps=20", "data.augment_pool=8"] if args.quick else []
    cfg = SynthesizeConfig.from_preset("cpu-small", overrides=extra)
    data = cohort_dataset(cfg)
    training = np.asarray(data.volumes, dtype=np.float32)
    heldout = np.asarray(cohort_dataset(cfg, split="heldout").volumes, dtype=np.float32)
    real = np.concatenate([training, heldout])
    s1 = memorisation_scores(heldout, training)
    heldout_distance = s1["sample_to_nearest_real"][0]
    between = s1["real_to_nearest_other_real"]
    runs: dict[str, list[dict]] = {"HA-GAN (cpu-small default)": [], "full-resolution 3D GAN": []}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train(cfg.replace(train={"seed": seed}), data, Path(tmp) / "model", run_dir=Path(tmp) / "run", device="cpu",
                  progress=False, resume=False, overwrite=True)
            seconds = time.perf_counter() - start
            syn = Synthesizer.load(Path(tmp) / "model", device="cpu")
            fake, more = syn.sample(8, seed=100 + seed), syn.sample(DRAWS, seed=1000 + seed)
        runs["HA-GAN (cpu-small default)"].append({"steps": cfg.train.steps, "seconds": seconds,
                                                   **score(fake, training, real),
                                                   **copy_counts(more, training, heldout_distance)})
        model, steps, secs = train_baseline(data, cfg.replace(train={"steps": 10**7}), seed=seed, max_seconds=seconds)
        with torch.no_grad():
            fake = model.sample(8, seed=100 + seed)
            more = model.sample(DRAWS, seed=1000 + seed)
        runs["full-resolution 3D GAN"].append({"steps": steps, "seconds": secs, **score(fake, training, real),
                                               **copy_counts(more, training, heldout_distance)})

    print(f"Real T1 cohort (5 training brains at 64^3, S1 held out), {len(seeds)} seed(s); per seed the cpu-small "
          f"HA-GAN ({cfg.train.steps} iterations) and a full-resolution 3D GAN of the same width, latent size, batch, "
          "learning rates and precision trained for the same wall-clock in this run. Eight samples scored as in "
          "bench_synthesize_cohort (mean +- sd over seeds). Copies over "
          f"{DRAWS} more draws per model (mean per seed, % of draws): the issue's yardstick (closer to a training brain "
          f"than that brain's nearest other: {', '.join(f'{v:.3f}' for v in between)}) and a real subject's (closer "
          f"than the held-out S1 is to its nearest training brain, {heldout_distance:.3f}; S1 itself is a copy by "
          f"the issue's yardstick: {'yes' if s1['copies'] else 'no'}).\n")
    keys = ("ms_ssim", "interior_r", "r", "dice", "nearest")
    rows = []
    for name, rs in runs.items():
        rows.append([name, f"{np.mean([r['steps'] for r in rs]):.0f}", f"{np.mean([r['seconds'] for r in rs]):.0f}",
                     *[mean_sd_cell([r[k] for r in rs], digits=3) for k in keys],
                     mean_sd_cell([r["fid"] for r in rs], digits=4),
                     f"{100 * np.mean([r['copies_issue'] for r in rs]) / DRAWS:.1f}",
                     f"{100 * np.mean([r['copies_real'] for r in rs]) / DRAWS:.1f}",
                     " / ".join(f"{v:.0f}" for v in np.mean([r["nearest_counts"] for r in rs], axis=0))])
    print(markdown_table(["model", "iterations", "train s", "MS-SSIM", "interior r", "r", "Dice", "nearest",
                          "2.5D FID", "copies, issue's yardstick (%)", "copies, real subject's yardstick (%)",
                          "draws nearest each training brain"], rows))
    print("\nTargets (issue): MS-SSIM <= the training brains' + 0.10, interior r >= 0.5, r >= 0.6, Dice >= 0.75, "
          "no copies. Training brains in the last column's order: ICBM 2009a, ICBM 2009c, MNI152 (FSL), SRI24, "
          "Colin 27.")


if __name__ == "__main__":
    main()
