"""``medgap gap A B``: how far apart are two datasets?

A and B are each a NIfTI file, a folder of NIfTI files, or a medgap ``.npz`` file
(spectra or spectral images). The two must be of the same kind (MR/CT images or
spectra with the same wavelengths). Reported:

* **FID** (Frechet distance) and **MMD^2** (unbiased, median-bandwidth Gaussian kernel)
  between features: for images, a fixed ResNet (``medgap.metrics.features``; 3D on
  whole volumes when each side has at least ``min_volumes`` volumes, else 2D on axial
  slices); for spectra, the L2-normalised spectra themselves.
* **Classifier two-sample test**: cross-validated balanced accuracy of a ridge-regularised
  linear discriminant telling A from B (0.5 = indistinguishable), with a permutation p-value.
* **PCA** of the pooled features with kernel-density contours per dataset, and
  intensity histograms (images) or mean +- sd spectra (spectra).

Output folder: ``metrics.json``, PNG figures and one self-contained ``report.html``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medgap.adapters.bids import find_anat, is_bids_root
from medgap.errors import InputError
from medgap.io import (
    atomic_write_text,
    dicom_series,
    is_volume_file,
    list_files,
    load_npz_arrays,
    read_images,
    read_spectra,
    read_volume,
)
from medgap.outputs import json_text, staged_output_folder
from medgap.metrics import frechet_distance, mmd2_unbiased
from medgap.metrics.tissue import TISSUE_MEASURES, SliceSummaries, concat_summaries, summarise_volume, tissue_labels
from medgap.report.figures import plt, save_figure
from medgap.report.html import write_html_report

__all__ = ["GapData", "load_gap_data", "measure_gap"]

Unit = Literal["auto", "volume", "slice"]
MAX_SAMPLES_MMD = 2000
POSITION_BINS = 10
CV_REPEATS = 5
MAX_BOOTSTRAP_SPECTRA = 400


@dataclass
class GapData:
    """One side of a comparison, loaded and normalised.

    ``kind`` is ``"images"`` (``items`` is a list of 3D arrays in [0, 1], RAS order) or
    ``"spectra"`` (``spectra`` (N, C) raw, ``wavelengths`` (C,) nm).
    """

    name: str
    kind: str
    source: Path
    items: list[np.ndarray] = field(default_factory=list)
    spectra: np.ndarray | None = None
    wavelengths: np.ndarray | None = None
    labels: np.ndarray | None = None  # spectra: class per spectrum, when the file has labels
    item_names: list[str] = field(default_factory=list)  # images: file stem per volume (pairs subjects)

    def __len__(self) -> int:
        return len(self.items) if self.kind == "images" else int(self.spectra.shape[0])


def _normalise_volume(data: np.ndarray) -> np.ndarray:
    """Robust min-max to [0, 1]: 0.5th-99.5th percentile of the non-zero voxels."""
    nonzero = data[data != 0]
    if nonzero.size == 0:
        return np.zeros_like(data)
    lo, hi = np.percentile(nonzero, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def load_gap_data(path: str | Path, name: str | None = None, max_spectra: int = 20000, seed: int = 0) -> GapData:
    """Read a NIfTI file/folder or a spectra/images ``.npz`` into a :class:`GapData`."""
    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_dir() and is_bids_root(path):
        files = find_anat(path)  # every T1w of a BIDS dataset
    elif path.is_dir():
        files = list_files(path, is_volume_file)
        npz = list_files(path, lambda p: p.suffix == ".npz")
        if not files and not npz and dicom_series(path):
            files = [path]  # a DICOM series folder is one volume
        if not files and not npz:
            raise InputError(path, "folder holds no volumes (.nii/.nii.gz/.nrrd/.mha/DICOM) or .npz files")
        if files and npz:
            raise InputError(path, "folder mixes NIfTI and .npz files: compare one kind at a time")
        if npz:
            parts = [load_gap_data(p, name, max_spectra, seed) for p in npz]
            return _concat_spectra(parts, name, path)
    elif is_volume_file(path) or path.name.upper() == "DICOMDIR":
        files = [path]
    elif path.suffix == ".npz":
        return _load_spectral(path, name, max_spectra, seed)
    else:
        raise InputError(path, "expected a volume (NIfTI, NRRD, MetaImage), a folder of volumes, a DICOM series "
                               "folder, or a .npz file")
    items = []
    for file in files:
        vol = read_volume(file).to_canonical()
        if not np.any(vol.data):
            raise InputError(file, "image is all zero")
        items.append(_normalise_volume(vol.data))
    return GapData(name, "images", path, items=items, item_names=[_stem(f) for f in files])


def _stem(path: Path) -> str:
    """What identifies the subject of a volume file: BIDS sub-/ses- entities, else the name without suffix."""
    name = Path(path).name
    if name.startswith("sub-"):
        return "_".join(part for part in name.split("_") if part.startswith(("sub-", "ses-")))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _load_spectral(path: Path, name: str, max_spectra: int, seed: int) -> GapData:
    keys = set(load_npz_arrays(path))
    if "images" in keys:
        data = read_images(path)
        spectra = data.images.transpose(0, 2, 3, 1).reshape(-1, data.images.shape[1])
        wavelengths = data.wavelengths
        labels = None if data.segmentation is None else data.segmentation.reshape(-1)
    else:
        data = read_spectra(path)
        spectra, wavelengths, labels = data.spectra, data.wavelengths, data.labels
    if len(spectra) > max_spectra:
        keep = np.random.default_rng(seed).choice(len(spectra), max_spectra, replace=False)
        spectra, labels = spectra[keep], None if labels is None else labels[keep]
    return GapData(name, "spectra", path, spectra=spectra.astype(np.float64), wavelengths=wavelengths, labels=labels)


def _concat_spectra(parts: list[GapData], name: str, path: Path) -> GapData:
    for part in parts[1:]:
        _check_same_wavelengths(parts[0], part)
    labels = (np.concatenate([p.labels for p in parts]) if all(p.labels is not None for p in parts) else None)
    return GapData(name, "spectra", path, spectra=np.concatenate([p.spectra for p in parts]),
                   wavelengths=parts[0].wavelengths, labels=labels)


def _check_same_wavelengths(a: GapData, b: GapData) -> None:
    if len(a.wavelengths) != len(b.wavelengths):
        raise InputError(b.source, f"has {len(b.wavelengths)} channels but {a.source} has {len(a.wavelengths)}")
    if not np.allclose(a.wavelengths, b.wavelengths, atol=0.5):
        raise InputError(b.source, f"wavelengths {b.wavelengths[0]:g}-{b.wavelengths[-1]:g} nm do not match "
                         f"{a.source} ({a.wavelengths[0]:g}-{a.wavelengths[-1]:g} nm)")


# --------------------------------------------------------------------------- features


def _axial_slice_index(volume: np.ndarray, max_slices: int) -> np.ndarray:
    """Indices of axial slices (RAS axis 2) whose foreground covers at least 10% of the largest one."""
    area = (volume > 0.05).reshape(-1, volume.shape[2]).sum(0)
    keep = np.flatnonzero(area >= 0.1 * area.max()) if area.max() > 0 else np.arange(volume.shape[2])
    if len(keep) > max_slices:
        keep = keep[np.linspace(0, len(keep) - 1, max_slices).round().astype(int)]
    return keep


@dataclass
class ImageSide:
    """One image dataset reduced to what every measure needs."""

    features: np.ndarray  # (N, F) network features of the samples (slices or volumes)
    descriptors: np.ndarray  # (N, D) per-sample intensity/texture descriptors for the classifier
    summaries: SliceSummaries  # per-slice tissue/bias/texture summaries
    sample_groups: list[str]  # per sample: what a split must keep together (subject, slice position)
    values: np.ndarray  # foreground intensities, for the histogram figure


def _image_side(data: GapData, unit: str, max_slices: int, seed: int) -> ImageSide:
    """Network features, per-slice summaries and classifier descriptors of one side."""
    from medgap.metrics.features import SliceFeatureExtractor, VolumeFeatureExtractor

    per_volume = max(2, max_slices // len(data.items))
    index = [_axial_slice_index(v, per_volume) for v in data.items]
    # Each volume's own mixture fit. Taking the reference's labels for volumes on its grid was
    # tried: two halves of one brain one slice apart are "on the same grid" too, and mislabelled
    # voxels then read as a large gap. Without registration, classes are defined by intensity rank.
    labels = [tissue_labels(v) for v in data.items]
    summaries = concat_summaries([summarise_volume(v, k, i, seed, lab)
                                  for i, (v, k, lab) in enumerate(zip(data.items, index, labels))])
    descriptors = _slice_descriptors(summaries)
    names = data.item_names or [f"{data.name}#{i}" for i in range(len(data.items))]
    values = np.concatenate([v[v > 0.05].ravel() for v in data.items])
    if unit == "volume":
        stack = np.stack([_resize_cube(v, 64) for v in data.items])
        features = VolumeFeatureExtractor(input_size=64).features(stack * 2 - 1)
        per_volume_desc = np.stack([descriptors[summaries.volume == i].mean(0) for i in range(len(data.items))])
        # volumes of the same name on both sides are the same subject: one group
        return ImageSide(features, per_volume_desc, summaries, [f"subject:{n}" for n in names], values)
    slices = [v[:, :, k] for v, ks in zip(data.items, index) for k in ks]
    stack = np.stack([_resize_square(s, 128) for s in slices])
    features = SliceFeatureExtractor(input_size=128).features(stack * 2 - 1, batch_size=16)
    # slices at the same height share anatomy across the two sides (paired data): keep them together
    groups = [f"position:{int(p * POSITION_BINS)}" for p in summaries.position]
    return ImageSide(features, descriptors, summaries, groups, values)


def _slice_descriptors(s: SliceSummaries) -> np.ndarray:
    """Per slice: each tissue class's coarse intensity histogram and mean, and the GLCM features."""
    coarse = s.hist.reshape(len(s), s.hist.shape[1], 16, -1).sum(-1)
    coarse = coarse / np.maximum(coarse.sum(-1, keepdims=True), 1)
    means = s.class_sum / np.maximum(s.class_count, 1)
    return np.concatenate([coarse.reshape(len(s), -1), means, s.texture], axis=1)


def _resize_cube(volume: np.ndarray, size: int) -> np.ndarray:
    import torch

    t = torch.as_tensor(volume)[None, None]
    return torch.nn.functional.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    import torch

    t = torch.as_tensor(np.ascontiguousarray(image))[None, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _nonzero(data: GapData) -> np.ndarray:
    return np.linalg.norm(data.spectra, axis=1) > 0


def _spectral_features(data: GapData) -> np.ndarray:
    keep = _nonzero(data)
    if not keep.any():
        raise InputError(data.source, "every spectrum is all zero (L2 norm 0)")
    return data.spectra[keep] / np.linalg.norm(data.spectra[keep], axis=1, keepdims=True)


# --------------------------------------------------------------------------- tests and figures


def _ridge_lda_scores(x: np.ndarray, y: np.ndarray, splits: list, ridge: float = 1.0) -> float:
    """Mean balanced accuracy over ``splits`` of a ridge-regularised linear discriminant.

    Written out (a few lines of linear algebra) because the permutation test fits it
    permutations x folds x repeats (~2,500) times: through scikit-learn's estimator machinery
    that alone took 20-40 s for two 1 mm volumes, in closed form it takes well under a second.
    """
    scores = []
    eye = ridge * np.eye(x.shape[1])
    for train, test in splits:
        xt, yt = x[train], y[train]
        m0, m1 = xt[yt == 0].mean(0), xt[yt == 1].mean(0)
        centred = np.where((yt == 0)[:, None], xt - m0, xt - m1)
        cov = centred.T @ centred / max(len(xt) - 2, 1)
        w = np.linalg.solve(cov + eye, m1 - m0)
        pred = (x[test] - (m0 + m1) / 2) @ w > 0
        truth = y[test] == 1
        scores.append(0.5 * (np.mean(pred[truth]) + np.mean(~pred[~truth])))
    return float(np.mean(scores))


def classifier_two_sample_test(fa: np.ndarray, fb: np.ndarray, permutations: int, seed: int,
                               groups_a: list | None = None, groups_b: list | None = None) -> dict:
    """Cross-validated balanced accuracy of telling A from B, and its permutation p-value.

    A linear discriminant on the pooled features (standardised, <= 32 principal components),
    scored over 5 repeats of 5-fold cross-validation. With groups (subjects, slice positions),
    folds never split a group: a slice and its twin on the other side (paired data) are both in
    the test fold or both in training, so the classifier cannot score by recognising anatomy it
    has seen with the other label. For the p-value the labels are permuted within groups.
    """
    from sklearn.decomposition import PCA
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(fa), len(fb), 2000)
    pick_a, pick_b = rng.choice(len(fa), n, replace=False), rng.choice(len(fb), n, replace=False)
    x = np.concatenate([fa[pick_a], fb[pick_b]])
    y = np.r_[np.zeros(n), np.ones(n)].astype(int)
    groups = None
    if groups_a is not None and groups_b is not None:
        names = [groups_a[i] for i in pick_a] + [groups_b[i] for i in pick_b]
        groups = np.unique(names, return_inverse=True)[1]
    n_groups = len(np.unique(groups)) if groups is not None else 2 * n
    folds = min(5, n, n_groups)
    result = {"samples_per_side": int(n), "folds": folds, "repeats": CV_REPEATS, "permutations": permutations,
              "grouped": groups is not None, "classifier": "ridge linear discriminant on <= 32 principal components"}
    if folds < 2:
        return {**result, "balanced_accuracy": float("nan"), "p_value": float("nan"),
                "note": "fewer than 2 groups: no held-out split possible"}
    # Standardise and reduce once, on the pooled sample without labels: this uses no label
    # information, so the permutation test stays exact.
    x = StandardScaler().fit_transform(x)
    # at most one component per 8 samples: with ~100 slices a side, 32 components let the
    # discriminant fit noise and scatter the null accuracy by +- 0.1
    components = max(1, min(32, x.shape[1], len(x) // 8))
    x = PCA(components, svd_solver="full", random_state=seed).fit_transform(x)
    x = x / (x.std(0) + 1e-12)
    splitter = StratifiedGroupKFold if groups is not None else StratifiedKFold
    splits = [split for r in range(CV_REPEATS)
              for split in splitter(folds, shuffle=True, random_state=seed + r).split(x, y, groups)]
    score = _ridge_lda_scores(x, y, splits)
    null = []
    for _ in range(permutations):
        yp = y.copy()
        if groups is None:
            yp = rng.permutation(yp)
        else:
            for g in np.unique(groups):
                members = np.flatnonzero(groups == g)
                yp[members] = yp[rng.permutation(members)]
        null.append(_ridge_lda_scores(x, yp, splits))
    p_value = (1 + np.sum(np.asarray(null) >= score)) / (1 + permutations)
    return {**result, "balanced_accuracy": score, "p_value": float(p_value)}


# --------------------------------------------------------------------------- measures with intervals


def _spectral_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    return mmd2_unbiased(a[:MAX_BOOTSTRAP_SPECTRA], b[:MAX_BOOTSTRAP_SPECTRA])


def _class_mean_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean over the classes present on both sides of the L2 distance between class-mean spectra."""
    (fa, la), (fb, lb) = a, b
    shared = np.intersect1d(np.unique(la), np.unique(lb))
    if len(shared) == 0:
        return float("nan")
    return float(np.mean([np.linalg.norm(fa[la == k].mean(0) - fb[lb == k].mean(0)) for k in shared]))


@dataclass
class _Sample:
    """What a measure is computed on, with a way to resample it."""

    data: object
    size: int
    take: object  # (data, index) -> data


def _measure_table(a: _Sample, b: _Sample, measures: dict, boot: int, seed: int) -> tuple[dict, dict]:
    """Each measure's value, bootstrap 95% interval and null level (95th percentile over random
    split halves of B: what resampling the reference alone produces). Returns (table, draws)."""
    rng = np.random.default_rng(seed)
    index_b = [rng.integers(0, b.size, b.size) for _ in range(boot)]  # drawn first: shared by before/after
    index_a = [rng.integers(0, a.size, a.size) for _ in range(boot)]
    halves = [rng.permutation(b.size) for _ in range(boot)]
    table, draws = {}, {}
    for name, (fn, sees, reads) in measures.items():
        value = float(fn(a.data, b.data))
        samples = np.array([fn(a.take(a.data, ia), b.take(b.data, ib)) for ia, ib in zip(index_a, index_b)])
        null = np.array([fn(b.take(b.data, h[: b.size // 2]), b.take(b.data, h[b.size // 2:])) for h in halves])
        lo, hi = np.nanpercentile(samples, [2.5, 97.5]) if boot else (value, value)
        null95 = float(np.nanpercentile(null, 95)) if boot else 0.0
        table[name] = {"value": value, "ci95": [float(lo), float(hi)], "null95": null95,
                       "detected": bool(value > null95), "sees": sees, "reads": reads}
        draws[name] = samples
    return table, draws


def _closed(before: dict, after: dict, draws_before: dict, draws_after: dict) -> dict:
    """Per measure: how much of the before-gap the after-gap closed, 1 - after/before, with the
    bootstrap interval of the ratio (the reference side resampled identically for both)."""
    out = {}
    for name, b in before.items():
        if name not in after:
            continue
        if not b["detected"] or b["value"] <= 0:
            out[name] = {"closed": None, "ci95": None, "note": "no gap before (within resampling noise)"}
            continue
        # the bootstrap median, not 1 - after/before: resampling inflates every distance a little,
        # so the raw ratio of an "after" identical to the reference (100 %) would lie above its interval
        ratio = 1 - np.asarray(draws_after[name]) / np.maximum(np.asarray(draws_before[name]), 1e-12)
        lo, mid, hi = np.nanpercentile(ratio, [2.5, 50, 97.5]) if len(ratio) else (np.nan,) * 3
        out[name] = {"closed": float(mid), "ci95": [float(lo), float(hi)],
                     "raw": float(1 - after[name]["value"] / b["value"])}
    return out


def _pca_figure(fa, fb, names, path: Path) -> None:
    from scipy.stats import gaussian_kde
    from sklearn.decomposition import PCA

    pooled = np.concatenate([fa, fb])
    pca = PCA(2).fit(pooled)
    fig, ax = plt.subplots(figsize=(6, 5))
    for feats, name, colour in [(fa, names[0], "tab:blue"), (fb, names[1], "tab:orange")]:
        pts = pca.transform(feats)
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.35, color=colour, label=f"{name} (n={len(feats)})")
        if len(pts) > 3 and np.all(pts.std(0) > 1e-9):
            try:
                kde = gaussian_kde(pts.T)
                lo, hi = pca.transform(pooled).min(0), pca.transform(pooled).max(0)
                gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80))
                dens = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
                ax.contour(gx, gy, dens, levels=4, colors=colour, linewidths=1)
            except np.linalg.LinAlgError:
                pass  # degenerate cloud: the scatter alone is shown
    ratio = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
    ax.set_title("PCA of features with KDE contours")
    ax.legend()
    save_figure(fig, path)


def _histogram_figure(a: GapData, b: GapData, va, vb, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if a.kind == "images":
        bins = np.linspace(0, 1, 65)
        ax.hist(va, bins=bins, density=True, alpha=0.5, label=a.name)
        ax.hist(vb, bins=bins, density=True, alpha=0.5, label=b.name)
        ax.set_xlabel("normalised intensity (foreground voxels)")
        ax.set_ylabel("density")
        ax.set_title("Intensity histograms")
    else:
        for feats, name in [(va, a.name), (vb, b.name)]:
            mean, sd = feats.mean(0), feats.std(0)
            line, = ax.plot(a.wavelengths, mean, label=name)
            ax.fill_between(a.wavelengths, mean - sd, mean + sd, alpha=0.2, color=line.get_color())
        ax.set_xlabel("wavelength (nm)")
        ax.set_ylabel("L2-normalised intensity")
        ax.set_title("Mean +- sd spectra")
    ax.legend()
    save_figure(fig, path)


def _load(x, name, seed) -> GapData:
    return x if isinstance(x, GapData) else load_gap_data(x, name, seed=seed)


def _compare(da: GapData, db: GapData, unit: str, max_slices: int, permutations: int, bootstrap: int,
             seed: int, per_class: bool | None = None, sides: dict | None = None) -> tuple[dict, dict, tuple]:
    """Every measure between ``da`` and the reference ``db``: (metrics, bootstrap draws, figure data).

    ``sides`` caches image sides by dataset, so the reference is summarised once for before and after.
    """
    if da.kind != db.kind:
        raise InputError(da.source, f"holds {da.kind} but {db.source} holds {db.kind}: compare like with like")
    if da.kind == "images":
        sides = {} if sides is None else sides
        for data in (da, db):
            if id(data) not in sides:
                sides[id(data)] = _image_side(data, unit, max_slices, seed)
        sa, sb = sides[id(da)], sides[id(db)]
        fa, fb, va, vb = sa.features, sb.features, sa.values, sb.values
        feature_desc = ("MONAI ResNet-10 3D, fixed seeded random weights, volumes at 64^3" if unit == "volume"
                        else "MONAI ResNet-10 2D, fixed seeded random weights, axial slices at 128^2")
        measures = {name: (lambda x, y, fn=fn: fn(x[0], y[0]), sees, reads)
                    for name, (fn, sees, reads) in TISSUE_MEASURES.items()}
        if unit == "slice":  # network features are per slice too: resampled with the summaries
            measures["resnet_mmd2"] = (lambda x, y: mmd2_unbiased(x[1], y[1]), "anything the feature network sees",
                                       "MMD^2 of the ResNet slice features")
        per_slice = unit == "slice"  # with volumes, features are per volume: not resampled with slices

        def image_sample(side: ImageSide, feats: np.ndarray) -> _Sample:
            return _Sample((side.summaries, feats if per_slice else None), len(side.summaries),
                           lambda d, i: (d[0].take(i), None if d[1] is None else d[1][i]))

        sample_a, sample_b = image_sample(sa, fa), image_sample(sb, fb)
        clf_a, clf_b = np.concatenate([fa, sa.descriptors], 1), np.concatenate([fb, sb.descriptors], 1)
        groups = (sa.sample_groups, sb.sample_groups)
    else:
        _check_same_wavelengths(db, da)
        fa, fb = _spectral_features(da), _spectral_features(db)
        va, vb = fa, fb
        unit, feature_desc = "spectrum", "L2-normalised spectra"
        labelled = da.labels is not None and db.labels is not None
        if per_class and not labelled:
            missing = da if da.labels is None else db
            raise InputError(missing.source, "has no labels: per-class distances need labels on both sides")
        labelled = labelled and per_class is not False
        measures = {"spectral_mmd2": (lambda x, y: _spectral_mmd2(x[0], y[0]), "any change of spectral shape",
                                      "MMD^2 of L2-normalised spectra")}
        if labelled:
            measures["class_mean_distance"] = (_class_mean_distance, "per-class spectral shifts",
                                               "mean L2 distance of class-mean normalised spectra")
        rng = np.random.default_rng(seed)

        def spectra_sample(data: GapData, feats: np.ndarray) -> _Sample:
            labels = data.labels[_nonzero(data)] if labelled else None
            order = rng.permutation(len(feats))  # MMD takes the first spectra of a sample: make them random
            return _Sample((feats[order], None if labels is None else labels[order]), len(feats),
                           lambda d, i: (d[0][i], None if d[1] is None else d[1][i]))

        sample_a, sample_b = spectra_sample(da, fa), spectra_sample(db, fb)
        clf_a, clf_b, groups = fa, fb, (None, None)
    for data, feats in ((da, fa), (db, fb)):
        if len(feats) < 2:
            raise InputError(data.source, f"only {len(feats)} {unit} sample(s): need at least 2 on each side")
    rng = np.random.default_rng(seed)
    sub_a = fa[rng.choice(len(fa), min(len(fa), MAX_SAMPLES_MMD), replace=False)]
    sub_b = fb[rng.choice(len(fb), min(len(fb), MAX_SAMPLES_MMD), replace=False)]
    table, draws = _measure_table(sample_a, sample_b, measures, bootstrap, seed)
    metrics = {
        "a": {"name": da.name, "source": str(da.source), "samples": int(len(fa))},
        "b": {"name": db.name, "source": str(db.source), "samples": int(len(fb))},
        "kind": da.kind,
        "unit": unit,
        "features": feature_desc,
        "fid": frechet_distance(fa, fb),
        "mmd2": mmd2_unbiased(sub_a, sub_b),
        "classifier_test": classifier_two_sample_test(clf_a, clf_b, permutations, seed, *groups),
        "measures": table,
    }
    return metrics, draws, (fa, fb, va, vb)


def measure_gap(
    a: str | Path | GapData,
    b: str | Path | GapData,
    out_dir: str | Path | None = None,
    *,
    after: str | Path | GapData | None = None,
    name_a: str | None = None,
    name_b: str | None = None,
    name_after: str | None = None,
    unit: Unit = "auto",
    min_volumes: int = 10,
    max_slices: int = 96,
    permutations: int = 100,
    bootstrap: int = 200,
    per_class: bool | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Measure how far dataset ``a`` is from the reference ``b``; with ``after``, also how far
    ``after`` (a harmonised or transferred ``a``) is, and how much of the gap it closed.

    Returns the metrics dict that is also written to ``out_dir/metrics.json``: FID, MMD^2 and a
    group-aware classifier two-sample test on features, and ``measures``: each of medgap's gap
    measures (see :mod:`medgap.metrics.tissue` for images) with its value, bootstrap 95% interval
    and null level. With ``after``: ``{"before": ..., "after": ..., "closed": ..., "headline": [...]}``.
    Spectra: ``per_class`` None compares class by class when both sides have labels, True
    requires labels on both sides, False never compares per class. ``out_dir`` is refused before
    any work when it is an input or holds an earlier report (unless ``overwrite``), see
    :func:`medgap.outputs.staged_output_folder`.
    """
    inputs = [p for p in (a, b, after) if isinstance(p, (str, Path))]
    stage = (contextlib.nullcontext(None) if out_dir is None else
             staged_output_folder(out_dir, inputs=inputs, overwrite=overwrite, names=("metrics.json", "report.html")))
    with stage as staging:  # checked before the work: a bad --out fails at once
        da, db = _load(a, name_a, seed), _load(b, name_b, seed)
        dc = None if after is None else _load(after, name_after, seed)
        if da.name == db.name:
            da.name, db.name = f"A: {da.name}", f"B: {db.name}"
        for other in (da, dc):
            if other is not None and other.kind != db.kind:
                raise InputError(other.source, f"holds {other.kind} but {db.source} holds {db.kind}: "
                                               "compare like with like")
        if da.kind == "images" and unit == "auto":
            sides = [da, db] + ([dc] if dc is not None else [])
            unit = "volume" if min(len(d) for d in sides) >= min_volumes else "slice"
        sides: dict = {}
        before, draws_before, figure_data = _compare(da, db, unit, max_slices, permutations, bootstrap, seed, per_class,
                                                     sides)
        metrics = before
        if dc is not None:
            after_metrics, draws_after, _ = _compare(dc, db, unit, max_slices, permutations, bootstrap, seed, per_class,
                                                     sides)
            closed = _closed(before["measures"], after_metrics["measures"], draws_before, draws_after)
            metrics = {"before": before, "after": after_metrics, "closed": closed, "headline": _headline(closed)}
        if staging is not None:
            _write_report(staging, metrics, da, db, dc, figure_data)
    return metrics


def _headline(closed: dict) -> list[str]:
    lines = []
    for name, c in closed.items():
        if c["closed"] is None:
            lines.append(f"{name}: no gap before (within resampling noise)")
        else:
            lo, hi = c["ci95"]
            share = 100 * c["closed"]
            verb = f"closed by {share:.0f}%" if share >= 0 else f"widened by {-share:.0f}%"
            lines.append(f"{name}: gap {verb} (closed 95% CI {100 * lo:.0f} to {100 * hi:.0f}%)")
    return lines


def _measure_rows(table: dict) -> list[list]:
    return [[name, m["sees"], m["value"], f"{m['ci95'][0]:.4g} .. {m['ci95'][1]:.4g}", m["null95"],
             "yes" if m["detected"] else "no"] for name, m in table.items()]


def _write_report(out: Path, metrics: dict, da: GapData, db: GapData, dc: GapData | None, figure_data) -> None:
    fa, fb, va, vb = figure_data
    _pca_figure(fa, fb, (da.name, db.name), out / "pca_kde.png")
    hist_name = "intensity_histograms.png" if da.kind == "images" else "spectra.png"
    _histogram_figure(da, db, va, vb, out / hist_name)
    atomic_write_text(out / "metrics.json", json_text(metrics, indent=2))
    before = metrics.get("before", metrics)
    columns = ["measure", "sees", "value", "bootstrap 95% CI", "null level (95%)", "gap detected"]
    tables = {f"{da.name} vs {db.name}": {"columns": columns, "rows": _measure_rows(before["measures"])}}
    ct = before["classifier_test"]
    summary = (f"{da.name} vs {db.name}: {before['a']['samples']} vs {before['b']['samples']} {before['unit']} "
               f"samples. A classifier (network features: {before['features']}, plus tissue intensity and texture "
               f"descriptors; folds keep subjects and slice positions together) tells them apart with balanced "
               f"accuracy {ct['balanced_accuracy']:.2f} (0.5 = indistinguishable; "
               f"permutation p = {ct['p_value']:.3g}).")
    if dc is not None:
        after = metrics["after"]
        tables[f"{dc.name} vs {db.name}"] = {"columns": columns, "rows": _measure_rows(after["measures"])}
        tables["Gap closed"] = {"columns": ["measure", "closed", "bootstrap 95% CI"],
                                "rows": [[k, "-" if c["closed"] is None else f"{100 * c['closed']:.0f}%",
                                          c.get("note") if c["closed"] is None else
                                          f"{100 * c['ci95'][0]:.0f} .. {100 * c['ci95'][1]:.0f}%"]
                                         for k, c in metrics["closed"].items()]}
        summary += (f" After: {dc.name} vs {db.name}, classifier balanced accuracy "
                    f"{after['classifier_test']['balanced_accuracy']:.2f}. " + " ".join(metrics["headline"]))
    write_html_report(
        out / "report.html",
        f"Domain gap: {da.name} vs {db.name}" + (f" (after: {dc.name})" if dc is not None else ""),
        [{"title": "Gap measures", "summary": summary,
          "metrics": {k: before[k] for k in ("fid", "mmd2", "classifier_test", "unit", "features")},
          "figures": ["pca_kde.png", hist_name], "tables": tables,
          "captions": {"pca_kde.png": "PCA of the network features: overlapping clouds mean the network sees no gap.",
                       hist_name: ("Foreground intensity histograms: shifted or reshaped curves show an intensity "
                                   "gap." if da.kind == "images" else "Mean +- sd spectra: where the bands "
                                   "separate, the domains differ.")}}],
        base_dir=out,
        note=("Null level: the 95th percentile of each measure between random halves of the reference, i.e. "
              "what resampling alone produces; a gap is detected above it. FID/MMD use medgap's fixed "
              "random-weight feature extractor: compare them between medgap runs only."),
    )
