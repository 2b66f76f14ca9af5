"""The real T1 target cohort for harmonisation, brought into one look.

Training brains (real T1 images, skull-stripped, 1 mm, each a different anatomy):
the ICBM 2009a template (nilearn, the reference look), ICBM 2009c, FSL's MNI152 and
SRI24 (installed by ``make setup``, see :mod:`medgap.data.install`). Held out of all
training: Colin 27, a real single subject (the validation subject: the method's choices
were compared on it). Untouched test set, never used for training nor for choosing the method:
one real subject's volume (pycortex's S1, skull-stripped at set-up, see
:mod:`medgap.data.install`) and 2D axial slices of six other real subjects (:func:`load_test_images`).

The four templates differ in look as well as anatomy (scanner, averaging, intensity
scale). A target cohort must vary in anatomy only, so every brain is first mapped into
the reference look by a histogram standardisation fitted once: its in-brain intensity
quantiles (0.5 .. 99.5 %, 199 points) are mapped piecewise linearly onto the ICBM 2009a
in-brain quantiles (Nyul-style, but with all quantiles and one reference). Held-out
ground truth gets the same mapping, so a source change simulated on it has a truth in
the target look.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from medgap.data.install import S1, S1_MASK, installed_path
from medgap.io import Volume, read_volume

__all__ = ["CohortBrain", "TRAINING", "HELDOUT", "TEST_VOLUMES", "TEST_SLICES", "load_brain", "load_cohort",
           "standardize_to_reference", "load_test_images"]

TRAINING = ["icbm2009a", "icbm2009c", "mni152_fsl", "sri24"]
HELDOUT = ["colin27"]
TEST_VOLUMES = ["s1"]
TEST_SLICES = ["r16", "r27", "r30", "r62", "r64", "r85"]
TEST_POSITION = 0.55  # the six slices are at the level of the lateral ventricles
_FILES = {"icbm2009c": "icbm2009c_brain.nii.gz", "mni152_fsl": "mni152_fsl_brain.nii.gz",
          "sri24": "sri24_brain.nii", "colin27": "colin27_brain.nii.gz", "s1": S1}
_MASKS = {"s1": S1_MASK}  # brains whose mask is a file of its own (elsewhere: the non-zero voxels)
_LEVELS = np.linspace(0.5, 99.5, 199)


@dataclass(frozen=True)
class CohortBrain:
    """One brain: T1 in the reference look (in-brain values in [0, 1]) and its brain mask."""

    name: str
    t1: Volume
    mask: np.ndarray


def _reference() -> tuple[Volume, np.ndarray]:
    from medgap.data.sample import load_icbm152

    b = load_icbm152(1.0)
    return b.t1, b.mask.data > 0.5


def standardize_to_reference(data: np.ndarray, mask: np.ndarray, reference_quantiles: np.ndarray) -> np.ndarray:
    """Map in-mask intensities onto ``reference_quantiles`` (at ``_LEVELS``); outside the mask -> 0."""
    q = np.percentile(data[mask], _LEVELS)
    q = np.maximum.accumulate(q + np.arange(len(q)) * 1e-9)  # strictly increasing for np.interp
    out = np.interp(data, q, reference_quantiles).astype(np.float32)
    return np.where(mask, out, 0.0).astype(np.float32)


@lru_cache(maxsize=8)
def load_brain(name: str) -> CohortBrain:
    """A cohort brain by name (``TRAINING`` or ``HELDOUT``), standardised to the ICBM 2009a look."""
    ref, ref_mask = _reference()
    ref_q = np.percentile(ref.data[ref_mask], _LEVELS)
    if name == "icbm2009a":
        data = np.where(ref_mask, ref.data, 0.0).astype(np.float32)
        vol = Volume(data, ref.affine.copy(), ref.header, None)
        return CohortBrain(name, vol, ref_mask)
    if name not in _FILES:
        raise KeyError(f"unknown cohort brain {name!r}; choose from {TRAINING + HELDOUT + TEST_VOLUMES}")
    vol = read_volume(installed_path(_FILES[name]))
    mask = read_volume(installed_path(_MASKS[name])).data > 0.5 if name in _MASKS else vol.data > 0
    vol = Volume(standardize_to_reference(vol.data, mask, ref_q), vol.affine, vol.header, vol.path)
    return CohortBrain(name, vol, mask)


def load_cohort(names: list[str] | None = None) -> list[CohortBrain]:
    """The training cohort (default) or the named brains."""
    return [load_brain(n) for n in (names or TRAINING)]


def load_test_images() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The six real test subjects' axial slices in the target look: (name, image, brain mask) each,
    as (R, A, 1) one-slice volumes.

    Each JPEG (8-bit) is read, its brain is the filled largest component above 5 % of the
    range, and its in-brain intensities are standardised to the ICBM 2009a slices at the same
    level (relative position 0.5-0.65). :func:`medgap.harmonize.data.load_test_slices` cuts them
    onto a model grid."""
    from PIL import Image
    from scipy import ndimage

    ref, ref_mask = _reference()
    z = np.nonzero(ref_mask.any(axis=(0, 1)))[0]
    lo, hi = z.min() + 0.5 * (z.max() - z.min()), z.min() + 0.65 * (z.max() - z.min())
    band = np.zeros(ref_mask.shape, bool)
    band[:, :, int(lo):int(hi) + 1] = True
    ref_q = np.percentile(ref.data[ref_mask & band], _LEVELS)
    found = []
    for name in TEST_SLICES:
        path = installed_path(f"subject-{name}_slice.jpg")
        with Image.open(path) as im:
            img = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        fg = ndimage.binary_fill_holes(img > 0.05)
        labels, n = ndimage.label(fg)
        if n > 1:
            fg = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        std = standardize_to_reference(img, fg, ref_q)
        # rows run anterior -> posterior, columns left -> right: to the (R, A) voxel order
        vol = np.ascontiguousarray(std[::-1, :].T)[:, :, None]
        mvol = np.ascontiguousarray(fg[::-1, :].T)[:, :, None]
        found.append((name, vol, mvol))
    return found
