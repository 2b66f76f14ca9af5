"""Tissue classes and their parameter ranges for the spectral simulators.

Ranges are uniform (low, high) per parameter: blood volume fraction, sO2, water, fat and
melanosome volume fractions, scattering amplitude ``a`` (cm^-1 at 500 nm) and power ``b``.
They are chosen inside the spread reported by Jacques (2013, Phys. Med. Biol. 58 R37, tables 1-2)
for soft tissues so that classes overlap as real organs do; they are not fitted to any organ data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TissueClass", "HSI_TISSUES", "PAT_LABELS", "PAT_TISSUES", "sample_parameters", "PARAMETERS"]

PARAMETERS = ("blood", "so2", "water", "fat", "melanin", "a", "b")


@dataclass(frozen=True)
class TissueClass:
    """Uniform ranges (low, high) of each optical parameter of one tissue class."""

    name: str
    blood: tuple[float, float]
    so2: tuple[float, float]
    water: tuple[float, float]
    fat: tuple[float, float]
    a: tuple[float, float]
    b: tuple[float, float]
    melanin: tuple[float, float] = (0.0, 0.0)


# Ten abdominal organs, as in the porcine HSI organ-classification task.
HSI_TISSUES: tuple[TissueClass, ...] = (
    TissueClass("stomach", blood=(0.02, 0.06), so2=(0.60, 0.85), water=(0.70, 0.80), fat=(0.02, 0.08), a=(15, 25), b=(1.0, 1.4)),
    TissueClass("small_intestine", blood=(0.03, 0.08), so2=(0.60, 0.85), water=(0.75, 0.85), fat=(0.01, 0.05), a=(12, 22), b=(0.9, 1.3)),
    TissueClass("colon", blood=(0.02, 0.05), so2=(0.55, 0.80), water=(0.70, 0.80), fat=(0.03, 0.10), a=(15, 25), b=(1.0, 1.5)),
    TissueClass("liver", blood=(0.10, 0.25), so2=(0.40, 0.70), water=(0.65, 0.75), fat=(0.02, 0.06), a=(10, 18), b=(0.8, 1.2)),
    TissueClass("gallbladder", blood=(0.005, 0.02), so2=(0.60, 0.80), water=(0.80, 0.90), fat=(0.00, 0.03), a=(8, 15), b=(1.0, 1.5)),
    TissueClass("pancreas", blood=(0.02, 0.05), so2=(0.60, 0.80), water=(0.60, 0.75), fat=(0.10, 0.25), a=(18, 28), b=(1.1, 1.5)),
    TissueClass("kidney", blood=(0.08, 0.18), so2=(0.60, 0.85), water=(0.70, 0.80), fat=(0.02, 0.06), a=(10, 18), b=(0.9, 1.3)),
    TissueClass("spleen", blood=(0.15, 0.30), so2=(0.50, 0.75), water=(0.70, 0.80), fat=(0.01, 0.04), a=(10, 16), b=(0.8, 1.2)),
    TissueClass("bladder", blood=(0.01, 0.04), so2=(0.65, 0.90), water=(0.75, 0.85), fat=(0.02, 0.06), a=(20, 30), b=(1.2, 1.6)),
    TissueClass("omentum", blood=(0.01, 0.03), so2=(0.65, 0.90), water=(0.15, 0.30), fat=(0.60, 0.80), a=(15, 25), b=(0.6, 1.0)),
)

# Photoacoustic forearm phantoms: segmentation classes (index = label value).
PAT_LABELS: tuple[str, ...] = ("coupling_medium", "epidermis", "dermis", "fat", "muscle", "artery", "vein")
PAT_TISSUES: dict[str, TissueClass] = {
    "coupling_medium": TissueClass("coupling_medium", blood=(0, 0), so2=(0, 0), water=(1.0, 1.0), fat=(0, 0), a=(0.1, 0.1), b=(1.0, 1.0)),
    "epidermis": TissueClass("epidermis", blood=(0.0, 0.0), so2=(0.0, 0.0), water=(0.6, 0.7), fat=(0.0, 0.0), a=(40, 60), b=(1.3, 1.7), melanin=(0.01, 0.05)),
    "dermis": TissueClass("dermis", blood=(0.01, 0.03), so2=(0.6, 0.8), water=(0.6, 0.7), fat=(0.0, 0.02), a=(30, 50), b=(1.2, 1.6)),
    "fat": TissueClass("fat", blood=(0.005, 0.015), so2=(0.6, 0.8), water=(0.1, 0.2), fat=(0.7, 0.85), a=(15, 25), b=(0.6, 0.9)),
    "muscle": TissueClass("muscle", blood=(0.01, 0.04), so2=(0.6, 0.8), water=(0.7, 0.8), fat=(0.02, 0.06), a=(8, 14), b=(0.9, 1.3)),
    "artery": TissueClass("artery", blood=(1.0, 1.0), so2=(0.90, 1.00), water=(0.0, 0.0), fat=(0.0, 0.0), a=(15, 25), b=(1.0, 1.4)),
    "vein": TissueClass("vein", blood=(1.0, 1.0), so2=(0.60, 0.80), water=(0.0, 0.0), fat=(0.0, 0.0), a=(15, 25), b=(1.0, 1.4)),
}


def sample_parameters(tissue: TissueClass, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` parameter sets uniformly from the class ranges; dict of (n,) float64 arrays."""
    return {p: rng.uniform(*getattr(tissue, p), size=n) for p in PARAMETERS}
