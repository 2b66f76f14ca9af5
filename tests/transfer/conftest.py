import numpy as np
import pytest

from medgap.data.spectra import simulate_hsi, simulate_pat


@pytest.fixture(scope="session")
def hsi_pair():
    """Small simulated (labelled) and rich 'real-like' spectra on a 40-channel grid."""
    wl = np.arange(500.0, 1000.0, 12.5)
    return simulate_hsi(1500, wavelengths=wl, seed=0), simulate_hsi(1500, wavelengths=wl, realism="rich", seed=1)


@pytest.fixture(scope="session")
def pat_pair():
    """Tiny PAT images (8 wavelengths, 32x64 pixels)."""
    wl = np.arange(700.0, 851.0, 20.0)
    return (simulate_pat(4, wavelengths=wl, shape=(32, 64), seed=0),
            simulate_pat(4, wavelengths=wl, shape=(32, 64), realism="rich", seed=1))


