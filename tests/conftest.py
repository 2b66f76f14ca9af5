import os

import numpy as np
import pytest

os.environ.setdefault("MEDGAP_NO_PROGRESS", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def native_bf16(monkeypatch):
    """Treat the CPU as having native bfloat16 products, so bf16 numerics are tested on every machine
    (emulated where the CPU lacks AVX512-BF16: correct, only slower; these tests are small)."""
    import medgap.training.precision as precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
