"""HA-GAN on the real T1 mini-cohort: variety, anatomy and memorisation of cpu-small, piece by piece.

    python benchmarks/bench_synthesize_cohort.py [--quick] [--seeds 0,1,2] [--ablation-seeds 0,1]

Training set: the installed real T1 cohort (:func:`medgap.synthesize.data.cohort_dataset`: five
skull-stripped brains on one 192 mm grid at 64^3; pycortex's S1 held out), as ``medgap synthesize
train`` gets it without arguments. Each recipe trains its full iteration count per seed (precision
``auto``: bf16 where the CPU has it, as the default does; one extra row times and scores the
default at fp32, what an AVX2-only CPU runs). Eight samples per model (sample seed 100 + training
seed) are scored:

* variety: mean slice-wise MS-SSIM between samples, beside that of the five training brains
  (target: <= real + 0.10);
* anatomy against the nearest training brain (:func:`medgap.synthesize.evaluate.anatomy_scores`):
  r over the voxels inside the head (target >= 0.5), foreground-box r (>= 0.6) and Dice (>= 0.75);
* memorisation (:func:`medgap.synthesize.evaluate.memorisation_scores`): the RMS distance of the
  sample closest to a training brain, beside the closest two training brains; "copies" counts
  samples closer to a training brain than that brain's nearest other training brain (target 0);
* 2.5D FID of the samples against the six real brains (the foundation's seeded 2D ResNet features;
  comparable within this table only).

The latent prior needs no retraining: the default's models are also sampled with a diagonal
Gaussian fitted to the same codes and with N(0, I). Mean +- sd over seeds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from machine import markdown_table, mean_sd_cell

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "docs" / "figures" / "synthesize_cohort.png"

DEFAULT = "default (cpu-small)"
TIMING = "default at fp32"  # the time an AVX2-only CPU takes: one seed
# one piece of the default off per row; the last two are whole recipes
RECIPES = {
    DEFAULT: [],
    TIMING: ["train.precision=fp32"],
    "no DiffAugment": ["train.diff_augment=false"],
    "no minibatch std": ["model.minibatch_std=false"],
    "no EMA generator": ["train.ema_decay=0"],
    "no R1 penalty": ["train.r1_gamma=0"],
    "Adam beta1 0 (was)": ["train.betas=[0, 0.999]"],
    "recon_weight 1 (was)": ["train.recon_weight=1"],
    "cpu-small before this round": ["train.diff_augment=false", "model.minibatch_std=false", "train.ema_decay=0", "train.r1_gamma=0",
                                    "data.augment_pool=0", "train.betas=[0, 0.999]", "train.recon_weight=1", "model.latent_prior=encoded-diagonal",
                                    "train.steps=600"],
    "paper recipe at cpu-small size": ["train.steps=600", "train.lr_g=1e-4", "train.precision=fp32", "train.recon_weight=0", "model.latent_prior=normal",
                                       "data.augment_pool=0", "train.diff_augment=false", "model.minibatch_std=false", "train.ema_decay=0",
                                       "train.r1_gamma=0", "train.betas=[0, 0.999]"],
}
PRIORS = {"z from a diagonal Gaussian of the codes": "diagonal", "z ~ N(0, I) (the publication)": "normal"}


def score(fake: np.ndarray, training: np.ndarray, real: np.ndarray) -> dict:
    from medgap.synthesize.evaluate import anatomy_scores, memorisation_scores, ms_ssim_diversity, plane_fid

    anatomy = anatomy_scores(fake, training)
    copies = memorisation_scores(fake, training)
    return {"interior_r": anatomy["interior_r"], "r": anatomy["r"], "dice": anatomy["dice"],
            "ms_ssim": ms_ssim_diversity(fake), "nearest": min(copies["sample_to_nearest_real"]),
            "copies": copies["copies"], "fid": plane_fid(real, fake)["fid_2.5d"]}


def run_recipe(overrides: list[str], seed: int, data, real, tmp: Path, priors: bool) -> dict:
    from medgap.synthesize.api import Synthesizer
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.train import train

    cfg = SynthesizeConfig.from_preset("cpu-small", overrides=overrides).replace(train={"seed": seed})
    start = time.perf_counter()
    train(cfg, data, tmp / "model", run_dir=tmp / "run", device="cpu", progress=False, resume=False, overwrite=True)
    seconds = time.perf_counter() - start
    syn = Synthesizer.load(tmp / "model", device="cpu")
    training = np.asarray(data.volumes, dtype=np.float32)
    fake = syn.sample(8, seed=100 + seed)
    out = {"seconds": seconds, "samples": fake, **score(fake, training, real)}
    if priors and syn.latent_prior is not None:  # the same model and draws, sampled from the other priors
        full = syn.latent_prior
        syn.latent_prior = {"mean": full["mean"], "std": full["std"]}
        out["diagonal"] = score(syn.sample(8, seed=100 + seed), training, real)
        syn.latent_prior = None
        out["normal"] = score(syn.sample(8, seed=100 + seed), training, real)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, 20 iterations, two recipes")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the default")
    parser.add_argument("--ablation-seeds", default="0,1", help="seeds of every other row")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)

    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import cohort_dataset
    from medgap.synthesize.evaluate import memorisation_scores, ms_ssim_diversity, save_montage

    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    ablation_seeds = [0] if args.quick else [int(s) for s in args.ablation_seeds.split(",")]
    recipes = dict(list(RECIPES.items())[:2]) if args.quick else RECIPES
    extra = ["train.steps=20", "data.augment_pool=8"] if args.quick else []
    cfg = SynthesizeConfig.from_preset("cpu-small")
    data = cohort_dataset(cfg)
    training = np.asarray(data.volumes, dtype=np.float32)
    real = np.concatenate([training, np.asarray(cohort_dataset(cfg, split="heldout").volumes, dtype=np.float32)])
    results: dict[str, list[dict]] = {}
    for name, overrides in recipes.items():
        for seed in seeds if name == DEFAULT else ablation_seeds[:1] if name == TIMING else ablation_seeds:
            with tempfile.TemporaryDirectory() as tmp:
                results.setdefault(name, []).append(
                    run_recipe(overrides + extra, seed, data, real, Path(tmp), priors=name == DEFAULT))

    ms_real = ms_ssim_diversity(training)
    between = memorisation_scores(training, training)["real_to_nearest_other_real"]
    heldout = memorisation_scores(real[-1:], training)["sample_to_nearest_real"][0]
    print(f"cpu-small HA-GAN ({cfg.model.size}^3, width {cfg.model.width}, z {cfg.model.latent_dim}, batch {cfg.train.batch_size}, "
          f"{cfg.train.steps} iterations) on the real T1 cohort (5 brains, S1 held out); default over "
          f"{len(seeds)} seed(s), other rows over {len(ablation_seeds)}; mean +- sd over seeds. Eight samples per "
          f"model. MS-SSIM between samples (training brains: {ms_real:.3f}; target <= {ms_real + 0.1:.3f}); "
          "interior r, r, Dice against the nearest training brain (targets >= 0.5, >= 0.6, >= 0.75; the held-out "
          "real subject S1 scores interior r 0.49 against its nearest training brain, the voxel-wise average of the "
          "five 0.88); nearest: RMS distance of the sample closest to a training brain (the closest two training "
          f"brains are {min(between):.3f} apart, each training brain's nearest other: "
          f"{', '.join(f'{v:.3f}' for v in between)}; S1 is {heldout:.3f} from its nearest); copies: samples "
          "closer to a training brain than that brain's nearest other (of 8); 2.5D FID against the six real brains "
          "(seeded 2D ResNet-10 features, comparable within this table only). Train s: wall-clock of `train` "
          "on this machine's 2 cores (precision auto = bf16 here unless the row says fp32).\n")
    header = ["recipe", "seeds", "train s", "MS-SSIM", "interior r", "r", "Dice", "nearest", "copies", "2.5D FID"]

    def row(name: str, runs: list[dict], key: str | None = None) -> list:
        at = [r[key] if key else r for r in runs]
        return [name, len(runs), f"{np.mean([r['seconds'] for r in runs]):.0f}",
                *[mean_sd_cell([a[k] for a in at], digits=3) for k in ("ms_ssim", "interior_r", "r", "dice", "nearest")],
                f"{np.mean([a['copies'] for a in at]):.1f}", mean_sd_cell([a["fid"] for a in at], digits=4)]

    rows = []
    for name, runs in results.items():
        rows.append(row(name, runs))
        if name == DEFAULT:
            rows += [row(f"default, {label}", runs, key) for label, key in PRIORS.items() if key in runs[0]]
    print(markdown_table(header, rows))
    if not args.quick:
        first = results[DEFAULT][0]["samples"]
        save_montage(FIGURE, {"default, seed 0": first[:4], "more samples": first[4:],
                              "before this round": results["cpu-small before this round"][0]["samples"],
                              "real T1 brains": real}, per_row=6)
        print(f"\nSamples of seed 0 beside the six real brains (S1 last): `{FIGURE.relative_to(ROOT)}`.")


if __name__ == "__main__":
    main()
