"""Labelled physics simulators of spectral tissue data (HSI reflectance spectra, PAT images)."""

from .chromophores import CHROMOPHORES, absorption, chromophore_spectra, reduced_scattering
from .hsi import DEFAULT_HSI_WAVELENGTHS, diffuse_reflectance, simulate_hsi
from .pat import DEFAULT_PAT_WAVELENGTHS, simulate_pat
from .tissues import HSI_TISSUES, PAT_LABELS, PAT_TISSUES, TissueClass

__all__ = ["CHROMOPHORES", "absorption", "chromophore_spectra", "reduced_scattering", "HSI_TISSUES",
           "PAT_LABELS", "PAT_TISSUES", "TissueClass", "simulate_hsi", "simulate_pat", "diffuse_reflectance",
           "DEFAULT_HSI_WAVELENGTHS", "DEFAULT_PAT_WAVELENGTHS"]
