"""How far an unsupervised transfer can get on the stand-in gap, measured without any network.

    python benchmarks/bench_transfer_ceiling.py [--quick] [--seeds 3]

Same data and protocol as bench_transfer_quality (transfer_runs.py). Rows:
- CORAL: one global linear map (the cINN's starting point).
- entropic optimal transport (Courty et al. 2017, barycentric map, in CORAL's output space): a
  non-parametric map that moves every simulated spectrum as little as possible onto the real cloud.
- class-conditional CORAL with pseudo-labels: real spectra labelled by a random forest trained on
  CORAL's output, then CORAL per class (the idea behind label-conditioned transfer without labels).
- class-conditional CORAL with the TRUE real labels: not available to a user (real data has no
  labels); it measures how much of the gap is class-dependent.
- CORAL with the simulation resampled to the real class prevalence (TRUE proportions: 10 numbers,
  also not available): does the label shift between the domains (organs fill the real recordings
  unevenly) bias the alignment?
- CORAL of the simulation with 3 % multiplicative noise: does noise-free simulated training data
  hurt the classifier on noisy real spectra?
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table  # noqa: E402
from transfer_runs import arguments, mean_sd, score, stand_in  # noqa: E402


def coral(x_sim: np.ndarray, x_real: np.ndarray) -> np.ndarray:
    from medgap.io import SpectraSet
    from medgap.transfer.data import fit_stats

    wl = np.arange(x_sim.shape[1], dtype=float)
    s, r = fit_stats(SpectraSet(x_sim, wl), True), fit_stats(SpectraSet(x_real, wl), True)
    return r.denormalize(s.normalize(torch.from_numpy(x_sim))).numpy()


def prevalence_coral(x_sim, y_sim, x_real, y_real, rng):
    """CORAL fitted on the simulation resampled to the real class proportions, applied to all of it."""
    from medgap.io import SpectraSet
    from medgap.transfer.data import fit_stats

    prevalence = np.bincount(y_real, minlength=y_sim.max() + 1) / len(y_real)
    weights = prevalence[y_sim] / prevalence[y_sim].sum()
    idx = rng.choice(len(y_sim), len(y_sim), p=weights)
    wl = np.arange(x_sim.shape[1], dtype=float)
    s, r = fit_stats(SpectraSet(x_sim[idx], wl), True), fit_stats(SpectraSet(x_real, wl), True)
    return r.denormalize(s.normalize(torch.from_numpy(x_sim))).numpy()


def per_class_coral(x_sim, y_sim, x_real, y_real, fallback):
    out = fallback.copy()
    for k in np.unique(y_sim):
        if (y_real == k).sum() >= 200:  # enough real spectra for a covariance
            out[y_sim == k] = coral(x_sim[y_sim == k], x_real[y_real == k])
    return out


def ot_barycentric(x_sim, x_real, rng, n: int = 4000, reg: float = 0.02, iters: int = 300):
    """Sinkhorn plan between n sim and n real spectra (L2-normalised, standardised by real), then each
    sim spectrum -> the plan-weighted mean of real spectra. Returns (indices of the sim spectra, mapped).
    Written out here (20 lines) because the POT library is not a dependency of medgap."""
    a = x_sim / np.linalg.norm(x_sim, axis=1, keepdims=True)
    b = x_real / np.linalg.norm(x_real, axis=1, keepdims=True)
    ia = rng.choice(len(a), min(n, len(a)), replace=False)
    ib = rng.choice(len(b), min(n, len(b)), replace=False)
    a, b = a[ia], b[ib]
    mu, sd = b.mean(0), b.std(0)
    za, zb = (a - mu) / sd, (b - mu) / sd
    cost = (za**2).sum(1)[:, None] + (zb**2).sum(1)[None] - 2 * za @ zb.T
    kernel = np.exp(-cost / (reg * cost.mean()))
    u, v = np.ones(len(a)), np.ones(len(b))
    for _ in range(iters):
        u = 1.0 / (kernel @ v + 1e-300)
        v = 1.0 / (kernel.T @ u + 1e-300)
    plan = u[:, None] * kernel * v[None]
    return ia, (plan @ b) / plan.sum(1, keepdims=True)


def main() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from medgap.io import SpectraSet

    quick, seeds = arguments()
    n = 2000 if quick else 8000
    runs, pseudo_acc = [], []
    for seed in range(seeds):
        sim, real, _, test = stand_in(n, seed)
        rng = np.random.default_rng(seed)
        as_set = lambda x, y=sim.labels: SpectraSet(x.astype(np.float32), sim.wavelengths, y, sim.label_names)  # noqa: E731
        moved = coral(sim.spectra, real.spectra)
        rf = RandomForestClassifier(100, random_state=seed, n_jobs=-1, min_samples_leaf=5)
        rf.fit(moved / np.linalg.norm(moved, axis=1, keepdims=True), sim.labels)
        pseudo = rf.predict(real.spectra / np.linalg.norm(real.spectra, axis=1, keepdims=True))
        pseudo_acc.append(float((pseudo == real.labels).mean()))
        ia, ot_moved = ot_barycentric(moved, real.spectra, rng)
        sources = {
            "CORAL": as_set(moved),
            "entropic OT, barycentric map": as_set(ot_moved, sim.labels[ia]),
            "class-conditional CORAL, pseudo-labels": as_set(per_class_coral(sim.spectra, sim.labels, real.spectra,
                                                                              pseudo, moved)),
            "class-conditional CORAL, TRUE real labels (not available)": as_set(per_class_coral(
                sim.spectra, sim.labels, real.spectra, real.labels, moved)),
            "CORAL, sim resampled to the TRUE real class prevalence": as_set(prevalence_coral(
                sim.spectra, sim.labels, real.spectra, real.labels, rng)),
            "CORAL of sim + 3 % noise": as_set(coral(
                (sim.spectra * (1 + 0.03 * rng.standard_normal(sim.spectra.shape))).astype(np.float32),
                real.spectra)),
        }
        runs.append(score(real, sim, sources, test, seed))
    names = ["CORAL", "entropic OT, barycentric map", "class-conditional CORAL, pseudo-labels",
             "class-conditional CORAL, TRUE real labels (not available)",
             "CORAL, sim resampled to the TRUE real class prevalence", "CORAL of sim + 3 % noise", "real (upper bound)"]
    rows = [[k, mean_sd([r[k]["balanced_accuracy"] for r in runs], 100), mean_sd([r[k].get("mmd2", np.nan) for r in runs])]
            for k in names]
    print(f"sim = {n} simple spectra, real = {n} stand-in spectra, tested on {n} stand-in spectra of other subjects; "
          f"{seeds} seeds, mean +- sd. Accuracy of the pseudo-labels on the real spectra: "
          f"{100 * np.mean(pseudo_acc):.1f} +- {100 * np.std(pseudo_acc, ddof=1) if seeds > 1 else 0:.1f} %.\n")
    print(markdown_table(["transfer", "RF balanced acc. (%)", "MMD^2 to real"], rows))


if __name__ == "__main__":
    main()
