"""Downstream tissue segmentation by a segmenter medgap did not write: ANTs Atropos on harmonised images.

    python benchmarks/bench_harmonize_atropos.py [--quick] [--seeds 3]

For each training seed the default cpu-small model (target flow + restoration net on the real T1
cohort, as in bench_harmonize_quality) is trained; held-out real subjects in the target look (S1:
TEST, never used to build or tune the method; Colin 27: VALIDATION), every second slice, each
randomly moved, are pushed through the in-family changes (a gamma, a smooth bias field, WM darker
than GM, half resolution + noise, two combinations) and the out-of-family ones (Gibbs ringing,
motion ghosting, thick slices, residual dura, a 1.5 T SPGR contrast, three combinations). ANTs
Atropos (antspyx: k-means start, MRF; medgap.metrics.atropos) labels CSF, GM and WM in the brain of
the untouched slices (the truth) and of each method's result; cells are the mean Dice over the three
tissues and the mean absolute error of the tissue volumes (% of the truth's), mean +- sd over seeds.

Targets (issue "harmonize"): the default's mean tissue Dice >= the best baseline's + 0.03, and its
tissue-volume error lower than the best baseline's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from machine import markdown_table, mean_sd_cell

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import compare_methods, heldout_subject_slices
from medgap.harmonize.simulate import COMBINED_DOMAINS, HARD_DOMAINS, OUT_OF_FAMILY, OUT_OF_FAMILY_COMBINED
from medgap.harmonize.train import train

METHODS = {"source (no harmonisation)": ("identity", None), "histogram": ("histogram", None),
           "n4+histogram": ("n4+histogram", None), "nyul": ("nyul", None), "restore (default)": ("restore", None)}
BASELINES = ["histogram", "n4+histogram", "nyul"]
IN_FAMILY = ["gamma1.3"] + HARD_DOMAINS + COMBINED_DOMAINS
DOMAINS = IN_FAMILY + OUT_OF_FAMILY + OUT_OF_FAMILY_COMBINED


def run_seed(seed: int, tmp: Path, steps: int, every: int, domains: list[str]) -> dict:
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", f"train.seed={seed}",
                                                              "train.checkpoint_every=100000"])
    train(cfg, None, tmp / f"model{seed}", progress=False)
    h = Harmonizer.load(tmp / f"model{seed}", device="cpu")
    res = {}
    for part, name in (("test_volume", "s1"), ("validation", "colin27")):
        held = heldout_subject_slices(cfg.flow.image_size, every=every, seed=seed + 1, name=name)
        res[part] = compare_methods(h, *held, domains, METHODS, seed=seed + 1, tissues=True)
    return res


def report(title: str, runs: list[dict], domains: list[str]) -> None:
    cols = list(METHODS)

    def cell(d, c, key, scale=1.0, digits=3):
        return mean_sd_cell([r[d][c][key] * scale for r in runs], 1, digits)

    rows = [[d] + [f"{cell(d, c, 'tissue_dice')} / {cell(d, c, 'tissue_volume_error', digits=1)}" for c in cols]
            for d in domains]
    means = {c: {key: [np.mean([r[d][c][key] for d in domains]) for r in runs]
                 for key in ("tissue_dice", "tissue_volume_error")} for c in cols}
    rows.append(["**mean**"] + [f"{mean_sd_cell(means[c]['tissue_dice'], 1, 3)} / "
                                f"{mean_sd_cell(means[c]['tissue_volume_error'], 1, 1)}" for c in cols])
    print()
    print(f"{title}. Atropos CSF/GM/WM against the truth's: mean tissue Dice / mean tissue-volume error (%), "
          "mean +- sd over training seeds:")
    print()
    print(markdown_table(["change"] + cols, rows))
    best_dice = max(BASELINES, key=lambda c: np.mean(means[c]["tissue_dice"]))
    best_volume = min(BASELINES, key=lambda c: np.mean(means[c]["tissue_volume_error"]))
    default = means["restore (default)"]
    margin = np.array(default["tissue_dice"]) - np.array(means[best_dice]["tissue_dice"])
    print()
    print(f"Default - best baseline ({best_dice}) in mean tissue Dice: {mean_sd_cell(margin, 1, 3)} "
          f"(target >= +0.03). Tissue-volume error: default {np.mean(default['tissue_volume_error']):.1f} %, "
          f"best baseline ({best_volume}) {np.mean(means[best_volume]['tissue_volume_error']):.1f} % (target: lower).")
    per_tissue = [[c] + [mean_sd_cell([np.mean([r[d][c][f"tissue_dice_{t}"] for d in domains]) for r in runs], 1, 3)
                         for t in ("CSF", "GM", "WM")] for c in cols]
    print()
    print(markdown_table(["method", "Dice CSF", "Dice GM", "Dice WM"], per_tissue))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps and slices, four changes")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps, every = (60, 6) if args.quick else (300, 2)
    domains = ["gamma1.3", "bias", "gibbs", "dura"] if args.quick else DOMAINS
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, every, domains) for s in seeds]
    print(f"cpu-small, {steps} flow steps + {10 * steps} restoration steps per model, {len(seeds)} training seed(s); "
          f"one slice in {every} of each held-out subject. In-family changes: {', '.join(IN_FAMILY)}; out of "
          f"family (never used to build or tune the method): {', '.join(OUT_OF_FAMILY + OUT_OF_FAMILY_COMBINED)}.")
    for part, title in (("test_volume", "TEST: S1 (a real subject never used for training nor for choosing the "
                                        "method)"), ("validation", "VALIDATION: Colin 27")):
        report(title, [r[part] for r in runs], [d for d in domains if d in DOMAINS])
        inside = [d for d in domains if d in IN_FAMILY]
        if inside and len(inside) < len(domains):
            print()
            print("In-family changes only:")
            report(title + " (in family)", [r[part] for r in runs], inside)


if __name__ == "__main__":
    main()
