"""How realistic and how diverse are generated volumes?

* FID and MMD^2 (unbiased, Gaussian kernel with median bandwidth) between
  features of real and generated volumes, from the foundation's fixed 3D
  feature network (:class:`medgap.metrics.features.VolumeFeatureExtractor`:
  a seeded MONAI ResNet by default, MedicalNet weights from a local file when
  given);
* slice-wise MS-SSIM diversity: mean MS-SSIM between the same slices of
  different volumes of a set (lower = more diverse; compare generated vs. real);
* the anatomy of each sample against its nearest real volume (:func:`anatomy_scores`: r over the
  head's box, Dice of the outlines, r inside the head), which a blob of the right outline fails;
* memorisation (:func:`memorisation_scores`): each sample's distance to its nearest real volume,
  beside each real volume's distance to its nearest *other* real volume -- a sample closer to a
  real volume than any two real volumes are to each other is a copy;
* montages of orthogonal mid-slices, samples next to real volumes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_erosion

from medgap.errors import InputError
from medgap.io import atomic_write_text
from medgap.outputs import json_text, staged_output_folder
from medgap.metrics import frechet_distance, mmd2_unbiased
from medgap.metrics.features import SliceFeatureExtractor, VolumeFeatureExtractor
from medgap.report.figures import plt, save_figure

__all__ = ["ms_ssim_diversity", "distribution_scores", "plane_fid", "save_montage", "evaluate_model",
           "anatomy_scores", "memorisation_scores"]

_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_diversity(volumes: np.ndarray, n_slices: int = 8, max_pairs: int = 28, seed: int = 0) -> float:
    """Mean slice-wise MS-SSIM over pairs of different volumes (N, S, S, S) in [-1, 1].

    ``n_slices`` evenly spaced axial slices (through the middle half of the
    volume) per pair; the number of scales is as many as the slice size allows
    (kernel 7, weights of the standard 5-scale MS-SSIM renormalised).
    Lower is more diverse. Needs N >= 2.
    """
    from monai.metrics import MultiScaleSSIMMetric

    v = np.asarray(volumes, dtype=np.float32)
    if v.ndim != 4 or len(v) < 2:
        raise ValueError(f"need (N>=2, S, S, S) volumes, got {v.shape}")
    side = v.shape[1]
    kernel = 7
    scales = 5
    while scales > 1 and (kernel - 1) * 2 ** (scales - 1) >= side:
        scales -= 1
    w = np.array(_MS_WEIGHTS[:scales])
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=2.0, kernel_size=kernel, weights=tuple(w / w.sum()))
    pairs = [(i, j) for i in range(len(v)) for j in range(i + 1, len(v))]
    rng = np.random.default_rng(seed)
    if len(pairs) > max_pairs:
        pairs = [pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)]
    idx = np.linspace(side // 4, 3 * side // 4, n_slices).astype(int)
    a = torch.from_numpy(np.stack([v[i][:, :, idx] for i, _ in pairs]))  # (P, S, S, n)
    b = torch.from_numpy(np.stack([v[j][:, :, idx] for _, j in pairs]))
    a = a.permute(0, 3, 1, 2).reshape(-1, 1, side, side)
    b = b.permute(0, 3, 1, 2).reshape(-1, 1, side, side)
    return float(metric(a + 1.0, b + 1.0).mean())


def distribution_scores(real: np.ndarray, fake: np.ndarray, extractor: VolumeFeatureExtractor | None = None) -> dict:
    """FID and MMD^2 between real and generated volumes (N, S, S, S) in [-1, 1]."""
    extractor = extractor or VolumeFeatureExtractor()
    fr = extractor.features(np.asarray(real, dtype=np.float32)[:, None])
    ff = extractor.features(np.asarray(fake, dtype=np.float32)[:, None])
    return {"fid": float(frechet_distance(fr, ff)), "mmd2": float(mmd2_unbiased(fr, ff)),
            "feature_extractor": extractor.description, "n_real": len(fr), "n_fake": len(ff)}


PLANES = ("sagittal", "coronal", "axial")  # RAS cubes: axis 0 = left-right, 1 = back-front, 2 = foot-head


def plane_fid(real: np.ndarray, fake: np.ndarray, extractor=None, slices_per_volume: int = 16) -> dict:
    """2.5D FID, as MAISI reports it: FID of 2D slice features per plane, and their mean.

    ``slices_per_volume`` evenly spaced slices through the middle 60 % of each volume (N, S, S, S)
    in [-1, 1], along each axis; features from ``extractor`` (default: the foundation's
    :class:`~medgap.metrics.features.SliceFeatureExtractor`, a 2D ResNet-10 with fixed random
    weights -- comparable within medgap only; pass one built on local pretrained weights for
    numbers comparable elsewhere). Returns ``{"fid_sagittal", "fid_coronal", "fid_axial",
    "fid_2.5d", "slice_feature_extractor"}``.
    """
    extractor = extractor or SliceFeatureExtractor()
    real, fake = np.asarray(real, dtype=np.float32), np.asarray(fake, dtype=np.float32)
    out = {}
    for axis, plane in enumerate(PLANES):
        side = real.shape[1 + axis]
        idx = np.linspace(0.2 * side, 0.8 * side - 1, slices_per_volume).astype(int)
        per_set = [np.moveaxis(np.take(v, idx, axis=1 + axis), 1 + axis, 1).reshape(-1, *np.delete(v.shape[1:], axis))
                   for v in (real, fake)]
        fr, ff = (extractor.features(s[:, None]) for s in per_set)
        out[f"fid_{plane}"] = float(frechet_distance(fr, ff))
    out["fid_2.5d"] = float(np.mean([out[f"fid_{p}"] for p in PLANES]))
    out["slice_feature_extractor"] = extractor.description
    return out


def save_montage(path: str | Path, rows: dict[str, np.ndarray], per_row: int = 4,
                 windows: dict[str, tuple[float, float]] | None = None, title: str | None = None) -> Path:
    """Orthogonal mid-slices (sagittal, coronal, axial) of up to ``per_row`` volumes per named row.

    Values are shown from -1 (black) to 1 (white), or over ``windows[row]`` = (low, high).
    """
    names = list(rows)
    n = min(per_row, min(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(names), 3 * n, figsize=(1.6 * 3 * n, 1.8 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for i in range(n):
            vol = np.asarray(rows[name][i])
            c = [s // 2 for s in vol.shape]
            views = [vol[c[0], :, :], vol[:, c[1], :], vol[:, :, c[2]]]
            for j, view in enumerate(views):
                ax = axes[r, 3 * i + j]
                low, high = (windows or {}).get(name, (-1.0, 1.0))
                ax.imshow(np.rot90(view), cmap="gray", vmin=low, vmax=high)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0 and j == 0:  # horizontal and wrapped: long row names must not run into the next row
                    ax.set_ylabel(textwrap.fill(name, 16), rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title or "orthogonal mid-slices (sagittal, coronal, axial) per volume")
    return save_figure(fig, path)


def evaluate_model(synth, real: np.ndarray, out_dir: str | Path, n: int = 8, seed: int = 0,
                   label: int | None = None, feature_weights: str | Path | None = None,
                   max_memory_gb: float | None = None, slice_feature_weights: str | Path | None = None,
                   overwrite: bool = False) -> dict:
    """Sample ``n`` volumes from a :class:`~medgap.synthesize.Synthesizer`, compare with ``real``
    (N, S, S, S) in [-1, 1] (3D FID/MMD^2, per-plane 2.5D FID, MS-SSIM of samples beside that of the
    real volumes, anatomy against the nearest real volume, memorisation); write ``metrics.json`` and
    ``montage.png`` to ``out_dir``."""
    if len(real) < 2:
        raise InputError(None, f"FID/MMD need at least 2 real volumes, got {len(real)}")
    with staged_output_folder(out_dir, overwrite=overwrite, names=("metrics.json", "montage.png")) as staging:
        fake = synth.sample(n, seed=seed, label=label, max_memory_gb=max_memory_gb)
        extractor = VolumeFeatureExtractor(weights=feature_weights)
        report = distribution_scores(real, fake, extractor)
        report.update(plane_fid(real, fake, SliceFeatureExtractor(weights=slice_feature_weights)))
        report["ms_ssim_generated"] = ms_ssim_diversity(fake) if len(fake) > 1 else None
        report["ms_ssim_real"] = ms_ssim_diversity(real) if len(real) > 1 else None
        report["anatomy"] = anatomy_scores(fake, np.asarray(real))
        report["memorisation"] = memorisation_scores(fake, np.asarray(real))
        save_montage(staging / "montage.png", {"generated": fake, "real": np.asarray(real)}, per_row=8)
        atomic_write_text(staging / "metrics.json", json_text(report, indent=2))
        return report


def _foreground_box(volume: np.ndarray, side: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Crop a volume in [-1, 1] to its foreground box and resize it to ``side``^3.

    Foreground: voxels above ``fraction`` of the 99th percentile of the [0, 1]-rescaled
    intensities. Returns (resized crop in [0, 1], its foreground mask by the same rule).
    """
    v = (np.asarray(volume, dtype=np.float32) + 1.0) / 2.0
    threshold = fraction * float(np.percentile(v, 99))
    mask = v > threshold
    crop = v
    if mask.any():
        extents = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        crop = v[tuple(slice(int(e[0]), int(e[-1]) + 1) for e in extents)]
    t = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    resized = torch.nn.functional.interpolate(t, size=(side,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()
    return resized, resized > threshold


def anatomy_scores(generated: np.ndarray, training: np.ndarray, side: int = 48, fraction: float = 0.1) -> dict:
    """Does each generated volume look like the training anatomy? (N, S, S, S) vs (M, S, S, S) in [-1, 1].

    Both are cropped to their foreground box (voxels above ``fraction`` of the 99th
    percentile) and resized to ``side``^3, so position and scale do not count, only shape and
    contrast. Per generated volume, against the nearest training volume (highest r): Pearson
    ``r`` over the box, ``dice`` of the two foreground masks, and ``interior_r``, Pearson r
    over the voxels inside both masks (eroded by 3 voxels, off the outline's edge) only -- the contrast within the head (ventricles,
    grey/white matter), which a uniform blob of the right outline does not have (r ~ 0).
    Returns the means and the per-volume lists.
    """
    train_boxes = [_foreground_box(v, side, fraction) for v in training]
    per_volume = []
    for vol in generated:
        box, mask = _foreground_box(vol, side, fraction)
        best = None
        for tbox, tmask in train_boxes:
            r = _pearson(box, tbox)
            if best is None or r > best[0]:
                both = np.logical_and(mask, tmask)
                dice = float(2.0 * both.sum() / max(1, mask.sum() + tmask.sum()))
                inside = binary_erosion(both, iterations=3)  # off the outline's partial-volume ramp
                best = (r, dice, _pearson(box[inside], tbox[inside]))
        per_volume.append(best)
    rs, dices, interiors = (list(v) for v in zip(*per_volume))
    return {"r": float(np.mean(rs)), "dice": float(np.mean(dices)), "interior_r": float(np.mean(interiors)),
            "r_each": rs, "dice_each": dices, "interior_r_each": interiors}


def memorisation_scores(generated: np.ndarray, real: np.ndarray) -> dict:
    """Root-mean-square distance (intensities in [-1, 1]) of each generated volume to its nearest real
    volume, and of each real volume to its nearest *other* real volume (N, S, S, S) vs (M >= 2, S, S, S).

    ``copies``: samples closer to their nearest real volume than that volume is to its nearest *other*
    real volume -- nothing a model that learned the distribution rather than the examples should make
    (``nearest_real`` names the index of each sample's nearest real volume).
    """
    gen = np.asarray(generated, dtype=np.float32).reshape(len(generated), -1)
    ref = np.asarray(real, dtype=np.float32).reshape(len(real), -1)
    if len(ref) < 2:
        raise InputError(None, f"memorisation needs at least 2 real volumes, got {len(ref)}")

    def rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (len(a), len(b)) without an (a, b, D) array
        squares = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.clip(squares, 0, None) / a.shape[1])

    distances = rms(gen, ref)
    nearest = distances.argmin(axis=1)
    to_real = distances.min(axis=1)
    between = rms(ref, ref)
    np.fill_diagonal(between, np.inf)
    real_nearest = between.min(axis=1)
    return {"sample_to_nearest_real": [float(v) for v in to_real], "nearest_real": [int(i) for i in nearest],
            "real_to_nearest_other_real": [float(v) for v in real_nearest],
            "copies": int((to_real < real_nearest[nearest]).sum())}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
