import numpy as np
import pytest

from medgap.data.spectra import (HSI_TISSUES, PAT_LABELS, absorption, chromophore_spectra, diffuse_reflectance,
                                 reduced_scattering, simulate_hsi, simulate_pat)
from medgap.errors import InputError


def test_chromophore_values_are_the_published_ones():
    s = chromophore_spectra(np.array([450.0, 700.0, 970.0, 800.0]))
    assert s["hbo2"][0] == pytest.approx(336.0)  # Prahl: 62816 cm^-1/M * 2.303 * 150 / 64500
    assert s["hb"][1] > 3 * s["hbo2"][1]  # deoxy-Hb dominates at 700 nm
    assert s["water"][2] > 10 * s["water"][1]  # the 970 nm water band
    with pytest.raises(InputError, match="450, 1000"):
        chromophore_spectra(np.array([400.0, 500.0]))


def test_absorption_mixes_volume_fractions_and_scattering_follows_the_power_law():
    wl = np.array([600.0, 800.0])
    spec = chromophore_spectra(wl)
    mu = absorption(wl, blood=0.1, so2=0.7, water=0.5, fat=0.2)
    expect = 0.1 * (0.7 * spec["hbo2"] + 0.3 * spec["hb"]) + 0.5 * spec["water"] + 0.2 * spec["fat"]
    np.testing.assert_allclose(mu, expect)
    packed = absorption(wl, blood=0.1, so2=0.7, water=0.5, fat=0.2, packaging_radius_cm=0.005)
    assert np.all(packed < mu)
    np.testing.assert_allclose(reduced_scattering(np.array([500.0, 1000.0]), 20.0, 1.0), [20.0, 10.0])


def test_diffuse_reflectance_is_physical():
    mu_s = np.full(50, 15.0)
    r = diffuse_reflectance(np.linspace(0.01, 50, 50), mu_s)
    assert np.all((r > 0) & (r < 1)) and np.all(np.diff(r) < 0)  # more absorption, less light back


def test_hsi_simulator_labels_groups_and_physics():
    s = simulate_hsi(600, seed=3)
    assert s.spectra.shape == (600, 100) and s.wavelengths[0] == 500 and s.wavelengths[-1] == 995
    assert np.bincount(s.labels).tolist() == [60] * 10 and s.label_names == [t.name for t in HSI_TISSUES]
    again = simulate_hsi(600, seed=3)
    np.testing.assert_array_equal(s.spectra, again.spectra)
    names = s.label_names
    at560 = int(np.argmin(np.abs(s.wavelengths - 560)))
    liver = s.spectra[s.labels == names.index("liver"), at560].mean()
    omentum = s.spectra[s.labels == names.index("omentum"), at560].mean()
    assert liver < 0.5 * omentum  # blood-rich organs are darker in the haemoglobin bands
    r = simulate_hsi(600, seed=3, realism="rich")
    assert len(np.unique(r.groups)) >= 2 and not np.allclose(r.spectra, s.spectra)


def test_pat_simulator_vessels_and_oxygenation():
    p = simulate_pat(3, shape=(64, 128), seed=2)
    assert p.images.shape == (3, 16, 64, 128) and p.segmentation.shape == (3, 64, 128)
    assert p.label_names == list(PAT_LABELS)
    art, vein = PAT_LABELS.index("artery"), PAT_LABELS.index("vein")
    i700, i850 = 0, 15
    a = np.concatenate([img[:, seg == art] for img, seg in zip(p.images, p.segmentation)], axis=1)
    v = np.concatenate([img[:, seg == vein] for img, seg in zip(p.images, p.segmentation)], axis=1)
    assert a.size and v.size
    # deoxygenated blood absorbs relatively more at 700 nm than at 850 nm
    assert np.median(v[i700] / v[i850]) > np.median(a[i700] / a[i850])
    assert p.images.min() >= 0
    rich = simulate_pat(2, shape=(64, 128), seed=2, realism="rich")
    assert rich.images.min() < 0  # band-limited detector: negative halos


def test_simulators_reject_bad_arguments():
    with pytest.raises(InputError, match="realism"):
        simulate_hsi(100, realism="fancy")
    with pytest.raises(InputError, match="one spectrum per class"):
        simulate_hsi(5)
    with pytest.raises(InputError, match="16x16"):
        simulate_pat(1, shape=(8, 8))


def test_rich_stand_in_gap_is_not_a_per_channel_rescaling():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    sim = simulate_hsi(3000, seed=0)
    real, test = simulate_hsi(3000, realism="rich", seed=1), simulate_hsi(3000, realism="rich", seed=2)
    a, b = unit(sim.spectra), unit(real.spectra)
    standardised = (a - a.mean(0)) / a.std(0) * b.std(0) + b.mean(0)

    def accuracy(x, y):
        rf = RandomForestClassifier(60, random_state=0, n_jobs=-1).fit(x, y)
        return balanced_accuracy_score(test.labels, rf.predict(unit(test.spectra)))

    # a classifier trained on real-domain spectra beats one trained on standardised simulations clearly
    assert accuracy(b, real.labels) > accuracy(standardised, sim.labels) + 0.05
    assert np.isfinite(real.spectra).all() and real.spectra.min() > 0
