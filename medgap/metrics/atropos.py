"""Tissue classes by a segmenter medgap did not write: ANTs Atropos (antspyx), for downstream scores.

A harmonised T1 is only as good as what a user's pipeline makes of it. ``ants.atropos`` with a
k-means start and a Markov random field (ANTs' standard 3-class brain segmentation, as in
``antsAtroposN4.sh``: ``kmeans[3]``, MRF ``[0.1, 1x1]``) labels CSF, grey and white matter inside a
brain mask; classes come out ordered by mean intensity (CSF < GM < WM on a T1). The same call on
the untouched image (the truth) and on each method's result gives the Dice per tissue and the error
of each tissue's volume -- the measure a FreeSurfer/FSL/ANTs user reads.

2D slices are laid side by side in one mosaic (one Atropos run per image set; the background
between tiles keeps the MRF from linking neighbouring slices). antspyx is an extra
(``pip install 'medgap[bench]'``; ``make setup`` installs it): only the benchmarks and tests use it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TISSUES", "atropos_tissues", "tissue_agreement"]

TISSUES = ("CSF", "GM", "WM")


def _ants():
    try:
        import ants
    except ImportError as exc:  # an extra, not a run-time dependency
        raise ImportError("the Atropos tissue measure needs antspyx: pip install 'medgap[bench]' "
                          "(make setup installs it)") from exc
    return ants


def _mosaic(stack: np.ndarray, gap: int = 2) -> np.ndarray:
    """(N, H, W) -> one 2D image of the slices in a near-square grid, ``gap`` zero pixels between them."""
    n, h, w = stack.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * (h + gap), cols * (w + gap)), dtype=np.float32)
    for i, s in enumerate(stack):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = s
    return out


def _unmosaic(image: np.ndarray, shape: tuple[int, int, int], gap: int = 2) -> np.ndarray:
    n, h, w = shape
    cols = math.ceil(math.sqrt(n))
    out = np.empty(shape, dtype=image.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        out[i] = image[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w]
    return out


def atropos_tissues(images: np.ndarray, mask: np.ndarray, *, slices: bool = False, mrf: float = 0.1,
                    iterations: int = 5) -> np.ndarray:
    """Tissue labels (0 outside ``mask``, 1 CSF, 2 GM, 3 WM) of a T1 by ANTs Atropos (k-means start, MRF).

    ``images``: a 2D image or 3D volume, or with ``slices=True`` a stack of 2D slices (N, H, W),
    segmented as one mosaic. ``mask``: the brain, same shape."""
    ants = _ants()
    images, mask = np.asarray(images, np.float32), np.asarray(mask) > 0
    if images.shape != mask.shape:
        raise ValueError(f"image {images.shape} and mask {mask.shape} differ in shape")
    if not mask.any():
        return np.zeros(images.shape, np.uint8)
    flat = slices and images.ndim == 3
    image = _mosaic(images) if flat else images
    brain = _mosaic(mask.astype(np.float32)) if flat else mask.astype(np.float32)
    try:
        result = ants.atropos(a=ants.from_numpy(np.ascontiguousarray(image)),
                              x=ants.from_numpy(np.ascontiguousarray(brain)), i="kmeans[3]",
                              m=f"[{mrf},{'x'.join(['1'] * image.ndim)}]", c=f"[{iterations},0]", verbose=0)
    except Exception as exc:  # antspyx raises a bare Exception when the Atropos binary fails
        raise RuntimeError(f"ANTs Atropos failed on an image of shape {images.shape} with "
                           f"{int(mask.sum())} brain voxels: {exc}") from exc
    labels = result["segmentation"].numpy().astype(np.uint8)
    return _unmosaic(labels, images.shape) if flat else labels


def tissue_agreement(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Dice per tissue of ``labels`` against ``truth`` (both from :func:`atropos_tissues`), their mean,
    and each tissue's volume error in % of the truth's volume (absolute), with the mean."""
    out: dict = {}
    for k, name in enumerate(TISSUES, start=1):
        a, b = labels == k, truth == k
        total = a.sum() + b.sum()
        out[f"dice_{name}"] = 1.0 if total == 0 else float(2.0 * (a & b).sum() / total)
        out[f"volume_error_{name}"] = float(abs(a.sum() - b.sum()) / max(b.sum(), 1) * 100)
    out["dice"] = float(np.mean([out[f"dice_{n}"] for n in TISSUES]))
    out["volume_error"] = float(np.mean([out[f"volume_error_{n}"] for n in TISSUES]))
    return out
