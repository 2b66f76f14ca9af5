"""The independent tissue segmenter (ANTs Atropos via antspyx) behind the harmonisation benchmark."""

import numpy as np
import pytest

from medgap.metrics.atropos import atropos_tissues, tissue_agreement


def _phantom(n: int = 6, size: int = 48, seed: int = 0):
    """Slices of a disc (brain) with three nested tissue rings: CSF (dark) outside, GM, WM inside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    r = np.hypot(yy, xx)
    truth = np.select([r < 8, r < 14, r < 20], [3, 2, 1], 0).astype(np.uint8)
    levels = np.array([0.0, 0.25, 0.55, 0.85], np.float32)
    images = np.stack([levels[truth] + 0.02 * rng.standard_normal(truth.shape) for _ in range(n)]).astype(np.float32)
    return images, np.stack([truth] * n), np.stack([truth > 0] * n)


def test_atropos_finds_three_tissues_in_intensity_order():
    images, truth, mask = _phantom()
    labels = atropos_tissues(images, mask, slices=True)
    assert labels.shape == images.shape
    assert (labels[~mask] == 0).all()
    scores = tissue_agreement(labels, truth)
    assert scores["dice"] > 0.95, scores
    assert scores["volume_error"] < 5, scores


def test_a_contrast_inversion_is_seen_as_tissue_error():
    images, truth, mask = _phantom()
    swapped = images.copy()
    swapped[truth == 3] -= 0.6  # WM and CSF levels exchanged, noise kept
    swapped[truth == 1] += 0.6
    scores = tissue_agreement(atropos_tissues(swapped, mask, slices=True), truth)
    assert scores["dice_CSF"] < 0.1 and scores["dice_WM"] < 0.1


def test_tissue_agreement_counts():
    truth = np.array([0, 1, 1, 2, 2, 3, 3, 3])
    labels = np.array([0, 1, 2, 2, 2, 3, 3, 1])
    s = tissue_agreement(labels, truth)
    assert s["dice_GM"] == pytest.approx(2 * 2 / 5)
    assert s["volume_error_WM"] == pytest.approx(100 / 3)
    assert s["volume_error_CSF"] == pytest.approx(0.0)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        atropos_tissues(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), slices=True)
