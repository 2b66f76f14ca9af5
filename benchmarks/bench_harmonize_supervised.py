"""How far the blind default is from a supervised model that knows the source scanner (paired data).

    python benchmarks/bench_harmonize_supervised.py [--quick] [--seeds 2]

For each training seed the default cpu-small model (target flow + restoration net trained on the
real T1 cohort under *random* scanner-like changes) is trained as in bench_harmonize_quality. Then,
per in-family change (a gamma, a bias field, WM darker than GM, half resolution + noise, two
combinations), a restoration net of the same size, the same steps and the same training slices is
trained on pairs (that change applied to a cohort slice, the clean slice) -- the "known source
scanner with paired data" model the publication compares with -- and applied after the same Nyul
stage, without a gate. Every model is evaluated on the held-out real subjects of
bench_harmonize_quality (S1 and six slices: TEST; Colin 27: VALIDATION) under that change: PSNR in
the brain, mean +- sd over seeds.

Target (issue "harmonize"): the default's mean over the in-family changes >= the supervised bound's
mean - 1.0 dB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import markdown_table, mean_sd_cell

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import compare_methods, heldout_sets
from medgap.harmonize.restore import train_restoration
from medgap.harmonize.simulate import COMBINED_DOMAINS, HARD_DOMAINS, simulate
from medgap.harmonize.train import load_training_set, train

IN_FAMILY = ["gamma1.3"] + HARD_DOMAINS + COMBINED_DOMAINS
METHODS = {"histogram": ("histogram", None), "n4+histogram": ("n4+histogram", None), "nyul": ("nyul", None),
           "restore (default, blind)": ("restore", None)}
BOUND = "supervised bound (paired, this change)"


def supervised(h: Harmonizer, cfg: HarmonizeConfig, data, domain: str, seed: int) -> Harmonizer:
    """A Harmonizer whose restoration net was trained on (``domain`` applied, clean) pairs and is
    applied ungated after Nyul."""
    def change(clean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return simulate(clean, domain, seed=int(torch.randint(2**31 - 1, (1,), generator=g)),
                        threshold=cfg.harmonize.foreground_threshold)

    net, _ = train_restoration(data.slices, cfg.restore.replace(steps=cfg.restore_steps), cfg.data,
                               seed=cfg.train.seed, counts=data.counts,
                               threshold=cfg.harmonize.foreground_threshold, change=change)
    return Harmonizer(h.model, cfg.replace(restore={"output": "network"}), "cpu", h.info, net)


def run_seed(seed: int, tmp: Path, steps: int, every: int, domains: list[str]) -> dict:
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", f"train.seed={seed}",
                                                              "train.checkpoint_every=100000"])
    train(cfg, None, tmp / f"model{seed}", progress=False)
    h = Harmonizer.load(tmp / f"model{seed}", device="cpu")
    data = load_training_set(cfg)
    held = heldout_sets(cfg.flow.image_size, every, seed + 1)
    # compare_methods draws the change of the j-th domain with seed + j: each domain keeps its own draw
    res: dict = {"test_volume": {}, "test": {}, "validation": {}}
    for i, domain in enumerate(domains):
        methods = {**METHODS, BOUND: ("restore", supervised(h, cfg, data, domain, seed))}
        for part, (truth, brain, pos, separate) in held.items():
            out = compare_methods(h, truth, brain, pos, [domain], methods, seed=seed + 1 + i, separate=separate)
            res[part][domain] = out[domain]
    return res


def report(title: str, runs: list[dict], domains: list[str]) -> None:
    cols = [*METHODS, BOUND]
    rows = [[d] + [mean_sd_cell([r[d][c]["psnr_brain"] for r in runs]) for c in cols] for d in domains]
    means = {c: [np.mean([r[d][c]["psnr_brain"] for d in domains]) for r in runs] for c in cols}
    rows.append(["**mean**"] + [mean_sd_cell(means[c]) for c in cols])
    print()
    print(f"{title}. PSNR in the brain (dB), mean +- sd over training seeds:")
    print()
    print(markdown_table(["change"] + cols, rows))
    gap = np.array(means["restore (default, blind)"]) - np.array(means[BOUND])
    print()
    print(f"Default - supervised bound on the mean: {mean_sd_cell(gap)} dB (target >= -1.0).")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps and slices, two changes")
    # two seeds by default: each seed trains seven restoration nets (~25 min on 2 cores)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps, every = (60, 6) if args.quick else (300, 2)
    domains = ["gamma1.3", "wm_dark"] if args.quick else IN_FAMILY
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, every, domains) for s in seeds]
    print(f"cpu-small, {steps} flow steps + {10 * steps} restoration steps per model (the supervised nets: the same "
          f"size, steps and training slices), {len(seeds)} training seed(s).")
    for part, title in (("test_volume", "TEST: a real subject's volume (S1), every second slice, each randomly "
                                        "moved, harmonised as one volume"),
                        ("test", "TEST: six real subjects (one axial slice each, harmonised one by one)"),
                        ("validation", "VALIDATION: Colin 27")):
        report(title, [r[part] for r in runs], domains)


if __name__ == "__main__":
    main()
