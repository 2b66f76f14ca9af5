"""Tissue optical properties from measured chromophore spectra.

Absorption is a sum of chromophores weighted by volume fraction::

    mu_a(l) = B * (S * mu_HbO2(l) + (1 - S) * mu_Hb(l)) + W * mu_water(l) + F * mu_fat(l) + M * mu_mel(l)

with blood volume fraction B, oxygen saturation S (sO2), water W, fat F and melanosome M fractions;
reduced scattering follows the power law ``mu_s'(l) = a * (l / 500 nm) ** -b`` (Jacques 2013).
All coefficients are in cm^-1, wavelengths in nm. The measured spectra and their sources are in
``chromophores.npz`` and ``SOURCES.md`` next to this file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from medgap.errors import InputError

__all__ = ["CHROMOPHORES", "DATA_FILE", "chromophore_spectra", "absorption", "reduced_scattering"]

DATA_FILE = Path(__file__).with_name("chromophores.npz")
CHROMOPHORES = ("hbo2", "hb", "water", "fat", "melanin")


@lru_cache(maxsize=1)
def _table() -> dict[str, np.ndarray]:
    with np.load(DATA_FILE, allow_pickle=False) as d:
        return {k: np.asarray(d[k], dtype=np.float64) for k in d.files}


def chromophore_spectra(wavelengths_nm: np.ndarray) -> dict[str, np.ndarray]:
    """Absorption coefficients (cm^-1) of each chromophore at ``wavelengths_nm`` (C,), linear interpolation.

    Raises InputError for wavelengths outside the measured range 450-1000 nm.
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
    table = _table()
    lo, hi = table["wavelengths_nm"][0], table["wavelengths_nm"][-1]
    if wl.size == 0 or not np.all(np.isfinite(wl)) or wl.min() < lo or wl.max() > hi:
        raise InputError(None, f"wavelengths must lie in [{lo:.0f}, {hi:.0f}] nm (the measured chromophore "
                               f"spectra); got {wl.min() if wl.size else 'none'}-{wl.max() if wl.size else 'none'} nm")
    return {k: np.interp(wl, table["wavelengths_nm"], table[k]) for k in CHROMOPHORES}


def absorption(wavelengths_nm: np.ndarray, *, blood, so2, water, fat, melanin=0.0,
               packaging_radius_cm=None) -> np.ndarray:
    """mu_a in cm^-1, shape broadcast(params) + (C,). Parameters are volume fractions (scalars or (N,)).

    ``packaging_radius_cm`` applies the vessel packaging correction of van Veen et al. (2002):
    blood confined to vessels of radius R absorbs less than the same blood spread evenly,
    C(l) = (1 - exp(-2 mu_blood R)) / (2 mu_blood R).
    """
    spec = chromophore_spectra(wavelengths_nm)
    p = [np.asarray(v, dtype=np.float64)[..., None] for v in (blood, so2, water, fat, melanin)]
    blood_, so2_, water_, fat_, mel_ = p
    mu_blood = so2_ * spec["hbo2"] + (1.0 - so2_) * spec["hb"]
    if packaging_radius_cm is not None:
        x = 2.0 * mu_blood * np.asarray(packaging_radius_cm, dtype=np.float64)[..., None]
        mu_blood = mu_blood * np.where(x > 1e-8, -np.expm1(-x) / np.maximum(x, 1e-8), 1.0)
    return blood_ * mu_blood + water_ * spec["water"] + fat_ * spec["fat"] + mel_ * spec["melanin"]


def reduced_scattering(wavelengths_nm: np.ndarray, a, b, rayleigh_fraction=0.0) -> np.ndarray:
    """mu_s' in cm^-1: a * (f_R (l/500)^-4 + (1 - f_R) (l/500)^-b); a in cm^-1 at 500 nm; shape (..., C)."""
    x = np.asarray(wavelengths_nm, dtype=np.float64) / 500.0
    a_, b_, f_ = (np.asarray(v, dtype=np.float64)[..., None] for v in (a, b, rayleigh_fraction))
    return a_ * (f_ * x ** -4.0 + (1.0 - f_) * x ** (-b_))
