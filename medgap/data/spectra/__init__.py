"""Labelled physics simulators of spectral tissue data (HSI reflectance spectra, PAT images)."""

from .chromophores import CHROMOPHORES, absorption, chromophore_spectra, reduced_scattering
from .tissues import HSI_TISSUES, PAT_LABELS, PAT_TISSUES, TissueClass

__all__ = ["CHROMOPHORES", "absorption", "chromophore_spectra", "reduced_scattering", "HSI_TISSUES",
           "PAT_LABELS", "PAT_TISSUES", "TissueClass", "simulate_hsi", "simulate_pat"]


def __getattr__(name):
    # the simulators need medgap.io; import lazily so the optics work on their own
    if name == "simulate_hsi":
        from .hsi import simulate_hsi
        return simulate_hsi
    if name == "simulate_pat":
        from .pat import simulate_pat
        return simulate_pat
    raise AttributeError(name)
