"""What each piece of the default cINN contributes, and whether its likelihood of held-out real data
picks good transfers.

    python benchmarks/bench_transfer_ablation.py [--quick] [--seeds 3]

Same data and protocol as bench_transfer_quality (transfer_runs.py). Each row changes one thing of
the default cpu-small cINN (whitened input, domain-only condition, 3 of 12 blocks conditional,
maximum likelihood + adversarial, 5 epochs). "held-out real bits/dim": the cINN's negative
log-likelihood of the 10 % of the real spectra kept out of its training, after the last epoch (lower =
better density model); the last lines say whether it ranks the runs as the classifier does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table  # noqa: E402
from transfer_runs import arguments, mean_sd, score, stand_in, transfer  # noqa: E402

VARIANTS = {
    "default": [],
    "no whitening (per-channel standardisation only)": ["train.whiten=false"],
    "9 of 12 blocks conditional (earlier cpu-small)": ["hsi.n_conditional=9"],
    "maximum likelihood only (no adversarial loss)": ["train.gan_weight=0"],
    "condition domain + labels, random labels for real (publication)": ["condition=domain+label"],
    "condition domain + labels, class-mixture likelihood for real": ["condition=domain+label",
                                                                     "train.real_labels=mixture"],
    "+ transport penalty (weight 1)": ["train.transport_weight=1"],
    "20 epochs": ["train.epochs=20"],
    "40 epochs": ["train.epochs=40"],
    "publication's recipe (no whitening, labels, 9 conditional)": ["train.whiten=false", "condition=domain+label",
                                                                   "hsi.n_conditional=9"],
}


def main() -> None:
    quick, seeds = arguments()
    n, epochs = (2000, 2) if quick else (8000, 5)
    acc, mmd, bpd, secs, coral = {}, {}, {}, {}, []
    for seed in range(seeds):
        sim, real, unlabelled, test = stand_in(n, seed)
        sources = {"coral": transfer(sim, unlabelled, ["method=coral"], seed)[0]}
        for name, overrides in VARIANTS.items():
            # a row's own epochs come later in the list and win
            sources[name], sec, history = transfer(sim, unlabelled, [f"train.epochs={epochs}", *overrides], seed)
            secs.setdefault(name, []).append(sec)
            bpd.setdefault(name, []).append(history[-1].get("heldout_real_bits_per_dim", np.nan))
        result = score(real, sim, sources, test, seed)
        coral.append(result["coral"]["balanced_accuracy"])
        for name in VARIANTS:
            acc.setdefault(name, []).append(result[name]["balanced_accuracy"])
            mmd.setdefault(name, []).append(result[name]["mmd2"])
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    rows = [[name, mean_sd(acc[name], 100), mean_sd(100 * (np.array(acc[name]) - np.array(coral))),
             mean_sd(mmd[name]), mean_sd(bpd[name]), f"{np.mean(secs[name]):.0f}"] for name in VARIANTS]
    print(f"sim = {n} simple spectra, real = {n} stand-in spectra (unlabelled), classifiers tested on {n} stand-in "
          f"spectra of other subjects; {epochs} epochs unless the row says otherwise; {seeds} seeds, mean +- sd. "
          f"CORAL on the same seeds: {100 * np.mean(coral):.1f} +- {100 * np.std(coral, ddof=1) if seeds > 1 else 0:.1f} %.\n")
    print(markdown_table(["cINN variant", "RF balanced acc. (%)", "minus CORAL (points)", "MMD^2 to real",
                          "held-out real bits/dim", "train s"], rows))
    # bits/dim are measured in the network's input space: comparable only between runs that whiten
    same_space = [k for k, ov in VARIANTS.items() if "train.whiten=false" not in ov]
    a = np.concatenate([acc[k] for k in same_space])
    b = np.concatenate([bpd[k] for k in same_space])
    ok = np.isfinite(b)
    rho = spearmanr(b[ok], a[ok]).statistic if ok.sum() > 2 else float("nan")
    print(f"\nSpearman correlation over the {ok.sum()} runs with whitened input (bits/dim of runs without it live in "
          f"another space) between held-out real bits/dim and balanced accuracy: {rho:+.2f} (a useful selection "
          f"signal would be clearly negative: lower bits/dim, better transfer).")


if __name__ == "__main__":
    main()
