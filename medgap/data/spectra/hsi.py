"""Labelled hyperspectral (HSI) pixel spectra from diffusion theory.

``simple``: one homogeneous semi-infinite tissue per spectrum; diffuse reflectance from the
diffusion-theory expression of Farrell, Patterson & Wilson (1992, Med. Phys. 19:879)::

    R_d = a'/2 * (1 + exp(-4/3 A sqrt(3 (1 - a')))) * exp(-sqrt(3 (1 - a'))),   a' = mu_s' / (mu_a + mu_s')

with the internal-reflection parameter A for a tissue/air index ratio of 1.4.

``rich`` ("real-like" stand-in): the same model plus effects the simple simulation leaves out --
a thin superficial layer mixed in by the wavelength-dependent penetration depth
(delta = 1 / sqrt(3 mu_a (mu_a + mu_s'))), vessel packaging of blood, a Rayleigh share of the
scattering with per-spectrum heterogeneity, subject-level physiology offsets, a camera
(filter bandwidth, stray light and detector saturation that the white reference does not remove,
white-reference tilt, specular offset) and shot/read noise. Its labels are
meant to be hidden from training: it stands in for real recordings, it is not one.
"""

from __future__ import annotations

import numpy as np

from medgap.errors import InputError
from medgap.io import SpectraSet

from .chromophores import absorption, reduced_scattering
from .tissues import HSI_TISSUES, TissueClass, sample_parameters

__all__ = ["DEFAULT_HSI_WAVELENGTHS", "diffuse_reflectance", "simulate_hsi"]

DEFAULT_HSI_WAVELENGTHS = np.arange(500.0, 1000.0, 5.0)  # 100 channels, 500-995 nm

# Relative prevalence of the organs in the stand-in "real" recordings (large organs fill more pixels).
_RICH_PREVALENCE = np.array([1.0, 1.5, 1.0, 2.0, 0.4, 0.5, 0.8, 0.7, 0.6, 1.2])


def _internal_reflection_a(n_rel: float = 1.4) -> float:
    r_id = -1.440 / n_rel**2 + 0.710 / n_rel + 0.668 + 0.0636 * n_rel
    return (1.0 + r_id) / (1.0 - r_id)


def diffuse_reflectance(mu_a: np.ndarray, mu_s_prime: np.ndarray, n_rel: float = 1.4) -> np.ndarray:
    """Total diffuse reflectance (0..1) of a semi-infinite medium; mu_a, mu_s' in cm^-1, any equal shapes."""
    a_prime = mu_s_prime / (mu_a + mu_s_prime)
    root = np.sqrt(3.0 * (1.0 - a_prime))
    big_a = _internal_reflection_a(n_rel)
    return 0.5 * a_prime * (1.0 + np.exp(-4.0 / 3.0 * big_a * root)) * np.exp(-root)


def _class_counts(n: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = weights / weights.sum()
    counts = np.floor(p * n).astype(int)
    # hand the remainder to random classes so that sum(counts) == n exactly
    for k in rng.choice(len(p), size=n - counts.sum(), p=p):
        counts[k] += 1
    return counts


def _gaussian_band_matrix(fine_nm: np.ndarray, centres_nm: np.ndarray, fwhm_nm: float) -> np.ndarray:
    """(C, F) weights that integrate a fine spectrum over Gaussian filter bands (camera response)."""
    sigma = fwhm_nm / 2.3548
    w = np.exp(-0.5 * ((centres_nm[:, None] - fine_nm[None, :]) / sigma) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _camera(refl: np.ndarray, fine_nm: np.ndarray, band: np.ndarray, exposure: np.ndarray,
            stray_fraction: float = 0.2) -> np.ndarray:
    """White-reference-calibrated reflectance (n, C) as a push-broom camera records ``refl`` (n, F).

    The sensor sees lamp x silicon quantum efficiency x reflectance (weak in the NIR), of which
    ``stray_fraction`` is scattered across the whole spectrum (stray light, 150 nm wide), and its
    counts saturate (c / (1 + c), c in units of the half-saturation level). The exposure is set per
    recording on the tissue (``exposure``: counts of a perfect reflector, per spectrum), the white
    reference is taken in the linear range. The division by the white reference therefore removes
    lamp and quantum efficiency only for a linear, stray-light-free detector: what remains depends on
    the whole spectrum (bright visible bands leak into the dim NIR ones; bright tissue is compressed),
    a gap no per-channel shift and scale can close.
    """
    lamp = (fine_nm / 700.0) ** 2  # halogen lamp, rising towards the NIR over this range
    qe = np.exp(-0.5 * ((fine_nm - 600.0) / 220.0) ** 2)  # front-illuminated silicon
    weight = lamp * qe / (lamp * qe).max()
    stray = _gaussian_band_matrix(fine_nm, fine_nm, fwhm_nm=150.0)

    def counts(r: np.ndarray) -> np.ndarray:
        sig = r * weight
        return ((1.0 - stray_fraction) * sig + stray_fraction * sig @ stray.T) @ band.T

    white = counts(np.ones((1, fine_nm.size)))
    c = exposure[:, None] * counts(refl)
    return c / (1.0 + c) / (exposure[:, None] * white)


def simulate_hsi(n: int, *, wavelengths: np.ndarray | None = None, realism: str = "simple", seed: int = 0,
                 n_subjects: int | None = None, tissues: tuple[TissueClass, ...] = HSI_TISSUES) -> SpectraSet:
    """Simulate ``n`` labelled reflectance spectra.

    Returns a SpectraSet: spectra (n, C) float32 reflectance (0..1), wavelengths (C,) nm, labels (n,)
    tissue index, label_names, groups (n,) subject index (``rich``) or simulation batch (``simple``).
    """
    if realism not in ("simple", "rich"):
        raise InputError(None, f"realism must be 'simple' or 'rich', got {realism!r}")
    if n < len(tissues):
        raise InputError(None, f"need at least one spectrum per class ({len(tissues)}), got n={n}")
    wl = DEFAULT_HSI_WAVELENGTHS if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rich = realism == "rich"
    weights = _RICH_PREVALENCE[: len(tissues)] if rich and len(tissues) == len(_RICH_PREVALENCE) else np.ones(len(tissues))
    counts = _class_counts(n, weights, rng)
    labels = np.repeat(np.arange(len(tissues)), counts)
    params = {k: np.concatenate([sample_parameters(t, c, rng)[k] for t, c in zip(tissues, counts)])
              for k in ("blood", "so2", "water", "fat", "melanin", "a", "b")}

    if not rich:
        mu_a = absorption(wl, blood=params["blood"], so2=params["so2"], water=params["water"],
                          fat=params["fat"], melanin=params["melanin"])
        mu_s = reduced_scattering(wl, params["a"], params["b"])
        spectra = diffuse_reflectance(mu_a, mu_s)
        groups = np.arange(n) // 1000  # simulation batches: no subjects exist in a simulation
    else:
        n_sub = n_subjects or int(np.clip(n // 50, 2, 20))
        groups = rng.integers(0, n_sub, size=n)
        sub_blood = rng.lognormal(0.0, 0.15, n_sub)[groups]
        sub_so2 = rng.normal(0.0, 0.03, n_sub)[groups]
        sub_scat = rng.lognormal(0.0, 0.10, n_sub)[groups]
        tilt = rng.normal(0.15, 0.05, n_sub)[groups]  # imperfect white-reference calibration

        blood = np.clip(params["blood"] * sub_blood, 0.0, 1.0)
        so2 = np.clip(params["so2"] + sub_so2, 0.0, 1.0)
        scat_a = params["a"] * sub_scat * rng.lognormal(0.0, 0.15, n)  # heterogeneous scattering
        rayleigh = rng.uniform(0.0, 0.3, n)
        radius_cm = rng.uniform(5e-4, 2.5e-3, n)  # 5-25 um vessels

        fine = np.arange(max(450.0, wl.min() - 30.0), min(1000.0, wl.max() + 30.0) + 0.5, 1.0)
        deep_a = absorption(fine, blood=blood, so2=so2, water=params["water"], fat=params["fat"],
                            melanin=params["melanin"], packaging_radius_cm=radius_cm)
        deep_s = reduced_scattering(fine, scat_a, params["b"], rayleigh)
        # superficial serosa/mucosa: less blood, more scattering; thickness 0.2-1 mm
        top_a = absorption(fine, blood=blood * rng.uniform(0.3, 0.7, n), so2=so2, water=params["water"],
                           fat=params["fat"], melanin=params["melanin"], packaging_radius_cm=radius_cm)
        top_s = deep_s * rng.uniform(1.2, 1.8, n)[:, None]
        thickness_cm = rng.uniform(0.02, 0.1, n)[:, None]
        delta = 1.0 / np.sqrt(3.0 * deep_a * (deep_a + deep_s))
        w_top = -np.expm1(-2.0 * thickness_cm / delta)
        refl = diffuse_reflectance(w_top * top_a + (1 - w_top) * deep_a, w_top * top_s + (1 - w_top) * deep_s)

        band = _gaussian_band_matrix(fine, wl, fwhm_nm=20.0)
        spectra = _camera(refl, fine, band, rng.uniform(4.0, 5.0, n_sub)[groups])
        spectra = spectra * np.exp(tilt[:, None] * (wl[None, :] - 750.0) / 250.0)
        spectra = spectra + rng.uniform(0.0, 0.02, n)[:, None]  # specular reflection, flat
        shot = np.sqrt(np.clip(spectra, 0, None) * 1e-4)
        spectra = spectra + rng.normal(size=spectra.shape) * shot + rng.normal(0.0, 2e-3, spectra.shape)
        spectra = np.clip(spectra, 1e-4, None)

    order = rng.permutation(n)
    return SpectraSet(spectra=spectra[order].astype(np.float32), wavelengths=wl.astype(np.float64),
                      labels=labels[order].astype(np.int64), label_names=[t.name for t in tissues],
                      groups=groups[order].astype(np.int64))
