"""Quality of blind harmonisation on a held-out real subject, over training seeds.

For each seed: the default cpu-small model (target flow + restoration net) is trained on
the real T1 cohort (ICBM 2009a, ICBM 2009c, FSL MNI152, SRI24, brought into one look;
medgap.data.cohort). Real subjects never used for training, in the target look, each slice
randomly rotated/scaled/shifted, are pushed into simulated source domains (the publication's
gamma/exp/log; a bias field, white matter darker than grey matter, half resolution + noise;
two combinations), and every method's result is compared with the untouched slice (PSNR and
SSIM in the brain, and the Dice of a white-matter segmenter trained on the labelled target, on
the result against the untouched slice). Test (never used for choosing the method either): the
volume of pycortex's subject S1 and one slice each of six other subjects. Validation (the
method's choices were compared on it): Colin 27. Slice-to-slice consistency is measured on the
whole S1 and Colin 27 volumes.

Columns: the source unchanged; the baselines users try first (histogram matching, N4 +
histogram matching, and intensity-normalization's Nyul, WhiteStripe, z-score and FCM);
the publication's BlindHarmony and its no-flow ablation (alpha=0); the default (restore:
Nyul, then the target-trained network's correction, gated by its size) and its ablation
that always takes the network's output (the Nyul column is the ablation without the
network). Mean +- sd over seeds. Also: seconds to harmonise the whole 1 mm Colin 27 volume
with the default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import markdown_table, mean_sd_cell

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import (compare_methods, heldout_subject_slices, slice_flicker,
                                       train_wm_segmenter)
from medgap.harmonize.simulate import COMBINED_DOMAINS, DOMAINS, HARD_DOMAINS
from medgap.harmonize.train import load_training_set, train

FLICKER_DOMAINS = ["gamma1.3", "wm_dark", "lowres_noise"]

BASELINES = ["identity", "histogram", "n4+histogram", "nyul", "whitestripe", "zscore", "fcm"]


def run_seed(seed: int, tmp: Path, steps: int, every: int, domains: list[str]) -> dict:
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", f"train.seed={seed}",
                                                              "train.checkpoint_every=100000"])
    t0 = time.perf_counter()
    summary = train(cfg, None, tmp / f"model{seed}", progress=False).metrics
    train_s = time.perf_counter() - t0
    h = Harmonizer.load(tmp / f"model{seed}", device="cpu")
    no_flow = Harmonizer.load(tmp / f"model{seed}", device="cpu", overrides=("harmonize.alpha=0",))
    net_only = Harmonizer.load(tmp / f"model{seed}", device="cpu", overrides=("restore.output=network",))
    truth, brain, position = heldout_subject_slices(cfg.flow.image_size, every=every, seed=seed + 1)
    methods = {m: (m, None) for m in BASELINES}
    methods.update({"blindharmony (paper)": ("blindharmony", None),
                    "blindharmony alpha=0": ("blindharmony", no_flow),
                    "restore: network only": ("restore", net_only),
                    "restore (default)": ("restore", None)})
    # a white-matter segmenter trained on the labelled target (ICBM152): Dice of its WM on the result
    # against its WM on the untouched slice
    seg = train_wm_segmenter(load_training_set(cfg.replace(data={"cohort": "icbm152", "holdout_every": 4})), 200,
                             seed=seed)
    res = {"validation": compare_methods(h, truth, brain, position, domains, methods, seed=seed + 1,
                                         segmenter=seg)}
    from medgap.harmonize.data import load_test_slices
    from medgap.harmonize.evaluate import perturb

    test, test_brain, test_pos, _ = load_test_slices(cfg.flow.image_size)
    test, test_brain = perturb(test, test_brain, seed=seed + 1)
    res["test"] = compare_methods(h, test, test_brain, test_pos, domains, methods, seed=seed + 1, separate=True,
                                  segmenter=seg)
    # the real test volume (S1): every second slice, each randomly moved, harmonised as one volume
    s1 = heldout_subject_slices(cfg.flow.image_size, every=every, seed=seed + 1, name="s1")
    res["test_volume"] = compare_methods(h, *s1, domains, methods, seed=seed + 1, segmenter=seg)
    # slice-to-slice consistency on consecutive, unperturbed slices of the held-out volume
    for key, name in (("flicker", "colin27"), ("flicker_test", "s1")):
        volume_slices = heldout_subject_slices(cfg.flow.image_size, every=1, seed=None, name=name)
        res[key] = {d: slice_flicker(h, *volume_slices, d, methods, seed=seed + 1) for d in FLICKER_DOMAINS}
    # a whole real 1 mm volume through the file API with the default method
    from medgap.data.cohort import load_brain
    from medgap.io import write_nifti

    colin = load_brain("colin27")
    src = write_nifti(tmp / "colin.nii.gz", colin.t1.data, like=colin.t1)
    t0 = time.perf_counter()
    h.apply_file(src, tmp / f"colin_h{seed}.nii.gz")
    res["volume_seconds"] = time.perf_counter() - t0
    res["train_seconds"] = train_s
    res["restore_seconds"] = summary.get("restore", {}).get("seconds")
    res["test_slices"] = len(truth)
    return res


def report(title: str, runs: list[dict], domains: list[str]) -> None:
    cols = list(runs[0][domains[0]])
    groups = {"mean (all)": domains,
              "mean (publication's gamma/exp/log)": [d for d in domains if "+" not in d and d not in HARD_DOMAINS],
              "mean (hard + combined)": [d for d in domains if d in HARD_DOMAINS or "+" in d]}
    rows = [[d] + [mean_sd_cell([r[d][c]["psnr_brain"] for r in runs]) for c in cols] for d in domains]
    for name, ds in groups.items():
        rows.append([f"**{name}**"] + [mean_sd_cell([np.mean([r[d][c]["psnr_brain"] for d in ds]) for r in runs])
                                       for c in cols])
    rows.append(["SSIM in brain, mean (all)"] + [mean_sd_cell([np.mean([r[d][c]["ssim_brain"] for d in domains])
                                                        for r in runs]) for c in cols])
    rows.append(["WM Dice vs the untouched slice, mean (all)"] + [
        mean_sd_cell([np.mean([r[d][c]["wm_dice"] for d in domains]) for r in runs]) for c in cols])
    rows.append(["seconds, all domains"] + [f"{np.mean([r['seconds'][c] for r in runs]):.1f}" for c in cols])
    print()
    print(f"{title}. PSNR in the brain (dB), mean +- sd over training seeds:")
    print()
    print(markdown_table(["domain"] + cols, rows))
    print()
    base = [c for c in BASELINES if c != "identity"]
    best = max(base, key=lambda c: np.mean([r[d][c]["psnr_brain"] for r in runs for d in domains]))
    gain = [np.mean([r[d]["restore (default)"]["psnr_brain"] - r[d][best]["psnr_brain"] for d in domains])
            for r in runs]
    flow = [np.mean([r[d]["blindharmony (paper)"]["psnr_brain"] - r[d]["blindharmony alpha=0"]["psnr_brain"]
                     for d in domains]) for r in runs]
    print(f"Default minus the best baseline ({best}) on the mean: {mean_sd_cell(gain)} dB. "
          "Per change class none of the "
          f"baselines undoes: " + ", ".join(
              f"{d} {mean_sd_cell([r[d]['restore (default)']['psnr_brain'] - max(r[d][c]['psnr_brain'] for c in base) for r in runs])}"
              for d in HARD_DOMAINS) + " dB over the best baseline on that change. "
          f"BlindHarmony's flow (alpha=1e-3 vs 0): {mean_sd_cell(flow)} dB.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps and slices")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps, every = (60, 6) if args.quick else (300, 2)
    domains = DOMAINS + COMBINED_DOMAINS
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, every, domains) for s in seeds]
    print(f"cpu-small, {steps} flow steps + {10 * steps} restoration steps per model, {len(seeds)} training seed(s) "
          f"({np.mean([r['train_seconds'] for r in runs]):.0f} s training each on this machine). Whole 1 mm Colin 27 "
          f"volume with the default: {np.mean([r['volume_seconds'] for r in runs]):.1f} s.")
    for part, title in (("test_volume", "TEST: a real subject's volume (S1) never used for training nor for choosing "
                                        "the method (every second slice, each randomly moved, harmonised as one "
                                        "volume)"),
                        ("test", "TEST: six real subjects never used for training nor for choosing the method "
                                 "(one axial slice each, harmonised one by one)"),
                        ("validation", f"VALIDATION: Colin 27 (held out of training; the method's choices were "
                                       f"compared on it), {runs[0]['test_slices']} slices per domain")):
        report(title, [r[part] for r in runs], domains)
    cols = list(runs[0]["flicker"][FLICKER_DOMAINS[0]])
    for key, name in (("flicker_test", "the test volume S1"), ("flicker", "the validation volume Colin 27")):
        print()
        print(f"Slice-to-slice consistency on {name} (whole volume, consecutive unmoved slices): mean absolute "
              "change of the per-slice mean error in the brain from one slice to the next, x 1000 (lower = less "
              "flicker), mean +- sd over seeds:")
        print()
        print(markdown_table(["change"] + cols, [[d] + [mean_sd_cell([r[key][d][c] for r in runs]) for c in cols]
                                                 for d in FLICKER_DOMAINS]))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=float))


if __name__ == "__main__":
    main()
