"""BlindHarmony's optimiser, piece by piece: structure terms, start, MAP -- each with and without the flow.

    python benchmarks/bench_harmonize_structure.py [--quick] [--seeds 3]

The publication's Eq. 1 holds the result to the source by a *global* NCC, which keeps the source's
contrast (a contrast inversion stays inverted), and starts from the target's template. This
benchmark measures, on the same trained target flow (cpu-small, real cohort, as in
bench_harmonize_quality; no restoration net), what each alternative gives:

- structure terms that do not carry the source's contrast: normalised gradient fields (NGF) and a
  local NCC (9 x 9 windows) in place of the global NCC (``harmonize.structure``). Their step b1 was
  chosen among 1, 10 and 100 on Colin 27 with one flow (NGF 10, local NCC 100; the publication's
  1e3 made NGF diverge: 9 dB);
- starting from the source after N4 bias correction and histogram matching (``harmonize.init=
  standardized``) instead of the template, alone and with NGF;
- MAP with gradients through the flow and a prior weight that counts (``harmonize.mode=autograd``,
  Adam, 50 iterations, alpha 1e-2).

Every variant also runs with ``harmonize.alpha=0`` (the flow's prior weight zero): the difference is
what the flow adds. Reference columns: histogram matching, N4 + histogram matching, Nyul. Data: the
13 simulated source changes on held-out Colin 27 (validation) and on the real test volume S1
(every second slice, each randomly moved). PSNR in the brain, mean +- sd over training seeds.
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
from medgap.harmonize.simulate import COMBINED_DOMAINS, DOMAINS, HARD_DOMAINS
from medgap.harmonize.train import train

BASELINES = ["histogram", "n4+histogram", "nyul"]
VARIANTS = {
    "paper (global NCC, template start)": [],
    "NGF": ["harmonize.structure=ngf", "harmonize.b1=10"],
    "local NCC": ["harmonize.structure=local_ncc", "harmonize.b1=100"],
    "N4 + HM start": ["harmonize.init=standardized"],
    "NGF, N4 + HM start": ["harmonize.structure=ngf", "harmonize.b1=10", "harmonize.init=standardized"],
    "local NCC, N4 + HM start": ["harmonize.structure=local_ncc", "harmonize.b1=100", "harmonize.init=standardized"],
    "MAP through the flow (Adam, 50 it., alpha 1e-2)": ["harmonize.mode=autograd", "harmonize.iterations=50",
                                                        "harmonize.alpha=1e-2"],
}


def run_seed(seed: int, tmp: Path, steps: int, every: int, domains: list[str]) -> dict:
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", f"train.seed={seed}",
                                                              "train.checkpoint_every=100000", "restore.steps=0"])
    folder = tmp / f"model{seed}"
    train(cfg, None, folder, progress=False)
    h = Harmonizer.load(folder, device="cpu")
    methods = {m: (m, None) for m in BASELINES}
    for name, overrides in VARIANTS.items():
        methods[name] = ("blindharmony", Harmonizer.load(folder, device="cpu", overrides=tuple(overrides)))
        methods[f"{name}, alpha=0"] = ("blindharmony", Harmonizer.load(
            folder, device="cpu", overrides=(*overrides, "harmonize.alpha=0")))
    res = {}
    for key, name in (("validation (Colin 27)", "colin27"), ("test (S1 volume)", "s1")):
        data = heldout_subject_slices(cfg.flow.image_size, every=every, seed=seed + 1, name=name)
        res[key] = compare_methods(h, *data, domains, methods, seed=seed + 1)
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps and slices")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps, every = (60, 16) if args.quick else (300, 8)
    domains = DOMAINS + COMBINED_DOMAINS
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, every, domains) for s in seeds]
    print(f"cpu-small target flow, {steps} steps, no restoration net; {len(seeds)} training seed(s); one slice in "
          f"{every}; 13 simulated changes. PSNR in the brain (dB), mean +- sd over seeds. 'flow adds': the variant "
          "minus its alpha=0 run (the flow's prior weight zero).")
    hard = [d for d in domains if d in HARD_DOMAINS or "+" in d]
    for split in runs[0]:
        rows = []
        for name in BASELINES + list(VARIANTS):
            def mean_psnr(col, ds=domains, r=None):
                return np.mean([r[split][d][col]["psnr_brain"] for d in ds])
            row = [name, mean_sd_cell([mean_psnr(name, r=r) for r in runs]),
                   mean_sd_cell([mean_psnr(name, hard, r) for r in runs])]
            if name in VARIANTS:
                row += [mean_sd_cell([mean_psnr(f"{name}, alpha=0", r=r) for r in runs]),
                        mean_sd_cell([mean_psnr(name, r=r) - mean_psnr(f"{name}, alpha=0", r=r) for r in runs]),
                        f"{np.mean([r[split]['seconds'][name] for r in runs]):.1f}"]
            else:
                row += ["-", "-", f"{np.mean([r[split]['seconds'][name] for r in runs]):.1f}"]
            rows.append(row)
        print()
        print(f"**{split}**")
        print()
        print(markdown_table(["method", "mean (13 changes)", "mean (hard + combined)", "alpha=0: mean",
                              "flow adds (dB)", "seconds, all changes"], rows))


if __name__ == "__main__":
    main()
