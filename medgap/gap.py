"""``medgap gap A B``: how far apart are two datasets?

A and B are each a NIfTI file, a folder of NIfTI files, or a medgap ``.npz`` file
(spectra or spectral images). The two must be of the same kind (MR/CT images or
spectra with the same wavelengths). Reported:

* **FID** (Frechet distance) and **MMD^2** (unbiased, median-bandwidth Gaussian kernel)
  between features: for images, a fixed ResNet (``medgap.metrics.features``; 3D on
  whole volumes when each side has at least ``min_volumes`` volumes, else 2D on axial
  slices); for spectra, the L2-normalised spectra themselves.
* **Classifier two-sample test**: cross-validated balanced accuracy of a logistic
  regression telling A from B (0.5 = indistinguishable), with a permutation p-value.
* **PCA** of the pooled features with kernel-density contours per dataset, and
  intensity histograms (images) or mean +- sd spectra (spectra).

Output folder: ``metrics.json``, PNG figures and one self-contained ``report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medgap.errors import InputError
from medgap.io import (
    atomic_write_text,
    dicom_series,
    is_volume_file,
    list_files,
    load_npz_arrays,
    output_folder,
    read_images,
    read_spectra,
    read_volume,
)
from medgap.metrics import frechet_distance, mmd2_unbiased
from medgap.report.figures import plt, save_figure
from medgap.report.html import write_html_report

__all__ = ["GapData", "load_gap_data", "measure_gap"]

Unit = Literal["auto", "volume", "slice"]
MAX_SAMPLES_MMD = 2000


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
    if path.is_dir():
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
    elif is_volume_file(path):
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
    return GapData(name, "images", path, items=items)


def _load_spectral(path: Path, name: str, max_spectra: int, seed: int) -> GapData:
    keys = set(load_npz_arrays(path))
    if "images" in keys:
        data = read_images(path)
        spectra = data.images.transpose(0, 2, 3, 1).reshape(-1, data.images.shape[1])
        wavelengths = data.wavelengths
    else:
        data = read_spectra(path)
        spectra, wavelengths = data.spectra, data.wavelengths
    if len(spectra) > max_spectra:
        spectra = spectra[np.random.default_rng(seed).choice(len(spectra), max_spectra, replace=False)]
    return GapData(name, "spectra", path, spectra=spectra.astype(np.float64), wavelengths=wavelengths)


def _concat_spectra(parts: list[GapData], name: str, path: Path) -> GapData:
    for part in parts[1:]:
        _check_same_wavelengths(parts[0], part)
    return GapData(name, "spectra", path, spectra=np.concatenate([p.spectra for p in parts]),
                   wavelengths=parts[0].wavelengths)


def _check_same_wavelengths(a: GapData, b: GapData) -> None:
    if len(a.wavelengths) != len(b.wavelengths):
        raise InputError(b.source, f"has {len(b.wavelengths)} channels but {a.source} has {len(a.wavelengths)}")
    if not np.allclose(a.wavelengths, b.wavelengths, atol=0.5):
        raise InputError(b.source, f"wavelengths {b.wavelengths[0]:g}-{b.wavelengths[-1]:g} nm do not match "
                         f"{a.source} ({a.wavelengths[0]:g}-{a.wavelengths[-1]:g} nm)")


# --------------------------------------------------------------------------- features


def _axial_slices(volume: np.ndarray, max_slices: int) -> list[np.ndarray]:
    """Axial slices (RAS axis 2) whose foreground covers at least 10% of the largest one."""
    area = (volume > 0.05).reshape(-1, volume.shape[2]).sum(0)
    keep = np.flatnonzero(area >= 0.1 * area.max()) if area.max() > 0 else np.arange(volume.shape[2])
    if len(keep) > max_slices:
        keep = keep[np.linspace(0, len(keep) - 1, max_slices).round().astype(int)]
    return [volume[:, :, k] for k in keep]


def _image_features(data: GapData, unit: str, max_slices: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, F) and the values used for histograms."""
    from medgap.metrics.features import SliceFeatureExtractor, VolumeFeatureExtractor

    values = np.concatenate([v[v > 0.05].ravel() for v in data.items])
    if unit == "volume":
        stack = np.stack([_resize_cube(v, 64) for v in data.items])
        return VolumeFeatureExtractor(input_size=64).features(stack * 2 - 1), values
    per_volume = max(2, max_slices // len(data.items))
    slices = [s for v in data.items for s in _axial_slices(v, per_volume)]
    stack = np.stack([_resize_square(s, 128) for s in slices])
    return SliceFeatureExtractor(input_size=128).features(stack * 2 - 1, batch_size=16), values


def _resize_cube(volume: np.ndarray, size: int) -> np.ndarray:
    import torch

    t = torch.as_tensor(volume)[None, None]
    return torch.nn.functional.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    import torch

    t = torch.as_tensor(np.ascontiguousarray(image))[None, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _spectral_features(data: GapData) -> np.ndarray:
    norms = np.linalg.norm(data.spectra, axis=1)
    zero = norms == 0
    if zero.all():
        raise InputError(data.source, "every spectrum is all zero (L2 norm 0)")
    return data.spectra[~zero] / norms[~zero, None]


# --------------------------------------------------------------------------- tests and figures


def classifier_two_sample_test(fa: np.ndarray, fb: np.ndarray, permutations: int, seed: int) -> dict:
    """Cross-validated balanced accuracy of telling A from B, and its permutation p-value."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, permutation_test_score
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(fa), len(fb), 2000)
    a = fa[rng.choice(len(fa), n, replace=False)]
    b = fb[rng.choice(len(fb), n, replace=False)]
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = min(5, n)
    # Standardise and reduce to <= 32 principal components once, on the pooled sample
    # without labels: this uses no label information, so the permutation test stays
    # exact, and the logistic regression in each fold becomes cheap and well conditioned.
    x = StandardScaler().fit_transform(x)
    x = PCA(min(32, x.shape[1], len(x) - 1), svd_solver="full", random_state=seed).fit_transform(x)
    clf = LogisticRegression(C=1.0, max_iter=1000)
    score, _, p_value = permutation_test_score(
        clf, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), n_permutations=permutations,
        scoring="balanced_accuracy", random_state=seed,
    )
    return {"balanced_accuracy": float(score), "p_value": float(p_value), "samples_per_side": int(n),
            "folds": folds, "permutations": permutations}


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


def measure_gap(
    a: str | Path | GapData,
    b: str | Path | GapData,
    out_dir: str | Path | None = None,
    *,
    name_a: str | None = None,
    name_b: str | None = None,
    unit: Unit = "auto",
    min_volumes: int = 10,
    max_slices: int = 96,
    permutations: int = 100,
    seed: int = 0,
) -> dict:
    """Measure how far apart datasets ``a`` and ``b`` are; write a report if ``out_dir`` is given.

    Returns the metrics dict that is also written to ``out_dir/metrics.json``.
    """
    da = a if isinstance(a, GapData) else load_gap_data(a, name_a, seed=seed)
    db = b if isinstance(b, GapData) else load_gap_data(b, name_b, seed=seed)
    if da.name == db.name:
        da.name, db.name = f"A: {da.name}", f"B: {db.name}"
    if da.kind != db.kind:
        raise InputError(db.source, f"holds {db.kind} but {da.source} holds {da.kind}: compare like with like")
    if da.kind == "images":
        if unit == "auto":
            unit = "volume" if min(len(da), len(db)) >= min_volumes else "slice"
        fa, va = _image_features(da, unit, max_slices)
        fb, vb = _image_features(db, unit, max_slices)
        feature_desc = ("MONAI ResNet-10 3D, fixed seeded weights, volumes at 64^3" if unit == "volume"
                        else "MONAI ResNet-10 2D, fixed seeded weights, axial slices at 128^2")
    else:
        _check_same_wavelengths(da, db)
        fa, fb = _spectral_features(da), _spectral_features(db)
        va, vb = fa, fb
        unit, feature_desc = "spectrum", "L2-normalised spectra"
    for data, feats in ((da, fa), (db, fb)):
        if len(feats) < 2:
            raise InputError(data.source, f"only {len(feats)} {unit} sample(s): need at least 2 on each side")
    rng = np.random.default_rng(seed)
    sub_a = fa[rng.choice(len(fa), min(len(fa), MAX_SAMPLES_MMD), replace=False)]
    sub_b = fb[rng.choice(len(fb), min(len(fb), MAX_SAMPLES_MMD), replace=False)]
    metrics = {
        "a": {"name": da.name, "source": str(da.source), "samples": int(len(fa))},
        "b": {"name": db.name, "source": str(db.source), "samples": int(len(fb))},
        "kind": da.kind,
        "unit": unit,
        "features": feature_desc,
        "fid": frechet_distance(fa, fb),
        "mmd2": mmd2_unbiased(sub_a, sub_b),
        "classifier_test": classifier_two_sample_test(fa, fb, permutations, seed),
    }
    if out_dir is not None:
        out = Path(out_dir)
        output_folder(out)
        _pca_figure(fa, fb, (da.name, db.name), out / "pca_kde.png")
        _histogram_figure(da, db, va, vb, out / ("intensity_histograms.png" if da.kind == "images" else "spectra.png"))
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        figures = ["pca_kde.png", "intensity_histograms.png" if da.kind == "images" else "spectra.png"]
        ct = metrics["classifier_test"]
        summary = (f"{da.name} vs {db.name}: {metrics['a']['samples']} vs {metrics['b']['samples']} {unit} samples, "
                   f"features: {feature_desc}. A classifier tells them apart with balanced accuracy "
                   f"{ct['balanced_accuracy']:.2f} (0.5 = indistinguishable; permutation p = {ct['p_value']:.3g}).")
        write_html_report(
            out / "report.html",
            f"Domain gap: {da.name} vs {db.name}",
            [{"title": "Gap metrics", "summary": summary,
              "metrics": {k: metrics[k] for k in ("fid", "mmd2", "classifier_test", "unit", "features")},
              "figures": figures}],
            base_dir=out,
            note=("FID/MMD values use medgap's fixed feature extractor: compare them between medgap runs, "
                  "not with numbers computed on other networks."),
        )
    return metrics
