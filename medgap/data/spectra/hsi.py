"""Labelled hyperspectral (HSI) pixel spectra from diffusion theory.

``simple``: one homogeneous semi-infinite tissue per spectrum; diffuse reflectance from the
diffusion-theory expression of Farrell, Patterson & Wilson (1992, Med. Phys. 19:879)::

    R_d = a'/2 * (1 + exp(-4/3 A sqrt(3 (1 - a')))) * exp(-sqrt(3 (1 - a'))),   a' = mu_s' / (mu_a + mu_s')

with the internal-reflection parameter A for a tissue/air index ratio of 1.4.

``rich`` ("real-like" stand-in): the same tissue model plus physics the simple simulation leaves
out, chosen so that no per-channel shift and scale (and no single linear map) undoes it
(docs/transfer.md, "The stand-in's physics", lists each effect with its source):

- physiology shifted against the simulation: blood volume x1.3 and sO2 - 0.08 on average, with
  per-subject spread; vessel packaging of blood; a Rayleigh share of the scattering and per-pixel
  scattering heterogeneity;
- a superficial layer (50-200 um, 1.5-3x the scattering, a melanin-like pigment) mixed in by the
  wavelength-dependent penetration depth delta = 1 / sqrt(3 mu_a (mu_a + mu_s'));
- illumination: the white reference is recorded under a 3000 K halogen lamp, the tissue under that
  lamp plus a share of phosphor-LED room light (per recording);
- specular reflection per pixel (heavy-tailed, spectrally shaped by the scene light);
- a snapshot-mosaic camera: filters with a second-order peak and a broadband leak (channel
  mixing), silicon quantum efficiency, stray light, Poisson-Gaussian noise in electrons and a
  saturating sensor response; the white-reference division removes none of these exactly.

Its labels are meant to be hidden from training: it stands in for real recordings, it is not one.
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


def _planck(nm: np.ndarray, kelvin: float) -> np.ndarray:
    """Black-body spectral radiance (arbitrary units) at ``nm``: a halogen lamp's spectrum."""
    metres = nm * 1e-9
    return 1.0 / (metres**5 * np.expm1(1.4388e-2 / (metres * kelvin)))


def _white_led(nm: np.ndarray) -> np.ndarray:
    """Phosphor-converted white LED (room/OR light): blue pump at 452 nm, phosphor hump at 575 nm, no NIR."""
    return np.exp(-0.5 * ((nm - 452.0) / 10.0) ** 2) + 0.8 * np.exp(-0.5 * ((nm - 575.0) / 55.0) ** 2)


def _mosaic_filters(fine_nm: np.ndarray, centres_nm: np.ndarray) -> np.ndarray:
    """(C, F) responses of snapshot-mosaic (Fabry-Perot) filters: a 15 nm main peak, a second-order
    peak of 25 % about 180 nm away and a 10 % broadband leak, so every channel mixes distant bands."""
    main = _gaussian_band_matrix(fine_nm, centres_nm, 15.0)
    up = centres_nm + 180.0
    second = np.clip(np.where(up <= fine_nm.max(), up, centres_nm - 190.0), fine_nm.min(), fine_nm.max())
    leak = np.full_like(main, 1.0 / fine_nm.size)
    return main + 0.25 * _gaussian_band_matrix(fine_nm, second, 25.0) + 0.10 * leak


def _record(refl: np.ndarray, fine_nm: np.ndarray, wl: np.ndarray, groups: np.ndarray, n_sub: int,
            rng: np.random.Generator) -> np.ndarray:
    """White-reference-calibrated reflectance (n, C) as a snapshot camera records ``refl`` (n, F)."""
    n = refl.shape[0]
    halogen = _planck(fine_nm, 3000.0)
    halogen /= halogen.max()
    led = _white_led(fine_nm)
    led_share = rng.uniform(0.1, 0.4, n_sub)[groups][:, None]
    scene = (1.0 - led_share) * halogen + 0.5 * led_share * led / led.max()
    specular = np.minimum(rng.exponential(0.015, n), 0.2)[:, None]  # Fresnel ~2-4 %, glossy wet pixels more
    qe = np.exp(-0.5 * ((fine_nm - 600.0) / 220.0) ** 2)  # front-illuminated silicon
    filters = _mosaic_filters(fine_nm, wl)
    stray = _gaussian_band_matrix(fine_nm, fine_nm, fwhm_nm=150.0)

    def signal(radiance: np.ndarray) -> np.ndarray:
        s = radiance * qe
        return (0.9 * s + 0.1 * s @ stray.T) @ filters.T  # 10 % stray light, then the filters

    white = signal(halogen[None])
    white_peak = white.max()
    white = white / white_peak
    exposure = rng.uniform(3.0, 5.0, n_sub)[groups][:, None]  # set per recording; 1 = half saturation
    counts = exposure * signal(scene * (refl + specular)) / white_peak
    full_well = 2000.0  # electrons at half saturation
    electrons = rng.poisson(np.clip(counts * full_well, 0.0, None)) + rng.normal(0.0, 8.0, counts.shape)
    counts = electrons / full_well
    measured = counts / (1.0 + np.abs(counts))  # saturating response; the white reference stays linear
    return measured / (exposure * white)


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
        # physiology differs from the simulation's ranges: more blood, less oxygen, per subject
        blood = np.clip(params["blood"] * rng.lognormal(np.log(1.3), 0.15, n_sub)[groups], 0.0, 1.0)
        so2 = np.clip(params["so2"] - 0.08 + rng.normal(0.0, 0.04, n_sub)[groups], 0.0, 1.0)
        scat_a = params["a"] * rng.lognormal(0.0, 0.10, n_sub)[groups] * rng.lognormal(0.0, 0.15, n)
        rayleigh = rng.uniform(0.0, 0.3, n)
        radius_cm = rng.uniform(5e-4, 2.5e-3, n)  # 5-25 um vessels

        fine = np.arange(max(450.0, wl.min() - 60.0), min(1000.0, wl.max() + 5.0) + 0.5, 1.0)
        deep_a = absorption(fine, blood=blood, so2=so2, water=params["water"], fat=params["fat"],
                            melanin=params["melanin"], packaging_radius_cm=radius_cm)
        deep_s = reduced_scattering(fine, scat_a, params["b"], rayleigh)
        # superficial layer: little blood, a melanin-like pigment, more scattering; 50-200 um
        top_a = absorption(fine, blood=blood * rng.uniform(0.0, 0.3, n), so2=so2, water=params["water"],
                           fat=params["fat"], melanin=rng.uniform(0.0, 0.03, n))
        top_s = deep_s * rng.uniform(1.5, 3.0, n)[:, None]
        thickness_cm = rng.uniform(0.005, 0.02, n)[:, None]
        delta = 1.0 / np.sqrt(3.0 * deep_a * (deep_a + deep_s))
        w_top = -np.expm1(-2.0 * thickness_cm / delta)
        refl = diffuse_reflectance(w_top * top_a + (1 - w_top) * deep_a, w_top * top_s + (1 - w_top) * deep_s)
        spectra = np.clip(_record(refl, fine, wl, groups, n_sub, rng), 1e-4, None)

    order = rng.permutation(n)
    return SpectraSet(spectra=spectra[order].astype(np.float32), wavelengths=wl.astype(np.float64),
                      labels=labels[order].astype(np.int64), label_names=[t.name for t in tissues],
                      groups=groups[order].astype(np.int64))
