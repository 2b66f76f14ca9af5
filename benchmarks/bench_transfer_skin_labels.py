"""How well the target lab's classes are estimated without its labels (the class alignment's input).

    python benchmarks/bench_transfer_skin_labels.py [--quick]

The development-lab pairs and target halves of bench_transfer_skin (3 seeds): the fraction of the
unlabelled half's spectra whose body site medgap.transfer.labels estimates correctly (balanced over
sites), by EM on single spectra and with the per-subject assignment the source's design implies.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table, mean_sd_cell  # noqa: E402


def main() -> None:
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from medgap.data.skin import DEVELOPMENT_LABS, load_archive, skin_lab
    from medgap.transfer.data import fit_stats
    from medgap.transfer.interlab import split_target
    from medgap.transfer.labels import estimate_labels, subject_design

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    archive = load_archive()
    labs = {o: skin_lab(o, archive=archive) for o in DEVELOPMENT_LABS}
    seeds = range(1 if args.quick else 3)
    scores: dict[str, list[list[float]]] = {"EM, spectra one by one": [], "EM + per-subject assignment": []}
    for seed in seeds:
        per_pair = {k: [] for k in scores}
        for a, b in itertools.permutations(DEVELOPMENT_LABS, 2):
            source, (known, _) = labs[a], split_target(labs[b], seed)
            s, t = fit_stats(source, True, l2=False), fit_stats(known, True, l2=False)
            z_s = s.whitened(torch.from_numpy(source.spectra)).numpy()
            z_t = t.whitened(torch.from_numpy(known.spectra)).numpy()
            design = subject_design(source.labels, source.groups, 6)
            for name, groups in (("EM, spectra one by one", None), ("EM + per-subject assignment", known.groups)):
                est = estimate_labels(z_s, source.labels, z_t, 6, groups=groups, design=design)
                per_pair[name].append(balanced_accuracy_score(known.labels, est.labels))
        for k, v in per_pair.items():
            scores[k].append(v)
    print(f"20 ordered pairs of labs {', '.join(map(str, DEVELOPMENT_LABS))} x {len(seeds)} seed(s); six sites "
          "(chance 16.7 %). Cells: mean +- sd over seeds of the mean over pairs; worst pair: its mean over seeds.\n")
    print(markdown_table(["target labels estimated by", "balanced accuracy (%)", "worst pair (%)"],
                         [[k, mean_sd_cell([np.mean(s) for s in v], 100, 1),
                           f"{100 * np.min(np.mean(v, axis=0)):.1f}"] for k, v in scores.items()]))
    print("\nPer pair (mean +- sd over seeds):\n")
    pairs = list(itertools.permutations(DEVELOPMENT_LABS, 2))
    print(markdown_table(["pair", *scores], [[f"{a} -> {b}", *[mean_sd_cell([s[i] for s in v], 100, 1)
                                                               for v in scores.values()]]
                                             for i, (a, b) in enumerate(pairs)]))


if __name__ == "__main__":
    main()
