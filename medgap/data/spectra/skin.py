"""Labelled skin reflectance spectra from a two-layer model: epidermis with melanin over dermis with blood.

The simulation side of sim-to-real transfer on the real skin spectra of :mod:`medgap.data.skin`
(bench_transfer_skin_sim). Each simulated subject has one melanin content (its label: light,
intermediate or dark skin) and is "measured" at six sites that differ in blood content,
oxygenation and epidermal thickness, like the archive's subjects.

- Epidermis (thickness d, 60-120 um): mu_a = f_mel mu_mel + (1 - f_mel) mu_base, melanosome
  volume fraction f_mel log-uniform in 1-30 % (Jacques 2013: 1.3-6.3 % light, 11-16 % intermediate,
  18-43 % dark skin), baseline skin absorption mu_base = 0.244 + 85.3 exp(-(l - 154) / 66.2) cm^-1
  (Jacques 1998). Light crosses it twice: T^2 = exp(-2 mu_a d).
- Dermis (semi-infinite): blood volume fraction 0.5-5 %, sO2 60-90 %, water 65 %;
  mu_s' = a (l / 500 nm)^-b with a = 30-60 cm^-1, b = 1.0-1.8 (Jacques 2013, skin: 46 cm^-1, 1.42);
  diffuse reflectance from diffusion theory (:func:`medgap.data.spectra.diffuse_reflectance`).
- A contact spectrophotometer with specular component included: R = r_s + (1 - r_s) T^2 R_dermis,
  r_s = 4 % (air/skin index 1.4 -> 1.5), plus 0.5 % multiplicative noise; values in % reflectance.

Chromophore spectra are the published tables medgap ships (450-1000 nm), so the grid starts at
450 nm: the default is the archive's 10 nm grid from 450 to 700 nm.
"""

from __future__ import annotations

import numpy as np

from medgap.errors import InputError
from medgap.io import SpectraSet

from .chromophores import absorption, chromophore_spectra, reduced_scattering
from .hsi import diffuse_reflectance

__all__ = ["SKIN_WAVELENGTHS", "SKIN_TYPES", "simulate_skin", "on_skin_grid"]

SKIN_WAVELENGTHS = np.arange(450.0, 701.0, 10.0)
SKIN_TYPES = ["light", "intermediate", "dark"]
_MELANIN_EDGES = (0.06, 0.16)  # melanosome volume fraction between the three types
SITES_PER_SUBJECT = 6


def simulate_skin(n_subjects: int, wavelengths: np.ndarray | None = None, seed: int = 0) -> SpectraSet:
    """``n_subjects`` x 6 spectra in % reflectance; labels = skin type (melanin), groups = subject."""
    if n_subjects < 1:
        raise InputError(None, f"n_subjects must be >= 1, got {n_subjects}")
    wl = SKIN_WAVELENGTHS if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = n_subjects * SITES_PER_SUBJECT
    subject = np.repeat(np.arange(n_subjects), SITES_PER_SUBJECT)
    melanin = np.exp(rng.uniform(np.log(0.01), np.log(0.30), n_subjects))[subject]
    thickness_cm = rng.uniform(60e-4, 120e-4, n)
    base = 0.244 + 85.3 * np.exp(-(wl - 154.0) / 66.2)
    mu_epi = melanin[:, None] * chromophore_spectra(wl)["melanin"] + (1.0 - melanin[:, None]) * base
    transmission2 = np.exp(-2.0 * mu_epi * thickness_cm[:, None])
    mu_a = absorption(wl, blood=rng.uniform(0.005, 0.05, n), so2=rng.uniform(0.6, 0.9, n), water=0.65, fat=0.0)
    mu_s = reduced_scattering(wl, rng.uniform(30.0, 60.0, n), rng.uniform(1.0, 1.8, n))
    specular = 0.04
    reflectance = specular + (1.0 - specular) * transmission2 * diffuse_reflectance(mu_a, mu_s)
    reflectance *= 1.0 + 0.005 * rng.standard_normal(reflectance.shape)
    labels = np.digitize(melanin, _MELANIN_EDGES)
    return SpectraSet((100.0 * reflectance).astype(np.float32), wl, labels, list(SKIN_TYPES), subject)


def on_skin_grid(real: SpectraSet) -> SpectraSet:
    """Measured spectra restricted to the simulator's default channels (:data:`SKIN_WAVELENGTHS`), so that
    simulated and real spectra can be compared and transferred channel by channel."""
    keep = np.isin(real.wavelengths, SKIN_WAVELENGTHS)
    return SpectraSet(real.spectra[:, keep], real.wavelengths[keep], real.labels, real.label_names, real.groups)
