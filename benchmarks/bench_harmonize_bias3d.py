"""Whole volumes under a bias field that varies in all three directions: the default's 3D bias stage.

    python benchmarks/bench_harmonize_bias3d.py [--quick] [--seeds 3]

For each training seed the default cpu-small model is trained as in bench_harmonize_quality. The
held-out real subjects (S1: TEST; Colin 27: VALIDATION, where the stage's gate was chosen) are taken
as whole volumes (every slice, unmoved) and changed by ``medgap.harmonize.simulate``: a smooth 3D
multiplicative field (``bias3d``: three random cosines over z, y, x, about +-0.5 in log units,
rescaled once for the volume), the same with a gamma, no change at all, and three slice changes
without a 3D field (gamma 1.3, WM darker than GM, half resolution + noise), where the stage must
stay shut, and an odd/even slice gain of +-8 % (``interleave``, an interleaved 2D acquisition), which
the slice levelling must remove. Methods: histogram matching, N4 + histogram matching per slice (SimpleITK, 2D), N4 over
the volume (3D, full weight) + histogram matching, Nyul, the default without its volume stage
(``restore.bias_correction=none``, no slice levelling), without the slice levelling only
(``restore.level_slices``) and the default (slices levelled along z, then the 3D stage weighted by
the spread of N4's field).
Cells: PSNR in the brain (dB) and the slice-to-slice flicker (x1000: mean change of the per-slice
mean error from one slice to the next), mean +- sd over seeds.

Targets (issue "harmonize"): on the 3D field, alone and with a gamma, the default >= N4 + histogram
matching; flicker <= per-slice histogram matching's on every change.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import markdown_table, mean_sd_cell

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.baselines import n4_volume
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import heldout_subject_slices
from medgap.harmonize.simulate import simulate, simulate_volume
from medgap.harmonize.train import train
from medgap.metrics import psnr

CHANGES = ["bias3d", "bias3d+gamma1.3", "none", "gamma1.3", "wm_dark", "lowres_noise", "interleave"]
COLUMNS = ["source", "histogram", "n4+histogram (2D)", "n4 3D + histogram", "nyul", "default without 3D stage",
           "default without slice levelling", "restore (default)"]


def change(truth: torch.Tensor, name: str, seed: int) -> torch.Tensor:
    if name == "none":
        return truth.clone()
    if name == "interleave":  # odd and even slices with gains 0.92 and 1.08 (an interleaved 2D acquisition)
        odd_even = 1 + 0.08 * (1 - 2 * (torch.arange(len(truth)) % 2)).float()
        return (truth * odd_even[:, None, None, None]).clamp(0, 1)
    if name.startswith("bias3d"):
        return simulate_volume(truth, name, seed=seed)
    return simulate(truth, name, seed=seed)


def _scores(out: torch.Tensor, truth: torch.Tensor, brain: torch.Tensor) -> dict:
    m = brain[:, 0].float()
    err = ((out - truth)[:, 0] * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1)
    keep = m.sum(dim=(1, 2)) > 0
    return {"psnr": float(np.mean([psnr(a, b, mask=k) for a, b, k in zip(out[keep, 0], truth[keep, 0], brain[keep, 0])])),
            "flicker": float(err[keep].diff().abs().mean()) * 1000}


def run_subject(h: Harmonizer, plain: Harmonizer, name: str, image_size, changes: list[str], seed: int) -> dict:
    truth, brain, pos = heldout_subject_slices(image_size, every=1, seed=None, name=name)
    res: dict = {"seconds_3d_stage": [], "weights": {}}
    for i, c in enumerate(changes):
        xs = change(truth, c, seed + i)
        outs = {"source": xs, "histogram": h.harmonize_slices(xs, pos, "histogram"),
                "n4+histogram (2D)": h.harmonize_slices(xs, pos, "n4+histogram"),
                "n4 3D + histogram": h.harmonize_slices(n4_volume(xs, brain), pos, "histogram"),
                "nyul": h.harmonize_slices(xs, pos, "nyul"),
                "default without 3D stage": plain.harmonize_slices(xs, pos, "restore")}
        outs["default without slice levelling"] = h.harmonize_slices(h.correct_bias_3d(xs, brain), pos, "restore")
        t = time.perf_counter()
        corrected = h.volume_stage(xs, brain)
        res["seconds_3d_stage"].append(time.perf_counter() - t)
        outs["restore (default)"] = h.harmonize_slices(corrected, pos, "restore")
        res["weights"][c] = h.last_bias
        res[c] = {col: _scores(out, truth, brain) for col, out in outs.items()}
    return res


def run_seed(seed: int, tmp: Path, steps: int, changes: list[str]) -> dict:
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", f"train.seed={seed}",
                                                              "train.checkpoint_every=100000"])
    train(cfg, None, tmp / f"model{seed}", progress=False)
    h = Harmonizer.load(tmp / f"model{seed}", device="cpu")
    plain = Harmonizer.load(tmp / f"model{seed}", device="cpu", overrides=("restore.bias_correction=none",))
    return {part: run_subject(h, plain, name, cfg.flow.image_size, changes, seed + 1)
            for part, name in (("test_volume", "s1"), ("validation", "colin27"))}


def report(title: str, runs: list[dict], changes: list[str]) -> None:
    print()
    print(f"{title}. PSNR in the brain (dB) / flicker (x1000), mean +- sd over training seeds; last column: the "
          "3D stage's weight (N4 field spread):")
    print()
    rows = []
    for c in changes:
        cells = ["(the truth)" if c == "none" and col == "source" else
                 f"{mean_sd_cell([r[c][col]['psnr'] for r in runs])} / {mean_sd_cell([r[c][col]['flicker'] for r in runs], 1, 1)}"
                 for col in COLUMNS]
        w = [r["weights"][c] for r in runs]
        stage = ", ".join(f"{x['weight']:.2f} ({x['field_spread']:.3f})" if x else "-" for x in w)
        rows.append([c, *cells, stage])
    print(markdown_table(["change", *COLUMNS, "3D stage weight (spread) per seed"], rows))
    for c in ("bias3d", "bias3d+gamma1.3"):
        if c in changes:
            margin = [r[c]["restore (default)"]["psnr"] - r[c]["n4+histogram (2D)"]["psnr"] for r in runs]
            margin3 = [r[c]["restore (default)"]["psnr"] - r[c]["n4 3D + histogram"]["psnr"] for r in runs]
            print(f"\n{c}: default - N4 + histogram matching {mean_sd_cell(margin)} dB (2D N4), "
                  f"{mean_sd_cell(margin3)} dB (3D N4) (target >= 0).")
    worse = [c for c in changes if np.mean([r[c]["restore (default)"]["flicker"] for r in runs])
             > np.mean([r[c]["histogram"]["flicker"] for r in runs])]
    print(f"\nFlicker above per-slice histogram matching's: {', '.join(worse) or 'none'} (target: none). "
          f"Volume stage (levelling + 3D N4): {np.mean([s for r in runs for s in r['seconds_3d_stage']]):.1f} s per volume.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps, three changes")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps = 60 if args.quick else 300
    changes = ["bias3d", "none", "gamma1.3"] if args.quick else CHANGES
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, changes) for s in seeds]
    print(f"cpu-small, {steps} flow steps + {10 * steps} restoration steps per model, {len(seeds)} training seed(s); "
          "whole held-out volumes on the model grid (every slice, unmoved).")
    for part, title in (("test_volume", "TEST: S1, whole volume"), ("validation", "VALIDATION: Colin 27, whole volume")):
        report(title, [r[part] for r in runs], changes)


if __name__ == "__main__":
    main()
