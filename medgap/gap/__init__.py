"""``medgap gap A B``: how far apart are two datasets?

A and B are each a NIfTI file, a folder of NIfTI files, or a medgap ``.npz`` file
(spectra or spectral images). The two must be of the same kind (MR/CT images or
spectra with the same wavelengths). Reported:

* **FID** (Frechet distance) and **MMD^2** (unbiased, median-bandwidth Gaussian kernel)
  between features: for images, a fixed ResNet (``medgap.metrics.features``; 3D on
  whole volumes when each side has at least ``min_volumes`` volumes, else 2D on axial
  slices); for spectra, the L2-normalised spectra themselves.
* **Classifier two-sample test**: cross-validated balanced accuracy of a ridge-regularised
  linear discriminant telling A from B (0.5 = indistinguishable), with a permutation p-value.
* **PCA** of the pooled features with kernel-density contours per dataset, and
  intensity histograms (images) or mean +- sd spectra (spectra).

Output folder: ``metrics.json``, PNG figures and one self-contained ``report.html``.

Modules: :mod:`~medgap.gap.data` (loading both sides), :mod:`~medgap.gap.features`,
:mod:`~medgap.gap.stats` (tests, bootstrap intervals), :mod:`~medgap.gap.figures` (figures and
the report), :mod:`~medgap.gap.measure` (:func:`measure_gap`).
"""

from medgap.gap.data import GapData, normalise_volume, load_gap_data
from medgap.gap.measure import measure_gap

__all__ = ["GapData", "load_gap_data", "measure_gap", "normalise_volume"]
