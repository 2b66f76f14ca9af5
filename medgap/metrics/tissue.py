"""What scanners change in MR images, summarised per axial slice so that gaps can be bootstrapped.

Every volume is reduced once to per-slice summaries (:class:`SliceSummaries`); each gap
measure is then a cheap function of two sets of summaries, so resampling slices thousands
of times costs milliseconds. The measures:

* ``tissue_w1``: Wasserstein-1 distance between the intensity distributions of each tissue
  class (CSF, GM, WM of a T1: a 3-class Gaussian mixture, classes ordered by mean intensity;
  a volume on the reference's grid takes the reference's classes), averaged over the classes. Sees global intensity maps (gamma, contrast changes).
* ``contrast``: |log(WM/GM)_A - log(WM/GM)_B| + |log(GM/CSF)_A - log(GM/CSF)_B| from the class
  means. Sees tissue contrast changes.
* ``bias``: difference in the spread (sd over the foreground) of the log bias field that
  SimpleITK's N4 estimates on each volume. Sees smooth multiplicative bias fields.
* ``texture_mmd2``: unbiased MMD^2 between grey-level co-occurrence features (scikit-image
  GLCM: contrast, dissimilarity, homogeneity, energy, correlation, ASM at distances 1 and 2,
  averaged over 4 directions) of the slices. Sees blur, noise and resolution.

Intensities are expected normalised to [0, 1] with background 0 (``medgap.gap`` does this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SliceSummaries", "summarise_volume", "tissue_labels", "concat_summaries", "TISSUE_MEASURES", "BINS"]

BINS = 128
CLASSES = ("CSF", "GM", "WM")
FOREGROUND = 0.05
_GLCM_LEVELS = 32
_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


@dataclass
class SliceSummaries:
    """Per-slice summaries of one dataset (N slices).

    Attributes:
        hist: (N, 3, BINS) intensity counts per tissue class on [0, 1].
        class_sum: (N, 3) intensity sums per class; ``class_count`` (N, 3) voxel counts.
        bias_sq: (N,) sum over the slice's foreground of the squared (centred) log bias field;
            ``bias_count`` (N,) voxels it was summed over.
        texture: (N, F) GLCM features.
        position: (N,) relative position of the slice in its volume (0 = inferior, 1 = superior).
        volume: (N,) index of the volume the slice came from.
    """

    hist: np.ndarray
    class_sum: np.ndarray
    class_count: np.ndarray
    bias_sq: np.ndarray
    bias_count: np.ndarray
    texture: np.ndarray
    position: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.position)

    def take(self, index: np.ndarray) -> "SliceSummaries":
        return SliceSummaries(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def concat_summaries(parts: list[SliceSummaries]) -> SliceSummaries:
    fields = SliceSummaries.__dataclass_fields__
    return SliceSummaries(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def _tissue_labels(volume: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class index per voxel (-1 background; 0..2 by increasing mean) and the foreground mask."""
    from sklearn.mixture import GaussianMixture

    mask = volume > FOREGROUND
    values = volume[mask]
    labels = np.full(volume.shape, -1, dtype=np.int8)
    if values.size < 30:
        return labels, mask
    # a fixed seed and a large sample: the class boundaries must not move between the two sides
    # of a comparison by chance (that alone made two halves of one brain look different)
    rng = np.random.default_rng(0)
    sample = values[rng.choice(values.size, min(values.size, 100000), replace=False)]
    gmm = GaussianMixture(len(CLASSES), random_state=0, n_init=2).fit(sample[:, None])
    order = np.argsort(gmm.means_[:, 0])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels[mask] = rank[gmm.predict(values[:, None])]
    return labels, mask


def _bias_field(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Centred log bias field on the foreground (0 elsewhere), estimated by SimpleITK's N4 on a
    4x shrunken copy (about 2 s for a 1 mm brain) and evaluated at full resolution."""
    import SimpleITK as sitk

    field = np.zeros(volume.shape, dtype=np.float32)
    if mask.sum() < 50 or min(volume.shape) < 8:
        return field
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    shrink = [max(1, min(4, n // 32)) for n in image.GetSize()]  # keep >= 32 voxels a side for N4
    small = sitk.Shrink(image, shrink)
    small_mask = sitk.Cast(small > FOREGROUND, sitk.sitkUInt8)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([20, 20, 20])
    n4.Execute(small, small_mask)
    log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image))
    field[mask] = log_field[mask] - log_field[mask].mean()
    return field


def _glcm_features(image: np.ndarray) -> np.ndarray:
    """GLCM features of the foreground of one slice (pairs touching the background are dropped)."""
    from skimage.feature import graycomatrix, graycoprops

    fg = image > FOREGROUND
    quantised = np.where(fg, 1 + np.minimum((image * (_GLCM_LEVELS - 1)).astype(int), _GLCM_LEVELS - 2), 0)
    glcm = graycomatrix(quantised.astype(np.uint8), distances=[1, 2], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                        levels=_GLCM_LEVELS, symmetric=True, normed=False)[1:, 1:].astype(np.float64)
    total = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = glcm / np.where(total > 0, total, 1)
    feats = [graycoprops(glcm, prop).mean(axis=1) for prop in _GLCM_PROPS]  # each (distances,)
    return np.nan_to_num(np.concatenate(feats))


def tissue_labels(volume: np.ndarray) -> np.ndarray:
    """Tissue class per voxel of a T1 in [0, 1]: -1 background, 0 CSF, 1 GM, 2 WM (Gaussian mixture)."""
    return _tissue_labels(volume, 0)[0]


def summarise_volume(volume: np.ndarray, slice_index: np.ndarray, volume_id: int, seed: int = 0,
                     labels: np.ndarray | None = None) -> SliceSummaries:
    """Summaries of the axial slices ``slice_index`` of ``volume`` (X, Y, Z) in [0, 1].

    ``labels``: tissue classes to use instead of the volume's own mixture fit -- the reference's,
    when the volume lies on the reference's grid, so that a class keeps its anatomical meaning
    whatever the volume's contrast (white matter stays white matter when it turns darker than grey).
    """
    mask = volume > FOREGROUND
    if labels is None:
        labels = tissue_labels(volume)
    else:
        labels = np.where(mask, labels, -1).astype(np.int8)
    field = _bias_field(volume, mask)
    n, k = len(slice_index), len(CLASSES)
    hist = np.zeros((n, k, BINS))
    class_sum, class_count = np.zeros((n, k)), np.zeros((n, k))
    bias_sq, bias_count = np.zeros(n), np.zeros(n)
    texture = []
    edges = np.linspace(0, 1, BINS + 1)
    for i, z in enumerate(slice_index):
        image, lab = volume[:, :, z], labels[:, :, z]
        for c in range(k):
            vals = image[lab == c]
            hist[i, c] = np.histogram(vals, bins=edges)[0]
            class_sum[i, c], class_count[i, c] = vals.sum(), vals.size
        fg = mask[:, :, z]
        bias_sq[i], bias_count[i] = float((field[:, :, z][fg] ** 2).sum()), int(fg.sum())
        texture.append(_glcm_features(image))
    position = np.asarray(slice_index, dtype=np.float64) / max(volume.shape[2] - 1, 1)
    return SliceSummaries(hist, class_sum, class_count, bias_sq, bias_count, np.array(texture), position,
                          np.full(n, volume_id))


# --------------------------------------------------------------------------- measures


def _w1_from_hist(ha: np.ndarray, hb: np.ndarray) -> float:
    """Wasserstein-1 between two histograms on the same bins of [0, 1]."""
    if ha.sum() == 0 or hb.sum() == 0:
        return 0.0
    return float(np.abs(np.cumsum(ha / ha.sum()) - np.cumsum(hb / hb.sum())).sum() / len(ha))


def tissue_w1(a: SliceSummaries, b: SliceSummaries) -> float:
    ha, hb = a.hist.sum(0), b.hist.sum(0)
    return float(np.mean([_w1_from_hist(ha[c], hb[c]) for c in range(len(CLASSES))]))


def _log_ratios(s: SliceSummaries) -> np.ndarray:
    means = s.class_sum.sum(0) / np.maximum(s.class_count.sum(0), 1)
    means = np.maximum(means, 1e-3)
    return np.log([means[2] / means[1], means[1] / means[0]])


def contrast(a: SliceSummaries, b: SliceSummaries) -> float:
    return float(np.abs(_log_ratios(a) - _log_ratios(b)).sum())


def _bias_sd(s: SliceSummaries) -> float:
    return float(np.sqrt(s.bias_sq.sum() / max(s.bias_count.sum(), 1)))


def bias(a: SliceSummaries, b: SliceSummaries) -> float:
    return abs(_bias_sd(a) - _bias_sd(b))


def texture_mmd2(a: SliceSummaries, b: SliceSummaries) -> float:
    from medgap.metrics.distribution import mmd2_unbiased

    pooled = np.concatenate([a.texture, b.texture])
    mean, sd = pooled.mean(0), pooled.std(0) + 1e-8
    return float(mmd2_unbiased((a.texture - mean) / sd, (b.texture - mean) / sd))


# name -> (function, what it is meant to see, how to read the number)
TISSUE_MEASURES = {
    "tissue_w1": (tissue_w1, "intensity maps and tissue contrast", "mean W1 of CSF/GM/WM intensities (0-1 scale)"),
    "contrast": (contrast, "tissue contrast", "|log WM/GM| + |log GM/CSF| differences"),
    "bias": (bias, "smooth bias fields", "difference in sd of the log bias field"),
    "texture_mmd2": (texture_mmd2, "blur, noise, resolution", "MMD^2 of standardised GLCM features"),
}
