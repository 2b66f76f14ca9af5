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
