"""MS-SSIM diversity and the FID/MMD wrapper."""

import numpy as np
import pytest

from medgap.errors import InputError
from medgap.synthesize.evaluate import distribution_scores, ms_ssim_diversity, save_montage


def _blobs(n, seed, jitter):
    rng = np.random.default_rng(seed)
    g = np.linspace(-1, 1, 32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    out = []
    for _ in range(n):
        c = rng.uniform(-jitter, jitter, 3)
        r = rng.uniform(0.3, 0.3 + jitter)
        out.append(np.where((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < r**2, 0.8, -1.0))
    return np.stack(out).astype(np.float32)


def test_ms_ssim_diversity_orders_sets():
    same = np.repeat(_blobs(1, 0, 0.0), 3, axis=0)
    assert ms_ssim_diversity(same) == pytest.approx(1.0, abs=1e-4)
    varied = _blobs(4, 1, 0.4)
    assert ms_ssim_diversity(varied) < 0.9


def test_distribution_scores_separate_sets(tmp_path):
    a, b, c = _blobs(4, 0, 0.05), _blobs(4, 1, 0.05), _blobs(4, 2, 0.0) * -1
    near = distribution_scores(a, b)
    far = distribution_scores(a, c)
    assert far["fid"] > near["fid"] and far["mmd2"] > near["mmd2"]
    path = save_montage(tmp_path / "m.png", {"a": a, "c": c})
    assert path.stat().st_size > 5000


def test_evaluate_needs_two_real_volumes():
    from medgap.synthesize.evaluate import evaluate_model

    with pytest.raises(InputError, match="at least 2 real"):
        evaluate_model(None, _blobs(1, 0, 0.0), "unused")


def _head(seed: int, contrast: bool) -> np.ndarray:
    """An ellipsoid 'head' with (or without) a dark 'ventricle' and a brighter 'white matter' core."""
    g = np.linspace(-1, 1, 32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    rng = np.random.default_rng(seed)
    vol = np.where((x / 0.8) ** 2 + (y / 0.6) ** 2 + (z / 0.7) ** 2 < 1, 0.2, -1.0)
    if contrast:
        vol = np.where((x / 0.5) ** 2 + (y / 0.35) ** 2 + (z / 0.45) ** 2 < 1, 0.8, vol)
        vol = np.where((x / 0.12) ** 2 + (y / 0.2) ** 2 + (z / 0.25) ** 2 < 1, -0.6, vol)
    return (vol + 0.02 * rng.standard_normal(vol.shape)).astype(np.float32)


def test_anatomy_scores_need_outline_and_interior_contrast():
    from medgap.synthesize.evaluate import anatomy_scores

    training = _head(0, True)[None]
    shifted = np.roll(_head(1, True), 3, axis=0)[None]  # position does not count
    same = anatomy_scores(shifted, training)
    assert same["r"] > 0.9 and same["dice"] > 0.9 and same["interior_r"] > 0.8
    blob = anatomy_scores(_head(2, False)[None], training)  # right outline, no contrast inside
    assert blob["dice"] > 0.9 and blob["interior_r"] < 0.2
    noise = anatomy_scores(np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 32)).astype(np.float32), training)
    assert noise["r"] < 0.2 and noise["interior_r"] < 0.2 and len(noise["r_each"]) == 2


def test_memorisation_flags_samples_closer_to_a_real_volume_than_real_volumes_are_to_each_other():
    from medgap.synthesize.evaluate import memorisation_scores

    real = np.stack([_head(s, True) for s in range(3)])
    copy = real[1] + 0.001  # a memorised training volume
    new = np.roll(_head(7, True), 4, axis=1)  # the same kind of anatomy, somewhere else
    scores = memorisation_scores(np.stack([copy, new]), real)
    assert scores["copies"] == 1 and scores["nearest_real"][0] == 1
    assert scores["sample_to_nearest_real"][0] < 0.01 < min(scores["real_to_nearest_other_real"])
    assert scores["sample_to_nearest_real"][1] > min(scores["real_to_nearest_other_real"])
    with pytest.raises(InputError, match="at least 2 real"):
        memorisation_scores(real[:1], real[:1])


def test_plane_fid_per_plane_and_mean():
    from medgap.synthesize.evaluate import plane_fid

    a, b = _blobs(4, 0, 0.05), _blobs(4, 1, 0.05)
    far = _blobs(4, 2, 0.0) * -1
    near_scores, far_scores = plane_fid(a, b, slices_per_volume=4), plane_fid(a, far, slices_per_volume=4)
    planes = [near_scores[f"fid_{p}"] for p in ("sagittal", "coronal", "axial")]
    assert near_scores["fid_2.5d"] == pytest.approx(np.mean(planes))
    assert far_scores["fid_2.5d"] > near_scores["fid_2.5d"]
    assert "ResNet-10 2D" in near_scores["slice_feature_extractor"]
