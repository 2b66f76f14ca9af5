"""How close transferred data came to real data, and whether a downstream classifier gained.

Everything works on L2-normalised pixel spectra; images (PAT) are reduced to the spectra of their
labelled pixels (the vessel classes when the label names include artery and vein).

- Realism: PCA fitted on the real spectra; kernel density of the first two components per source;
  spectral difference |median_real - median_source| per class and wavelength (violin plots);
  unbiased MMD^2 to real (one Gaussian bandwidth for all sources: the real data's median distance).
- Downstream: a calibrated random forest (100 trees) trained on each source's labelled spectra and
  tested on held-out real spectra (grouped split: no subject/image on both sides); balanced
  accuracy, AUROC (one-vs-rest), weighted F1 and confusion matrices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import gaussian_kde
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from medgap.errors import InputError
from medgap.io import ImageSet, SpectraSet, atomic_write_text
from medgap.outputs import json_text, staged_output_folder
from medgap.metrics import median_bandwidth, mmd2_unbiased
from medgap.report.figures import plt, save_figure

__all__ = ["evaluate", "pixel_spectra", "normalise"]


def normalise(x: np.ndarray) -> np.ndarray:
    """Divide each spectrum (row) by its L2 norm."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pixel_spectra(data: ImageSet, max_per_image: int = 200, seed: int = 0,
                  classes: list[str] | None = None) -> SpectraSet:
    """Labelled pixel spectra (groups = image index) from images with a segmentation.

    ``classes``: label names to keep (default: artery and vein if present, else all labels).
    """
    if data.segmentation is None:
        raise InputError(data.path, "images need a 'segmentation' to give labelled pixel spectra")
    names = data.label_names or [str(k) for k in range(int(data.segmentation.max()) + 1)]
    if classes is None:
        classes = ["artery", "vein"] if {"artery", "vein"} <= set(names) else names
    keep = [names.index(c) for c in classes]
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for i, (img, seg) in enumerate(zip(data.images, data.segmentation)):
        for new, old in enumerate(keep):
            idx = np.flatnonzero(seg.reshape(-1) == old)
            if idx.size == 0:
                continue
            idx = rng.choice(idx, size=min(idx.size, max_per_image // len(keep)), replace=False)
            xs.append(img.reshape(img.shape[0], -1)[:, idx].T)
            ys.append(np.full(idx.size, new))
            gs.append(np.full(idx.size, i))
    return SpectraSet(np.concatenate(xs), data.wavelengths, np.concatenate(ys), list(classes), np.concatenate(gs))


def _as_spectra(data, seed: int) -> SpectraSet:
    return pixel_spectra(data, seed=seed) if data.modality == "pat" else data


def _subsample(n: int, k: int, rng) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, size=k, replace=False))


def _kde_figure(pca: PCA, sources: dict[str, np.ndarray], path: Path, rng) -> None:
    fig = plt.figure(figsize=(7, 7))
    grid = fig.add_gridspec(4, 4)
    ax = fig.add_subplot(grid[1:, :3])
    top = fig.add_subplot(grid[0, :3], sharex=ax)
    right = fig.add_subplot(grid[1:, 3], sharey=ax)
    proj = {k: pca.transform(v[_subsample(len(v), 1500, rng)]) for k, v in sources.items()}
    allp = np.concatenate(list(proj.values()))
    lo, hi = np.percentile(allp, 1, axis=0), np.percentile(allp, 99, axis=0)
    pad = 0.15 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, p), c in zip(proj.items(), colors):
        try:
            kde = gaussian_kde(p.T)
            dens = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
            ax.contour(gx, gy, dens, levels=4, colors=c, linewidths=1.0)
        except np.linalg.LinAlgError:  # degenerate (e.g. collapsed) source: show points only
            ax.scatter(p[:, 0], p[:, 1], s=2, color=c)
        ax.plot([], [], color=c, label=name)
        for axis, dim, orient in ((top, 0, "x"), (right, 1, "y")):
            t = np.linspace(lo[dim], hi[dim], 200)
            try:
                d = gaussian_kde(p[:, dim])(t)
            except np.linalg.LinAlgError:
                continue
            axis.plot(t, d, color=c) if orient == "x" else axis.plot(d, t, color=c)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 of real data ({100 * ev[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}%)")
    ax.legend(loc="best", fontsize=8)
    top.axis("off")
    right.axis("off")
    save_figure(fig, path)


def _spectral_difference(real: SpectraSet, src: SpectraSet, n_classes: int) -> np.ndarray:
    """|median_real - median_src| per (class, wavelength) of normalised spectra, classes both have."""
    r, s = normalise(real.spectra), normalise(src.spectra)
    rows = []
    for k in range(n_classes):
        a, b = r[real.labels == k], s[src.labels == k]
        if len(a) and len(b):
            rows.append(np.abs(np.median(a, 0) - np.median(b, 0)))
    return np.stack(rows) if rows else np.zeros((0, r.shape[1]))


def _downstream(train: SpectraSet, test: SpectraSet, n_classes: int, seed: int, max_train: int):
    # the same subsample for every source of the same size (transfers of one simulation): paired comparisons
    idx = _subsample(len(train), max_train, np.random.default_rng(seed))
    x, y = normalise(train.spectra[idx]), train.labels[idx]
    rf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=-1)
    # isotonic calibration on 3 folds, as in the publication's calibrated random forest
    counts = np.bincount(y, minlength=n_classes)
    cv = int(min(3, counts[counts > 0].min())) if counts.any() else 0
    clf = CalibratedClassifierCV(rf, method="isotonic", cv=cv) if cv >= 2 else rf
    # the transferred file's weights (the target's estimated class mix), where it has them
    clf.fit(x, y, sample_weight=None if train.weights is None else train.weights[idx])
    xt = normalise(test.spectra)
    prob = np.zeros((len(xt), n_classes))
    prob[:, clf.classes_] = clf.predict_proba(xt)
    pred = prob.argmax(1)
    present = np.unique(test.labels)
    if n_classes == 2:
        auroc = roc_auc_score(test.labels, prob[:, 1]) if len(present) == 2 else float("nan")
    else:
        p = prob[:, present] / np.maximum(prob[:, present].sum(1, keepdims=True), 1e-12)
        auroc = roc_auc_score(test.labels, p, multi_class="ovr", labels=present) if len(present) > 2 else float("nan")
    return {
        "balanced_accuracy": float(balanced_accuracy_score(test.labels, pred)),
        "auroc": float(auroc),
        "f1_weighted": float(f1_score(test.labels, pred, average="weighted")),
    }, confusion_matrix(test.labels, pred, labels=np.arange(n_classes), normalize="true")


def evaluate(real, sim, transferred: dict, out_dir: str | Path, *, seed: int = 0, test_fraction: float = 0.5,
             max_train: int = 5000, max_mmd: int = 1500, test=None,
             overwrite: bool = False) -> dict:
    """Compare ``sim`` and each ``transferred[name]`` with ``real``; write metrics.json and PNGs to out_dir.

    real/sim/transferred: SpectraSet or ImageSet (same kind). Sources need labels for the per-class
    plots and the classifier; real needs labels (and groups) only for the downstream part.
    ``test``: labelled real data of other subjects to test the classifiers on (then ``real``, when
    labelled, is the upper bound's training set; unlabelled, there is no upper bound); default: a
    grouped split of ``real`` (``test_fraction``).
    Returns the metrics dict.
    """
    with staged_output_folder(out_dir, overwrite=overwrite, names=("metrics.json",)) as staging:
        rng = np.random.default_rng(seed)
        real_s = _as_spectra(real, seed)
        sources = {"sim": _as_spectra(sim, seed), **{k: _as_spectra(v, seed) for k, v in transferred.items()}}
        for name, s in sources.items():
            if s.wavelengths.shape != real_s.wavelengths.shape or not np.allclose(s.wavelengths, real_s.wavelengths):
                raise InputError(s.path, f"source '{name}' has another wavelength grid than the real data")
            if real_s.label_names and s.label_names and s.label_names != real_s.label_names:
                raise InputError(s.path, f"source '{name}' label names {s.label_names} differ from real {real_s.label_names}")
        names = real_s.label_names or next((s.label_names for s in sources.values() if s.label_names), None)
        n_classes = len(names) if names else int(max(int(s.labels.max()) for s in [real_s, *sources.values()]
                                                     if s.labels is not None)) + 1
        metrics: dict = {"n_real": len(real_s), "sources": {}}
        figures = []

        # realism ---------------------------------------------------------------------------------------
        r_norm = normalise(real_s.spectra)
        pca = PCA(n_components=2, random_state=seed).fit(r_norm)
        metrics["pca_explained_variance"] = [float(v) for v in pca.explained_variance_ratio_]
        _kde_figure(pca, {"real": r_norm, **{k: normalise(v.spectra) for k, v in sources.items()}}, staging / "pca_kde.png", rng)
        figures.append("pca_kde.png")
        r_mmd = r_norm[_subsample(len(r_norm), max_mmd, rng)]
        bandwidth = median_bandwidth(r_mmd, r_mmd)
        diffs = {}
        for name, s in sources.items():
            x = normalise(s.spectra)
            m = {"n": len(s), "mmd2": mmd2_unbiased(x[_subsample(len(x), max_mmd, rng)], r_mmd, bandwidth)}
            if real_s.labels is not None and s.labels is not None:
                d = _spectral_difference(real_s, s, n_classes)
                diffs[name] = d.reshape(-1)
                m["spectral_difference_mean"] = float(d.mean()) if d.size else float("nan")
            metrics["sources"][name] = m
        metrics["mmd_bandwidth"] = bandwidth
        if diffs:
            fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(diffs), 4))
            ax.violinplot(list(diffs.values()), showmeans=True, showmedians=False)
            ax.set_xticks(np.arange(1, len(diffs) + 1), list(diffs))
            ax.set_ylabel("|median real - median source| (normalised)")
            ax.set_title("Spectral difference per class and wavelength")
            save_figure(fig, staging / "spectral_difference.png")
            figures.append("spectral_difference.png")

        # downstream ------------------------------------------------------------------------------------
        if test is not None:
            real_train, real_test = real_s, _as_spectra(test, seed)
            if real_test.labels is None:
                raise InputError(real_test.path, "the test data needs labels")
            groups = real_test.groups if real_test.groups is not None else np.zeros(len(real_test))
            metrics["downstream_test"] = {"n": len(real_test), "groups": int(len(np.unique(groups))), "held_out": True}
        elif real_s.labels is not None:
            groups = real_s.groups if real_s.groups is not None else np.arange(len(real_s))
            if len(np.unique(groups)) < 2:
                raise InputError(real_s.path, "the grouped split needs at least two groups (subjects/images) in real data")
            split = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
            train_idx, test_idx = next(split.split(r_norm, real_s.labels, groups))
            real_train, real_test = real_s.subset(train_idx), real_s.subset(test_idx)
            metrics["downstream_test"] = {"n": len(real_test), "groups": int(len(np.unique(groups[test_idx])))}
        if real_s.labels is not None or test is not None:
            runs = {k: v for k, v in sources.items() if v.labels is not None}
            if real_s.labels is not None:  # unlabelled real data: no upper bound, the transfers still get tested
                runs["real (upper bound)"] = real_train
            cms = {}
            for name, s in runs.items():
                res, cm = _downstream(s, real_test, n_classes, seed, max_train)
                metrics["sources"].setdefault(name, {}).update(res)
                cms[name] = cm
            fig, axes = plt.subplots(1, len(cms), figsize=(3.2 * len(cms), 3.4), squeeze=False)
            for ax, (name, cm) in zip(axes[0], cms.items()):
                ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
                ba = metrics["sources"][name]["balanced_accuracy"]
                ax.set_title(f"{name}\nbal. acc. {ba:.2f}", fontsize=9)
                ax.set_xlabel("predicted")
                ax.set_ylabel("true")
                if names and len(names) <= 10:
                    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
                    ax.set_yticks(range(len(names)), names, fontsize=6)
            save_figure(fig, staging / "confusion_matrices.png")
            figures.append("confusion_matrices.png")
        metrics["figures"] = figures
        atomic_write_text(staging / "metrics.json", json_text(metrics, indent=2, default=float))
        return metrics
