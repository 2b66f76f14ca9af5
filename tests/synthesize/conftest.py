import nibabel as nib
import numpy as np
import pytest

from medgap.synthesize.config import SynthesizeConfig

TINY = ["model.size=32", "model.width=0.125", "model.latent_dim=16", "train.batch_size=2", "data.augment=false", "train.log_every=1"]


@pytest.fixture
def tiny_cfg():
    return SynthesizeConfig.from_preset("cpu-small", overrides=TINY)


def write_vol(path, shape=(30, 26, 20), spacing=(1.0, 1.0, 2.0), kind="mr", seed=0):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    blob = (x**2 + y**2 + z**2 < 0.6).astype(np.float32)
    data = blob * 100 + rng.normal(0, 5, shape).astype(np.float32)
    if kind == "ct":
        data = np.where(blob > 0, 40.0, -1000.0).astype(np.float32) + rng.normal(0, 10, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


@pytest.fixture(scope="session")
def make_vol():
    """write_vol(path, shape, spacing, kind, seed) -> path."""
    return write_vol
