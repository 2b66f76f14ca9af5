"""Transfer between real labs: 15,256 measured skin spectra of the International Skin Spectra Archive.

    python benchmarks/bench_transfer_skin.py [--quick] [--seeds 3] [--pairs 3-9,1-4] [--test-labs]
                                             [--label-shift] [--methods "CORAL;cINN (default)"]

Every ordered pair of the development labs (origins 1, 2, 3, 4, 9; the six body locations all of
them measured): the source lab's labelled spectra are transferred towards the target lab, whose
subjects are split in halves -- one unlabelled half to train the transfer with, one held-out half
whose spectra (as measured) test a random forest trained on the transferred source (balanced
accuracy over the six sites; chance 16.7 %). Realism against the held-out subjects: MMD^2 and a
two-sample classifier's balanced accuracy (0.5 = indistinguishable). ``oracle``: the forest trained
on the target's own first half with its true labels. Every method is trained on cpu-small settings
with the same seeds. The test labs (origins 5, 6, 7, 8, 10, 11) are read only with ``--test-labs``,
which runs the chosen methods once on their pairs. ``--label-shift`` keeps only three sites (back of
hand, cheek, forehead) in every target lab: the source knows six, so a transfer must not move
source classes onto target spectra of other classes (balanced accuracy over the three present
sites; predictions of absent sites count as errors).

Rows beyond the user's baselines (the ablation): the cINN without class alignment (one global
map, brightness kept), without the per-subject assignment (EM on single spectra), with the
publication's protocol (L2-normalised spectra, global alignment, standardised not whitened,
label-conditioned) at cpu-small size, fully class-wise (alignment strength 1 instead of the one
reverse validation picks), without the re-match of the global moments after the class-wise map,
class-wise CORAL (the class-aligned cINN before training), and the cINN's output with the classifier
trained without the weights the file carries (the target's estimated class mix). The cINN
trained 4x longer (batch 256, 20 epochs) runs only when ``--methods`` names it.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table, mean_sd_cell  # noqa: E402

METHODS = {  # name -> (cpu-small overrides, drop the target's subject ids)
    "standardise": (["method=standardise"], False),
    "CORAL": (["method=coral"], False),
    "CycleGAN": (["method=cyclegan"], False),
    "UNIT": (["method=unit"], False),
    "cINN (default)": ([], False),
    "cINN, publication protocol": (["hsi.brightness=l2", "train.align=global", "train.whiten=false",
                                    "condition=domain+label"], False),
    "ablation: cINN, global alignment": (["train.align=global"], False),
    "ablation: cINN, labels by EM without subjects": ([], True),
    "ablation: cINN, fully class-wise (strength 1, no reverse validation)": (["train.align_strength=1"], False),
    "ablation: class-wise CORAL (untrained cINN)": (["method=coral", "train.align=class+global"], False),
    "ablation: cINN, class-wise without the global re-match": (["train.align=class"], False),
    "ablation: cINN, batch 256 x 20 epochs": (["hsi.batch_size=256", "train.epochs=20"], False),
    "ablation: cINN, the file's weights ignored": ([], False),
}
NO_WEIGHTS = {"ablation: cINN, the file's weights ignored"}  # the classifier trained without the written weights
SLOW = {"ablation: cINN, batch 256 x 20 epochs"}  # run only when --methods names it (24 s per pair)
SHIFTED_SITES = [0, 1, 3]  # back of hand, cheek, forehead (indices into SHARED_LOCATIONS)
QUICK = ["standardise", "CORAL", "cINN (default)", "ablation: cINN, global alignment"]


def main() -> None:
    import torch

    from medgap.data.skin import DEVELOPMENT_LABS, TEST_LABS, load_archive, skin_lab
    from medgap.transfer.interlab import downstream_accuracy, realism, split_target, transfer_source, without_labels

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, four methods, four pairs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pairs", default=None, help="e.g. 3-9,1-4 (default: all ordered pairs)")
    parser.add_argument("--methods", default=None, help="comma list of method names (default: all)")
    parser.add_argument("--test-labs", action="store_true", help="the held-out test labs (run once, at the end)")
    parser.add_argument("--label-shift", action="store_true", help="targets keep three of the six sites")
    parser.add_argument("--no-realism", action="store_true", help="accuracy only (MMD^2 and two-sample test: -)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    labs_used = TEST_LABS if args.test_labs else DEVELOPMENT_LABS
    archive = load_archive()
    labs = {o: skin_lab(o, archive=archive) for o in labs_used}
    targets = labs
    if args.label_shift:
        targets = {o: d.subset(np.flatnonzero(np.isin(d.labels, SHIFTED_SITES))) for o, d in labs.items()}
    pairs = list(itertools.permutations(labs_used, 2))
    if args.pairs:
        pairs = [tuple(int(v) for v in p.split("-")) for p in args.pairs.split(",")]
    methods = [m for m in METHODS if m not in SLOW] if not args.methods else [m.strip() for m in args.methods.split(";")]
    seeds = range(args.seeds)
    if args.quick:
        methods, seeds, pairs = QUICK, range(1), pairs[:4]

    rows = {m: {} for m in ["no transfer", *methods, "oracle (target labels)"]}
    seconds: dict[str, list] = {m: [] for m in methods}
    started = time.perf_counter()
    for seed in seeds:
        for a, b in pairs:
            source, target = labs[a], targets[b]
            known, test = split_target(target, seed)
            outputs = {"no transfer": source}
            for m in methods:
                overrides, no_groups = METHODS[m]
                outputs[m], sec = transfer_source(source, without_labels(known, groups=not no_groups), overrides, seed)
                if m in NO_WEIGHTS:
                    outputs[m].weights = None
                seconds[m].append(sec)
            outputs["oracle (target labels)"] = known
            for m, data in outputs.items():
                scores = {"mmd2": np.nan, "two_sample_accuracy": np.nan} if args.no_realism else realism(data, test, seed)
                rows[m].setdefault((a, b), []).append({"accuracy": downstream_accuracy(data, test, seed), **scores})
            print(f"seed {seed} {a}->{b} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    def pooled(m, key):  # mean over pairs per seed, then mean +- sd over seeds
        per_seed = [np.mean([rows[m][p][s][key] for p in pairs]) for s in range(len(seeds))]
        return per_seed

    print(f"Labs {'(TEST)' if args.test_labs else '(development)'}: {', '.join(map(str, labs_used))}; "
          f"{len(pairs)} ordered pairs x {len(seeds)} seed(s); "
          f"{'LABEL SHIFT: targets hold 3 of the 6 sites' if args.label_shift else 'six body sites'}; "
          f"{sum(len(d) for d in labs.values())} spectra. Cells: mean +- sd over seeds of the mean over pairs.\n")
    summary = []
    for m in rows:
        acc = pooled(m, "accuracy")
        worse = sum(np.mean([r["accuracy"] for r in rows[m][p]]) < np.mean([r["accuracy"] for r in rows["no transfer"][p]])
                    for p in pairs)
        realism_cells = (["-", "-"] if args.no_realism else
                         [mean_sd_cell(pooled(m, "mmd2"), 1, 3), mean_sd_cell(pooled(m, "two_sample_accuracy"), 100, 1)])
        summary.append([m, mean_sd_cell(acc, 100, 1), *realism_cells, f"{worse}/{len(pairs)}",
                        f"{np.mean(seconds[m]):.1f}" if m in seconds else "-"])
    print(markdown_table(["method", "balanced accuracy on the target lab (%)", "MMD^2 to held-out target",
                          "two-sample accuracy (%)", "pairs below no transfer", "train + apply (s)"], summary))
    print()
    shown = ["no transfer", "standardise", "CORAL", "cINN (default)", "oracle (target labels)"]
    shown = [m for m in shown if m in rows]
    per_pair = [[f"{a} -> {b}", *[mean_sd_cell([r["accuracy"] for r in rows[m][(a, b)]], 100, 1) for m in shown]]
                for a, b in pairs]
    print(markdown_table(["pair", *shown], per_pair))
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
