"""A candidate default, on VALIDATION only: the restoration net trained 3x longer, also on residual non-brain tissue.

    python benchmarks/bench_harmonize_longer_training.py [--quick] [--seeds 2]

bench_harmonize_restore_capacity found that 3x the restoration steps (9,000) adds about 2.9 dB to the
net's own estimate on WM darker than GM, but that the doubt check (thresholds in units of the 3,000-step
net's r0) then shuts the gate there; bench_harmonize_out_of_family found that training also on random
residual non-brain tissue (``restore.nonbrain_p=0.3``) makes the doubt check unnecessary. This benchmark
trains, per seed, the default cpu-small model and the candidate (the same flow; ``restore.steps=9000
restore.nonbrain_p=0.3 restore.doubt=null``) and scores both on Colin 27 (VALIDATION: every second slice,
each randomly moved) under the in-family and the out-of-family changes: PSNR in the brain minus Nyul's,
mean +- sd over seeds (worst seed). The TEST subjects are not touched here.

The candidate was put together from a first look at seed 0 on this validation subject; the rule for
replacing the default, set before seed 1 ran: on validation it gains in family on every seed and keeps
every out-of-family change >= Nyul - 0.2 dB on every seed -- then, once, the TEST benchmarks. It met the
rule here; on TEST (bench_harmonize_out_of_family) it failed the out-of-family half on S1, so it is an
option (``machine.harmonize_longer_option``), not the default.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from machine import harmonize_longer_option, markdown_table, mean_sd_cell

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import compare_methods, heldout_subject_slices
from medgap.harmonize.simulate import COMBINED_DOMAINS, HARD_DOMAINS, OUT_OF_FAMILY, OUT_OF_FAMILY_COMBINED
from medgap.harmonize.train import train

IN_FAMILY = ["gamma1.3"] + HARD_DOMAINS + COMBINED_DOMAINS
OUTSIDE = OUT_OF_FAMILY + OUT_OF_FAMILY_COMBINED
COLUMNS = {"nyul": ("nyul", None), "restore (default)": ("restore", None), "candidate": ("restore", "candidate")}


def run_seed(seed: int, tmp: Path, steps: int, every: int, domains: list[str], candidate: tuple[str, ...]) -> dict:
    settings = [f"train.steps={steps}", f"train.seed={seed}", "train.checkpoint_every=100000"]
    seconds = {}
    for name, extra in (("default", ()), ("candidate", candidate)):
        result = train(HarmonizeConfig.from_preset("cpu-small", overrides=settings + list(extra)), None,
                       tmp / f"{name}{seed}", progress=False)
        seconds[name] = result.metrics["restore"]["seconds"]
    h = Harmonizer.load(tmp / f"default{seed}", device="cpu")
    methods = {c: (m, Harmonizer.load(tmp / f"{o}{seed}", device="cpu") if o else None) for c, (m, o) in COLUMNS.items()}
    truth, brain, pos = heldout_subject_slices(h.cfg.flow.image_size, every=every, seed=seed + 1, name="colin27")
    res = compare_methods(h, truth, brain, pos, domains, methods, seed=seed + 1)
    res["train_seconds"] = seconds
    return res


def report(runs: list[dict], domains: list[str], title: str) -> None:
    rows, means = [], {c: [] for c in COLUMNS if c != "nyul"}
    for d in domains:
        row = [d, mean_sd_cell([r[d]["nyul"]["psnr_brain"] for r in runs])]
        for c in means:
            margin = [r[d][c]["psnr_brain"] - r[d]["nyul"]["psnr_brain"] for r in runs]
            row.append(f"{mean_sd_cell(margin)} ({min(margin):+.2f})")
        rows.append(row)
    for c in means:
        means[c] = [np.mean([r[d][c]["psnr_brain"] - r[d]["nyul"]["psnr_brain"] for d in domains]) for r in runs]
    rows.append(["**mean**", ""] + [f"{mean_sd_cell(means[c])} ({min(means[c]):+.2f})" for c in means])
    print()
    print(f"{title}: PSNR in the brain minus Nyul's (dB), mean +- sd over seeds (worst seed); Nyul's own PSNR "
          "in the second column:")
    print()
    print(markdown_table(["change", "nyul (dB)", "default - nyul", "candidate - nyul"], rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps and slices, four changes")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps, every = (60, 6) if args.quick else (300, 2)
    candidate = tuple(harmonize_longer_option(steps))
    domains = ["bias", "wm_dark", "dura", "dura+lowres_noise"] if args.quick else IN_FAMILY + OUTSIDE
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, every, domains, candidate) for s in seeds]
    train_s = {k: np.mean([r["train_seconds"][k] for r in runs]) for k in ("default", "candidate")}
    print(f"cpu-small, {steps} flow steps, {len(seeds)} training seed(s). Default: {10 * steps} restoration steps "
          f"with the doubt check. Candidate: {' '.join(candidate)}. VALIDATION only (Colin 27). Training the "
          f"restoration net took {train_s['default']:.0f} s (default) and {train_s['candidate']:.0f} s (candidate) "
          "on this machine.")
    report(runs, [d for d in domains if d in IN_FAMILY], "In-family changes")
    report(runs, [d for d in domains if d in OUTSIDE], "Out-of-family changes (never used to build the method)")


if __name__ == "__main__":
    main()
