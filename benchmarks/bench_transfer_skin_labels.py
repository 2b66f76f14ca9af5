"""How well the target lab's classes are estimated without its labels (the class alignment's input).

    python benchmarks/bench_transfer_skin_labels.py [--quick]

The development-lab pairs and target halves of bench_transfer_skin (3 seeds): the fraction of the
unlabelled half's spectra whose body site medgap.transfer.labels estimates correctly (balanced over
sites), by EM on single spectra and with the per-subject assignment the source's design implies.
Then under label shift (the targets of bench_transfer_skin_shift: three of the six sites): the same
with and without the search for the classes the target holds (``labels.present_classes``), and how
many of the target's spectra go to sites it never measured.
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
    label_shift(labs, seeds)


def label_shift(labs: dict, seeds) -> None:
    variants = {"EM + per-subject assignment, all six sites": False,
                "EM + per-subject assignment + search for the sites held (default)": True}
    for design_name in ("protocol", "per subject"):
        _shift_table(labs, seeds, variants, design_name)


def _shift_table(labs: dict, seeds, variants: dict, design_name: str) -> None:
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from bench_transfer_skin import SHIFTED_SITES
    from medgap.data.skin import DEVELOPMENT_LABS
    from medgap.transfer.data import fit_stats
    from medgap.transfer.interlab import split_target
    from medgap.transfer.labels import estimate_labels, subject_design

    rows = {k: {"accuracy": [], "absent": [], "right": []} for k in variants}
    for seed in seeds:
        per = {k: {"accuracy": [], "absent": [], "right": []} for k in variants}
        rng = np.random.default_rng(seed)
        for a, b in itertools.permutations(DEVELOPMENT_LABS, 2):
            if design_name == "protocol":
                target = labs[b].subset(np.flatnonzero(np.isin(labs[b].labels, SHIFTED_SITES)))
            else:  # every subject its own random three sites
                g = labs[b].groups
                target = labs[b].subset(np.sort(np.concatenate([
                    rng.choice(np.flatnonzero(g == s), min(3, int(np.sum(g == s))), replace=False)
                    for s in np.unique(g)])))
            source, (known, _) = labs[a], split_target(target, seed)
            s, t = fit_stats(source, True, l2=False), fit_stats(known, True, l2=False)
            z_s = s.whitened(torch.from_numpy(source.spectra)).numpy()
            z_t = t.whitened(torch.from_numpy(known.spectra)).numpy()
            design = subject_design(source.labels, source.groups, 6)
            for name, search in variants.items():
                est = estimate_labels(z_s, source.labels, z_t, 6, groups=known.groups, design=design,
                                      find_present=search)
                held = set(np.unique(known.labels))
                per[name]["accuracy"].append(balanced_accuracy_score(known.labels, est.labels))
                per[name]["absent"].append(np.mean(~np.isin(est.labels, list(held))))
                per[name]["right"].append(float(set(np.flatnonzero(est.prevalence > 0)) == held))
        for k in variants:
            for key in rows[k]:
                rows[k][key].append(per[k][key])
    if design_name == "protocol":
        print("\nLABEL SHIFT: targets hold 3 of the 6 sites (back of hand, cheek, forehead) on every subject; the "
              "same pairs and seeds. Balanced accuracy over the sites held; spectra put in sites the target never "
              "measured; pairs (of 20, mean over seeds) whose estimated classes are exactly the sites held.\n")
    else:
        print("\nNO LAB-WIDE SET: every target subject keeps a random three of its sites (all six occur in the "
              "lab), where the search must keep every class; columns as above.\n")
    print(markdown_table(["target labels estimated by", "balanced accuracy (%)", "spectra in absent sites (%)",
                          "pairs with the right sites"],
                         [[k, mean_sd_cell([np.mean(s) for s in r["accuracy"]], 100, 1),
                           mean_sd_cell([np.mean(s) for s in r["absent"]], 100, 1),
                           f"{np.mean([np.sum(s) for s in r['right']]):.1f}"] for k, r in rows.items()]))


if __name__ == "__main__":
    main()
