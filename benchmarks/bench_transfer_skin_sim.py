"""Sim-to-real on real skin: two-layer simulated spectra transferred to the archive's real spectra.

    python benchmarks/bench_transfer_skin_sim.py [--quick] [--seeds 3]

Source: 600 simulated subjects x 6 sites (medgap.data.spectra.skin: melanin epidermis over blood
dermis, labelled light / intermediate / dark skin). Target: the real spectra of the development
labs (origins 1, 2, 3, 4, 9; 450-700 nm, where the simulator's chromophore tables start), split by
subject: one half, unlabelled, to train each transfer; the other half (held-out subjects) to measure
realism: MMD^2 (channels standardised by the target) and the balanced accuracy of a classifier
telling the transferred simulation from held-out real spectra (0.5 = indistinguishable).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table, mean_sd_cell  # noqa: E402

METHODS = {
    "standardise": ["method=standardise"],
    "CORAL": ["method=coral"],
    "CycleGAN": ["method=cyclegan"],
    "cINN (default: skin types aligned, one per subject, then the global moments re-matched)": [],
    "cINN, global alignment": ["train.align=global"],
    "ablation: cINN, skin types aligned, without the global re-match": ["train.align=class"],
}


def main() -> None:
    import torch

    from medgap.data.skin import DEVELOPMENT_LABS, skin_lab
    from medgap.data.spectra.skin import on_skin_grid, simulate_skin
    from medgap.transfer.interlab import realism, split_target, transfer_source, without_labels

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = range(1 if args.quick else args.seeds)
    real = on_skin_grid(skin_lab(list(DEVELOPMENT_LABS)))
    rows: dict[str, list[dict]] = {"simulation (no transfer)": [], **{m: [] for m in METHODS}}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    started = time.perf_counter()
    for seed in seeds:
        sim = simulate_skin(150 if args.quick else 600, seed=seed)
        known, test = split_target(real, seed)
        unlabelled = without_labels(known)
        rows["simulation (no transfer)"].append(realism(sim, test, seed))
        for m, overrides in METHODS.items():
            out, sec = transfer_source(sim, unlabelled, overrides, seed)
            rows[m].append(realism(out, test, seed))
            seconds[m].append(sec)
        print(f"seed {seed} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"{len(sim)} simulated spectra ({len(sim) // 6} subjects) -> {len(real)} real spectra of "
          f"{len(np.unique(real.groups))} subjects (labs {', '.join(map(str, DEVELOPMENT_LABS))}); "
          f"{len(seeds)} seed(s), mean +- sd.\n")
    table = [[m, mean_sd_cell([r["mmd2"] for r in v], 1, 4), mean_sd_cell([r["two_sample_accuracy"] for r in v], 100, 1),
              f"{np.mean(seconds[m]):.1f}" if m in seconds else "-"] for m, v in rows.items()]
    print(markdown_table(["source", "MMD^2 to held-out real subjects", "two-sample accuracy (%)", "train + apply (s)"],
                         table))
    print("\nPer seed (MMD^2 / two-sample accuracy %):\n")
    print(markdown_table(["source", *[f"seed {s}" for s in seeds]],
                         [[m, *[f"{r['mmd2']:.4f} / {100 * r['two_sample_accuracy']:.1f}" for r in v]] for m, v in rows.items()]))
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
